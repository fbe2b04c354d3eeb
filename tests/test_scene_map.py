"""The scene map and the sift list: shipped data reviewed, bad files refused, the map in
force printed, sift classes never predicted."""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from models.scenes import DROP, SceneMap, SceneMapError, load_categories, load_indoor, load_sift
from tests.support import run_cli

SHIPPED = resources.files("models") / "data" / "scene_map.csv"


def _rows() -> list[dict[str, str]]:
    return list(csv.DictReader(SHIPPED.read_text().splitlines()))


def test_shipped_map_lists_every_class_once_with_a_label_or_an_explicit_drop():
    """Each of the 365 classes has one row whose album is a label or the explicit '-'."""
    rows = _rows()
    assert [r["places365_class"] for r in rows] == list(load_categories())
    assert all(r["album"].strip() for r in rows), "an empty album cell is not explicit"


def test_shipped_map_has_the_seed_groups_and_real_groups():
    """The seed's forest/hospital/hotel groups hold, and most albums group several classes."""
    sm = SceneMap.load()
    album = dict(zip(sm.categories, sm.albums_by_class))
    for name in ("bamboo_forest", "forest/broadleaf", "forest_path", "forest_road", "rainforest"):
        assert album[name] == "forest"
    for name in ("hospital", "hospital_room", "nursery", "operating_room"):
        assert album[name] == "hospital"
    for name in ("hotel/outdoor", "hotel_room", "inn/outdoor", "youth_hostel"):
        assert album[name] == "hotel"
    assert album["beach"] == album["coast"] == album["ocean"]
    assert album["church/indoor"] == album["temple/asia"]
    assert album["castle"] == album["palace"]
    sizes = np.asarray(sm.matrix()).sum(axis=0)
    assert len(sm.albums) < 120 and (sizes >= 2).sum() >= 45


def test_shipped_sift_keeps_314_classes_including_the_seeds_examples():
    """The shipped sift list leaves 314 classes, and names aqueduct, tree_house, barndoor."""
    sift = load_sift()
    assert {"aqueduct", "tree_house", "barndoor"} <= sift
    assert len(load_categories()) - len(sift) == 314


def test_a_map_that_misses_a_class_is_rejected(tmp_path: Path):
    """Leaving out one class's row makes loading fail, naming the class."""
    lines = SHIPPED.read_text().splitlines()
    path = tmp_path / "map.csv"
    path.write_text("\n".join(ln for ln in lines if not ln.startswith("beach,")) + "\n")
    with pytest.raises(SceneMapError, match=r"misses 1 classes, e\.g\. beach"):
        SceneMap.load(path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [("beach,sea\n", "twice"), ("moon_base,space\n", "unknown classes")],
)
def test_a_map_with_a_duplicate_or_unknown_class_is_rejected(tmp_path, extra, message):
    """A class listed twice, or a name Places365 does not have, is refused."""
    path = tmp_path / "map.csv"
    path.write_text(SHIPPED.read_text() + extra)
    with pytest.raises(SceneMapError, match=message):
        SceneMap.load(path)


def test_a_row_with_more_cells_than_its_header_is_refused(tmp_path: Path):
    """A threshold under a two-column header was accepted and silently ignored."""
    rows = SHIPPED.read_text().splitlines()
    first = rows[1].split(",")
    rows[1] = f"{first[0]},{first[1]},0.4"
    path = tmp_path / "map.csv"
    path.write_text("places365_class,album\n" + "\n".join(r for r in rows[1:]) + "\n")
    with pytest.raises(SceneMapError, match=f"row '{first[0]}' has more cells than its header"):
        SceneMap.load(path)


@pytest.mark.slow
def test_a_map_that_is_not_text_headerless_or_all_drops_is_refused(tmp_path: Path):
    """Each a trial made: bytes that are not UTF-8 (a UnicodeDecodeError escaped), rows
    without the header (reported as 365 missing classes), and every album cell empty (put
    in force, it emptied every scene album)."""
    rows = SHIPPED.read_text().splitlines()
    cases = {
        b"\xff\xfe": "not UTF-8 text",
        "\n".join(rows[1:]).encode(): "no header row naming places365_class and album",
        ("places365_class,album\n" + "".join(f"{r.split(',')[0]},\n" for r in rows[1:])).encode():
            "puts no class in an album",
    }  # fmt: skip
    for body, message in cases.items():
        path = tmp_path / "map.csv"
        path.write_bytes(body)
        with pytest.raises(SceneMapError, match=message):
            SceneMap.load(path)
    proc = run_cli("retag", "--scene-map", str(tmp_path / "map.csv"), "--local",
                   env={"DATABASE_URL": "postgresql:///nowhere"})  # fmt: skip
    assert proc.returncode == 2 and "puts no class in an album" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("album", "message"),
    [
        ("city\u202e", "has a control character"),
        ("ci\tty", "has a control character"),
        ("city\u200b", "has an invisible character"),
        ("\u3164", "invisible character at an end"),
        ("x" * 201, "longer than 200 characters"),
        ('"x\ny"', "has a control character"),  # a quoted newline is the label's, not a row's
    ],
)
def test_an_album_label_that_shows_wrongly_is_refused(tmp_path: Path, album, message):
    """A map's album labels follow the rule corrections' labels do (0028): a trial put
    'city' + RLO in force, and a quoted 'x\\ny' became 'xy'."""
    rows = SHIPPED.read_text().splitlines()
    path = tmp_path / "map.csv"
    path.write_text("\n".join([rows[0], f"airfield,{album}", *(r for r in rows[1:]
                                if not r.startswith("airfield,"))]) + "\n")  # fmt: skip
    with pytest.raises(SceneMapError, match=message):
        SceneMap.load(path)


def test_a_map_saved_with_a_byte_order_mark_loads(tmp_path: Path):
    path = tmp_path / "map.csv"
    path.write_bytes(b"\xef\xbb\xbf" + SHIPPED.read_bytes())
    assert SceneMap.load(path).albums_by_class == SceneMap.load().albums_by_class


def test_a_sift_list_with_an_unknown_class_is_rejected(tmp_path: Path):
    """A sift list naming a class Places365 lacks is refused; 'none' keeps every class."""
    path = tmp_path / "sift.txt"
    path.write_text("# comment\naqueduct\nmoon_base\n")
    with pytest.raises(SceneMapError, match="moon_base"):
        load_sift(path)
    assert load_sift("none") == frozenset()


def test_renormalise_zeroes_sift_classes_and_rescales_the_rest():
    """Probabilities of sift classes become 0 and the kept ones are rescaled to sum to 1."""
    sm = SceneMap.load(excluded=frozenset({"aqueduct", "beach"}))
    probs = np.full((2, 365), 1 / 365, dtype=np.float32)
    out = sm.renormalise(probs)
    idx = {c: i for i, c in enumerate(sm.categories)}
    assert out[:, idx["aqueduct"]].max() == 0 and out[:, idx["beach"]].max() == 0
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out[:, idx["coast"]], 1 / 363, rtol=1e-5)


def test_album_scores_of_a_photo_do_not_depend_on_its_batch():
    """A photo's album sums, indoor probability and filing are the same bits alone, in a
    chunk of 7 and in a batch of 500 (a re-file in chunks files it as one pass did), and
    equal the class probabilities summed per album in float64 to float32 precision."""
    sm = SceneMap.load()
    probs = np.random.default_rng(3).dirichlet(np.full(365, 0.05), 500).astype(np.float32)
    whole = sm.album_sums(probs)
    exact = probs.astype(np.float64) @ sm.matrix().astype(np.float64)
    assert whole.dtype == np.float32 and whole.shape == (500, len(sm.albums))
    np.testing.assert_allclose(whole, exact, rtol=0, atol=1e-6)
    for n in (1, 7):
        chunks = [probs[i : i + n] for i in range(0, len(probs), n)]
        assert np.array_equal(np.concatenate([sm.album_sums(c) for c in chunks]), whole)
        indoor = np.concatenate([sm.indoor_probability(c) for c in chunks])
        assert np.array_equal(indoor, sm.indoor_probability(probs))
        assert [f for c in chunks for f in sm.file(c)] == sm.file(probs)


@pytest.mark.slow
def test_scenes_json_prints_the_map_in_force_for_all_classes(tmp_path: Path, db_url: str):
    """`sightline scenes --json`: 365 classes with album, indoor flag and sift exclusion;
    with no map stored yet, the file map (and sift list) the first worker would store."""
    sift = tmp_path / "sift.txt"
    sift.write_text("beach\n")
    proc = run_cli("scenes", "--json", env={"SIGHTLINE_SIFT": str(sift), "DATABASE_URL": db_url})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert list(out) == list(load_categories())
    indoor = load_indoor()
    assert all(out[c]["indoor"] == indoor[c] for c in out)
    assert out["forest_path"] == {
        "album": "forest",
        "threshold": None,
        "indoor": False,
        "excluded": False,
    }
    assert out["beach"] == {"album": None, "threshold": None, "indoor": False, "excluded": True}
    assert out["coast"]["album"] == "sea & beach"
    dropped = {r["places365_class"] for r in _rows() if r["album"] == DROP}
    assert all(out[c]["album"] is None for c in dropped)


@pytest.mark.slow
def test_scenes_prints_the_stored_map_the_workers_use(tmp_path: Path, db_url: str):
    """Once a map is stored (`retag --scene-map`, or the first worker), `sightline scenes`
    shows that one, not the file; --map still shows a file; no database is one line and the
    file map."""
    from workers.db import connect
    from workers.scenemaps import install

    rows = _rows()
    for r in rows:
        if r["places365_class"] == "airfield":
            r["album"] = "runways"
    path = tmp_path / "map.csv"
    path.write_text(
        "places365_class,album\n" + "".join(f"{r['places365_class']},{r['album']}\n" for r in rows)
    )
    conn = connect(db_url)
    version = install(conn, SceneMap.load(path), f"retag --scene-map {path}")
    conn.close()
    env = {"DATABASE_URL": db_url}
    stored = json.loads(run_cli("scenes", "--json", env=env).stdout)
    assert stored["airfield"]["album"] == "runways"
    text = run_cli("scenes", env=env)
    assert text.returncode == 0
    assert text.stdout.splitlines()[0].startswith(f"scene map {version} in force (retag --scene")
    shipped = json.loads(run_cli("scenes", "--json", "--map", str(SHIPPED), env=env).stdout)
    assert shipped["airfield"]["album"] != "runways"
    down = run_cli("scenes", "--json", env={"DATABASE_URL": "postgresql://x@127.0.0.1:1/none"})
    assert down.returncode == 0 and json.loads(down.stdout)["airfield"]["album"] != "runways"
    assert down.stderr.strip().count("\n") == 0 and "showing the scene-map file" in down.stderr
    assert down.stderr.startswith("sightline: warning: ")  # it worked around it: exit 0


@pytest.mark.slow
def test_scenes_refuses_a_broken_map_with_one_line(tmp_path: Path):
    """A map file that misses classes gives exit status 2 and one error line."""
    path = tmp_path / "map.csv"
    path.write_text("places365_class,album\nbeach,sea\n")
    proc = run_cli("scenes", "--map", str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "misses 364 classes" in proc.stderr


def test_serving_policy_refuses_without_weights_and_builds_an_untrained_net_when_allowed():
    """load_or_untrained: no weights and no leave is NoWeights; with leave, an untrained
    network over the shipped categories that says it is untrained."""
    from models.checkpoint import NoWeights, load_or_untrained

    with pytest.raises(NoWeights):
        load_or_untrained(None, allow_untrained=False, arch="tiny")
    _, meta = load_or_untrained(None, allow_untrained=True, arch="tiny")
    assert meta.trained is False and meta.arch == "tiny"
    assert meta.categories == load_categories()


def test_scene_map_for_a_checkpoint_adds_its_untrained_classes_to_the_sift_list(tmp_path):
    """SceneMap.for_checkpoint: classes the checkpoint never learnt and the sift file's
    classes are both out of prediction and of every album; the rest keep their album."""
    from dataclasses import replace

    from models.checkpoint import load_or_untrained

    _, meta = load_or_untrained(None, allow_untrained=True, arch="tiny")
    sift = tmp_path / "sift.txt"
    sift.write_text("aqueduct\n")
    sm = SceneMap.for_checkpoint(replace(meta, excluded=("beach",)), sift=str(sift))
    assert sm.excluded == {"beach", "aqueduct"}
    idx = {c: i for i, c in enumerate(sm.categories)}
    assert not sm.keep()[idx["beach"]] and not sm.keep()[idx["aqueduct"]]
    assert sm.albums_by_class[idx["beach"]] is None
    assert sm.albums_by_class[idx["coast"]] == "sea & beach"


def _map_with(tmp_path: Path, thresholds: dict[str, str]) -> Path:
    """The shipped map with a threshold column, set on each album's rows given here."""
    rows = _rows()
    path = tmp_path / "map.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["places365_class", "album", "threshold"])
        for r in rows:
            w.writerow([r["places365_class"], r["album"], thresholds.get(r["places365_class"], "")])
    return path


def _probs(sm: SceneMap, **by_class: float) -> np.ndarray:
    p = np.zeros((1, len(sm.categories)), dtype=np.float32)
    for c, v in by_class.items():
        p[0, sm.categories.index(c)] = v
    return p


def test_filing_without_thresholds_is_the_best_album_only():
    """A map with no thresholds files a photo in its best album alone, as before."""
    sm = SceneMap.load()
    probs = _probs(sm, bamboo_forest=0.5, beach=0.3, desert_road=0.2)
    assert [a for a, _ in sm.file(probs)[0]] == ["forest"]


def test_filing_takes_every_album_past_its_threshold_at_most_k_best_first(tmp_path: Path):
    """Albums past their thresholds, best first, at most K; a best album that misses its
    threshold leaves the photo out of it, and one with no threshold is never a second album."""
    sm = SceneMap.load(
        _map_with(tmp_path, {"bamboo_forest": "0.6", "beach": "0.25", "canyon": "0.1"})
    )
    beach = sm.albums_by_class[sm.categories.index("beach")]
    canyon = sm.albums_by_class[sm.categories.index("canyon")]
    probs = _probs(sm, bamboo_forest=0.5, beach=0.3, canyon=0.15, desert_road=0.05)
    assert [a for a, _ in sm.file(probs)[0]] == [beach, canyon]  # forest misses 0.6
    assert [a for a, _ in sm.file(probs, k=1)[0]] == [beach]
    probs = _probs(sm, bamboo_forest=0.7, beach=0.2, canyon=0.1)
    filed = sm.file(probs)[0]
    assert [a for a, _ in filed] == ["forest", canyon]  # beach misses 0.25
    assert filed[0][1] == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({"beach": "high"}, "not a number"),
        ({"beach": "1.5"}, r"not in \[0, 1\]"),
        ({"aqueduct": "0.2"}, "dropped class"),
        ({"bamboo_forest": "0.2", "rainforest": "0.3"}, "two thresholds"),
    ],
)
def test_bad_thresholds_are_refused(tmp_path: Path, cells: dict[str, str], message: str):
    """A threshold that is not a probability, on a dropped class, or two for one album."""
    with pytest.raises(SceneMapError, match=message):
        SceneMap.load(_map_with(tmp_path, cells))
