"""Places365 classes, indoor/outdoor, and the scene map from fine classes to album labels.

A mapped label's score is the sum of its fine classes' probabilities, so a new map re-tags
from the stored probability vectors without the network.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

_DATA = resources.files("models") / "data"


# The album cell that drops a class explicitly: still predicted, in no album.
DROP = "-"
# K: the most albums one photo is filed in, best first.
MAX_ALBUMS = 3


class SceneMapError(ValueError):
    """A scene-map or class-list file that does not fit the classes."""


def _class_name(path_token: str) -> str:
    # "/a/apartment_building/outdoor" -> "apartment_building/outdoor"
    parts = path_token.strip("/").split("/", 1)
    return parts[1] if len(parts) == 2 else parts[0]


def load_categories(path: str | Path | None = None) -> tuple[str, ...]:
    """The 365 Places365 class names in the index order the classifier uses."""
    text = Path(path).read_text() if path else (_DATA / "categories_places365.txt").read_text()
    rows = [line.split() for line in text.splitlines() if line.strip()]
    names = sorted(rows, key=lambda r: int(r[1]))
    return tuple(_class_name(r[0]) for r in names)


def load_indoor(path: str | Path | None = None) -> dict[str, bool]:
    """Class name -> True when indoor (the IO list says 1 indoor, 2 outdoor)."""
    text = Path(path).read_text() if path else (_DATA / "IO_places365.txt").read_text()
    return {_class_name(tok): flag == "1" for tok, flag in (ln.split() for ln in text.splitlines())}


def load_sift(path: str | Path | None = None) -> frozenset[str]:
    """The "sift" classes: left out of training and prediction. One class a line, ``#`` comments.

    ``path`` None reads the shipped list (51 classes, so 314 are kept, as in the seed);
    ``"none"`` keeps every class. Names are checked against the Places365 list.
    """
    if path is not None and str(path).strip().lower() == "none":
        return frozenset()
    text = Path(path).read_text() if path else (_DATA / "sift_excluded.txt").read_text()
    names = {n for n in (ln.split("#", 1)[0].strip() for ln in text.splitlines()) if n}
    categories = load_categories()
    unknown = sorted(names - set(categories))
    if unknown:
        raise SceneMapError(f"sift list names unknown classes, e.g. {', '.join(unknown[:3])}")
    if len(names) >= len(categories):
        raise SceneMapError("sift list excludes every class")
    return frozenset(names)


def keep_mask(categories: tuple[str, ...], excluded: frozenset[str]) -> np.ndarray:
    """Boolean (classes,) mask, True for the classes the network may predict."""
    return np.array([c not in excluded for c in categories], dtype=bool)


@dataclass(frozen=True)
class SceneMap:
    """Fine classes (index order) -> album label, or None for a class kept out of albums."""

    categories: tuple[str, ...]
    albums_by_class: tuple[str | None, ...]
    indoor: tuple[bool, ...]
    excluded: frozenset[str] = frozenset()
    # album -> the score a photo needs to be filed in it; an album with none takes a photo
    # only as its best album (so a map without thresholds files top-1, as before).
    thresholds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        categories: tuple[str, ...] | None = None,
        *,
        excluded: frozenset[str] = frozenset(),
    ) -> SceneMap:
        """Read a ``places365_class,album[,threshold]`` CSV; ``-`` (or an empty cell) drops
        a class.

        Every class must be listed exactly once. Sift classes (``excluded``) are in no album.
        The optional ``threshold`` column (a summed probability in [0, 1]) belongs to the
        album: give it on one of the album's rows or on several with the same value.
        Raises SceneMapError naming the first bad row.
        """
        categories = categories or load_categories()
        try:
            # utf-8-sig: a "CSV UTF-8" file from a spreadsheet begins with a byte-order mark
            where = Path(path) if path else _DATA / "scene_map.csv"
            text = where.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SceneMapError(
                f"scene map is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        mapping: dict[str, str | None] = {}
        thresholds: dict[str, float] = {}
        reader = csv.DictReader(io.StringIO(text, newline=""))  # a quoted newline stays
        if not {"places365_class", "album"} <= set(reader.fieldnames or ()):
            raise SceneMapError(
                "scene map has no header row naming places365_class and album "
                f"(first row: {','.join(reader.fieldnames or [])[:80]!r})"
            )
        for row in reader:
            name = (row.get("places365_class") or "").strip()
            if not name:
                continue
            if name in mapping:
                raise SceneMapError(f"scene map lists {name!r} twice")
            if any((cell or "").strip() for cell in row.get(None) or ()):  # type: ignore[call-overload]
                # a threshold under a header without the column was silently dropped
                raise SceneMapError(
                    f"scene map row {name!r} has more cells than its header names "
                    f"({','.join(reader.fieldnames or [])})"
                )
            album = (row.get("album") or "").strip()
            problem = album_label_problem(album)
            if problem:
                raise SceneMapError(f"scene map's album for {name!r}: {problem}")
            mapping[name] = None if album in ("", DROP) else album
            cell = (row.get("threshold") or "").strip()
            if cell:
                _add_threshold(thresholds, name, mapping[name], cell)
        scene_map = cls.from_albums(mapping, categories, excluded=excluded, thresholds=thresholds)
        # A file about to be put in force (a stored map loads through from_albums as it is)
        if not any(scene_map.albums_by_class):
            raise SceneMapError("scene map puts no class in an album: every album would be empty")
        return scene_map

    @classmethod
    def from_albums(
        cls,
        mapping: dict[str, str | None],
        categories: tuple[str, ...] | None = None,
        *,
        excluded: frozenset[str] = frozenset(),
        thresholds: dict[str, float] | None = None,
    ) -> SceneMap:
        """A map from class name -> album label (None: in no album); every class once;
        ``thresholds``: album label -> summed probability a photo needs to join it.

        Raises SceneMapError for a missing or unknown class, or a threshold of no album.
        """
        categories = categories or load_categories()
        thresholds = dict(thresholds or {})
        stray = sorted(set(thresholds) - {a for a in mapping.values() if a})
        if stray:
            raise SceneMapError(f"scene map has thresholds for no album: {', '.join(stray[:3])}")
        missing = [c for c in categories if c not in mapping]
        if missing:
            raise SceneMapError(
                f"scene map misses {len(missing)} classes, e.g. {', '.join(missing[:3])}"
            )
        unknown = sorted(set(mapping) - set(categories))
        if unknown:
            raise SceneMapError(f"scene map names unknown classes, e.g. {', '.join(unknown[:3])}")
        io = load_indoor()
        return cls(
            categories=categories,
            albums_by_class=tuple(None if c in excluded else mapping[c] for c in categories),
            indoor=tuple(io.get(c, False) for c in categories),
            excluded=frozenset(excluded),
            thresholds=thresholds,
        )

    @classmethod
    def for_checkpoint(
        cls,
        meta: Any,
        path: str | Path | None = None,
        *,
        sift: str | Path | None = None,
    ) -> SceneMap:
        """The scene map in force for a checkpoint (``CheckpointMeta``): the map at ``path``
        (default: the shipped one) over the checkpoint's categories, with as sift the classes
        the checkpoint was trained without plus those of the sift list at ``sift`` (default:
        the shipped one; ``"none"``: none)."""
        excluded = frozenset(meta.excluded) | load_sift(sift)
        return cls.load(path, categories=meta.categories, excluded=excluded)

    def keep(self) -> np.ndarray:
        """Boolean (classes,) mask of the classes that are predicted (not sift)."""
        return keep_mask(self.categories, self.excluded)

    def renormalise(self, probs: np.ndarray) -> np.ndarray:
        """Zero the sift classes and rescale each row to sum to 1 over the kept ones."""
        kept = np.where(self.keep(), probs, 0.0).astype(probs.dtype)
        total = kept.sum(axis=1, keepdims=True)
        # A row with NaN or infinity (an fp16 overflow) is left as numpy divides it, without a
        # RuntimeWarning: workers.pipeline.unstorable_output judges the photo's output and
        # refuses that photo alone, not the batch.
        with np.errstate(invalid="ignore"):
            return kept / np.maximum(total, np.finfo(probs.dtype).tiny)

    def describe(self) -> dict[str, dict[str, object]]:
        """The map in force, per class: album (None when dropped or sift), its threshold
        (None: best album only), indoor, excluded."""
        return {
            c: {
                "album": a,
                "threshold": self.thresholds.get(a) if a else None,
                "indoor": io,
                "excluded": c in self.excluded,
            }
            for c, a, io in zip(self.categories, self.albums_by_class, self.indoor)
        }

    @property
    def albums(self) -> tuple[str, ...]:
        return tuple(sorted({a for a in self.albums_by_class if a}))

    def matrix(self) -> np.ndarray:
        """(classes, albums) 0/1 matrix: probabilities @ matrix = album scores."""
        albums = self.albums
        col = {a: i for i, a in enumerate(albums)}
        m = np.zeros((len(self.categories), len(albums)), dtype=np.float32)
        for i, a in enumerate(self.albums_by_class):
            if a:
                m[i, col[a]] = 1.0
        return m

    def album_sums(self, probs: np.ndarray) -> np.ndarray:
        """(N, albums) album scores of (N, classes) probabilities: each album's classes
        summed, row by row, in ``albums`` order (what ``probs @ matrix()`` computes).

        Each row's sums are the same bits whatever the rows around it: a BLAS product's
        rounding depends on the batch's shape (OpenBLAS on this machine gave two scores
        one float32 step apart for one photo in a batch of 7 and of 50), and a re-file in
        chunks must file a photo as the re-file in one pass and as its upload did.
        """
        col = {a: i for i, a in enumerate(self.albums)}
        # the filed classes grouped by album (stable: class order within each album)
        classes = sorted(
            (i for i, a in enumerate(self.albums_by_class) if a),
            key=lambda i: col[self.albums_by_class[i]],
        )
        owners = np.array([col[self.albums_by_class[i]] for i in classes], dtype=np.intp)
        starts = np.searchsorted(owners, np.arange(len(col)))
        grouped = np.ascontiguousarray(np.asarray(probs)[:, classes])
        return np.add.reduceat(grouped, starts, axis=1)

    def top_classes(self, probs: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per row of (N, classes) probabilities, the k best fine classes."""
        order = np.argsort(-probs, axis=1)[:, :k]
        return [[(self.categories[j], float(p[j])) for j in row] for p, row in zip(probs, order)]

    def album_scores(
        self, probs: np.ndarray, k: int = 3, min_score: float = 0.0
    ) -> list[list[tuple[str, float]]]:
        """Per row, the k best album labels with summed probabilities (>= min_score)."""
        scores = self.album_sums(probs)
        albums = self.albums
        order = np.argsort(-scores, axis=1)[:, :k]
        return [
            [(albums[j], float(s[j])) for j in row if s[j] >= min_score]
            for s, row in zip(scores, order)
        ]

    def threshold_vector(self) -> np.ndarray:
        """(albums,) thresholds in ``albums`` order; NaN for an album with none."""
        return np.array([self.thresholds.get(a, np.nan) for a in self.albums], np.float32)

    def file(self, probs: np.ndarray, k: int = MAX_ALBUMS) -> list[list[tuple[str, float]]]:
        """Per row of (N, classes) probabilities, the albums the photo is filed in, best first.

        The rule: every album whose summed score reaches its threshold, at most ``k``; an
        album with no threshold only when it is the photo's best album. A photo may be in
        no album when its best album has a threshold it does not reach. Ties keep the
        ``albums`` order.
        """
        if k < 1:
            raise ValueError("a photo needs room for at least one album (k >= 1)")
        scores = self.album_sums(probs)
        order = np.argsort(-scores, axis=1, kind="stable")
        ranked = np.take_along_axis(scores, order, axis=1)
        t = self.threshold_vector()[order]
        best = np.zeros_like(ranked, dtype=bool)
        best[:, :1] = True
        filed = np.where(np.isnan(t), best, ranked >= t)
        filed &= np.cumsum(filed, axis=1) <= k  # the first k that pass
        albums = self.albums
        return [
            [(albums[j], float(v)) for j, v in zip(o[f], r[f])]
            for o, r, f in zip(order, ranked, filed)
        ]

    def indoor_probability(self, probs: np.ndarray) -> np.ndarray:
        """Per row, the summed probability of indoor classes (row by row, as
        ``album_sums``: the same bits in any batch)."""
        indoor = np.flatnonzero(np.asarray(self.indoor, dtype=bool))
        return np.ascontiguousarray(np.asarray(probs)[:, indoor]).sum(axis=1)


def _add_threshold(thresholds: dict[str, float], name: str, album: str | None, cell: str) -> None:
    try:
        value = float(cell)
    except ValueError:
        raise SceneMapError(f"scene map row {name!r}: threshold {cell!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise SceneMapError(f"scene map row {name!r}: threshold {value:g} is not in [0, 1]")
    if album is None:
        raise SceneMapError(f"scene map row {name!r}: a dropped class cannot have a threshold")
    if thresholds.setdefault(album, value) != value:
        raise SceneMapError(
            f"scene map row {name!r}: album {album!r} has two thresholds, "
            f"{thresholds[album]:g} and {value:g}"
        )


# Characters an album label may not hold anywhere (Cc, line and paragraph separators,
# bidirectional controls, and invisible ones that make a look-alike of another label), and
# those it may not begin or end with: the same rule as a correction's label (migration 0028).
_HIDDEN = frozenset("\u200b\u2060\ufeff")
# The bidirectional embeddings, overrides and isolates: they reorder what a terminal or an
# album UI shows.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_BLANK = frozenset("\u115f\u1160\u2800\u3164\uffa0")
_MAX_LABEL = 200


def album_label_problem(label: str) -> str | None:
    """Why ``label`` cannot name an album, in a few words; None when it can. Refused: over
    200 characters, control and bidirectional characters, separators, zero-width spaces,
    word joiners and BOMs anywhere, and invisible characters at either end."""
    if len(label) > _MAX_LABEL:
        return f"longer than {_MAX_LABEL} characters"
    if control_character(label):
        return f"{label[:60]!a} has a control character"
    for c in label:
        if c in _HIDDEN or 0xE0000 <= ord(c) <= 0xE007F:
            return f"{label[:60]!a} has an invisible character"
    for c in (label[:1], label[-1:]):
        if c and (unicodedata.category(c) == "Cf" or c in _BLANK):
            return f"{label[:60]!a} has an invisible character at an end"
    return None


def control_character(text: str) -> str | None:
    """The first character of ``text`` no label or class name may hold, else None: C0/C1
    controls and surrogates (Cc, Cs), line and paragraph separators, bidirectional controls.
    Other format characters are not here (ZWNJ in Persian names, ZWJ in emoji sequences)."""
    for c in text:
        if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in _BIDI:
            return c
    return None
