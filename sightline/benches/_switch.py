"""A model switch end to end, with albums sampled throughout (`bench model-switch`, tests).

Two untrained tiny networks stand for old weights (A) and new weights (B): their outputs are
noise-structured, not predictions, which is all a switch needs (photos in albums before and
after). The library is synthetic: a share of photos are noisy copies of a few "landmark"
images, the rest random images. Tagging and the stale-model re-embed go through the worker's
own code (``workers.pipeline.infer`` -> ``workers.store.tagged_item`` -> the
``sightline_write_photos`` SQL function, live releases from ``load_live_releases``), minus
S3 and JPEG decoding, in this process.

Album drops are judged from consistent snapshots: each sample reads ``scene_albums``,
``landmark_albums`` and the ids of the photos already on model B in one repeatable-read
transaction. The expected album of each photo in that snapshot is what the pipeline gave it
under the model it is on then (A's result, or B's once re-embedded), so a photo that moves
because model B matches it elsewhere is a real re-match, not a drop. ``album_drops`` is the
sum over samples and albums of photos expected in an album and missing from it.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

OWNER = "alice"


@dataclass
class SwitchReport:
    photos: int
    reembedded: int
    samples: int
    album_drops: int
    mid_switch_samples: int  # samples with photos on both models
    landmark_photos_a: int  # photos in a landmark album under model A
    landmark_photos_b: int
    scene_refiled: int  # photos whose scene album changed with the new model (real re-files)
    landmark_rematched: int  # photos whose landmark set changed with the new model
    seconds: dict[str, float] = field(default_factory=dict)
    models: tuple[str, str] = ("", "")

    def to_json(self) -> dict[str, Any]:
        return {
            "photos": self.photos,
            "reembedded": self.reembedded,
            "samples": self.samples,
            "album_drops": self.album_drops,
            "mid_switch_samples": self.mid_switch_samples,
            "landmark_photos_a": self.landmark_photos_a,
            "landmark_photos_b": self.landmark_photos_b,
            "scene_refiled": self.scene_refiled,
            "landmark_rematched": self.landmark_rematched,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
            "models": list(self.models),
        }


def tiny_models(folder: Path) -> tuple[Any, Any]:
    """Two tiny untrained networks (seeds 0 and 1) saved and loaded as real checkpoints."""
    from models.checkpoint import save_checkpoint, untrained
    from models.scenes import load_categories
    from models.transforms import default_transform
    from workers.inference import SceneLandmarkModel

    out = []
    for seed in (0, 1):
        net, meta = untrained(
            arch="tiny",
            categories=load_categories(),
            transform=default_transform("tiny"),
            seed=seed,
            embedding_dim=64,
        )
        path = folder / f"tiny-seed{seed}.safetensors"
        save_checkpoint(net, meta, path)
        model = SceneLandmarkModel(weights=str(path), device="cpu", allow_untrained=True)
        model.load()
        out.append(model)
    return out[0], out[1]


def _images(rng: np.random.Generator, bases: np.ndarray, groups: np.ndarray) -> list:
    """Noisy copies of the base image of each group; random images for group -1."""
    out = []
    for g in groups.tolist():
        if g < 0:
            out.append(rng.integers(0, 256, bases.shape[1:], dtype=np.uint8))
        else:
            noisy = bases[g] + rng.normal(0, 30, bases.shape[1:])
            out.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return out


def _prepared(crops: list) -> list:
    from workers.exif import ExifFacts
    from workers.photos import DecodedPhoto
    from workers.pipeline import Prepared

    return [
        Prepared(DecodedPhoto(c, "JPEG", c.shape[1], c.shape[0], 1, c.shape[:2]), ExifFacts())
        for c in crops
    ]


def _release(model: Any, version: str, refs: list, ref_groups: np.ndarray, noise: list) -> Any:
    """A release built from this model's embeddings of the landmarks' reference photos, with
    thresholds between the landmark photos and random images (calibrated, not trained)."""
    from models.landmarks import Thresholds
    from models.release import make_release

    _, e = model.predict(refs)
    _, n = model.predict(noise)
    k = int(ref_groups.max()) + 1
    cents = np.stack([e[ref_groups == g].mean(0) for g in range(k)])
    cents /= np.linalg.norm(cents, axis=1, keepdims=True)
    own = (e * cents[ref_groups]).sum(1)
    other = np.concatenate([(n @ cents.T).max(1)] + [
        np.delete(e[i] @ cents.T, ref_groups[i])[None] .max(1) for i in range(len(e))
    ])  # fmt: skip
    cut = float((np.quantile(own, 0.2) + other.max()) / 2)
    return make_release(
        version=version,
        model_version=model.meta.model_version,
        thresholds=Thresholds(geo=cut, general=cut, verify=cut - 0.05),
        landmarks=[
            {"id": f"L{g}", "name": f"Landmark {g}", "city": "Synthetic", "country": "XX"}
            for g in range(k)
        ],
        centroids=cents.astype(np.float32),
        centroid_landmarks=np.arange(k),
        references=e.astype(np.float32),
        reference_landmarks=ref_groups,
    )


def _tag(conn: Any, model: Any, crops: list, keys: list[str], cache: dict) -> list:
    """Tag (or re-embed) photos as the worker does: live releases, one forward pass, one
    write per batch through sightline_write_photos."""
    from workers.pipeline import infer
    from workers.releases import load_live_releases
    from workers.store import tagged_item, write_photos

    with conn, conn.cursor() as cur:
        live = load_live_releases(cur, cache)
    results = infer(_prepared(crops), model, live)
    tasks = [
        {"owner": OWNER, "bucket": "lib", "key": k, "version_id": None, "etag": None,
         "size": 1, "sequencer": None, "event_time": None}
        for k in keys
    ]  # fmt: skip
    with conn, conn.cursor() as cur:
        out = write_photos(cur, [tagged_item(t, r) for t, r in zip(tasks, results)])
    bad = [o for _, o in out if o != "tagged"]
    if bad:
        raise RuntimeError(f"write refused: {bad[0]}")
    return results


def _expect(result: Any, releases: set[str]) -> tuple[str | None, set[str]]:
    album = result.albums[0][0] if result.albums else None
    marks = {lid for v, ms in result.matches.items() if v in releases for lid, _ in ms}
    return album, marks


class _Sampler(threading.Thread):
    def __init__(self, url: str, model_b: str, every_s: float) -> None:
        super().__init__(daemon=True)
        self.url, self.model_b, self.every_s = url, model_b, every_s
        self.samples: list[tuple[dict, dict, np.ndarray]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from workers.db import connect

        conn = connect(self.url)
        try:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                with conn, conn.cursor() as cur:
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    cur.execute("SELECT album, photos FROM scene_albums(%s)", (OWNER,))
                    scenes = dict(cur.fetchall())
                    cur.execute("SELECT landmark_id, photos FROM landmark_albums(%s)", (OWNER,))
                    marks = dict(cur.fetchall())
                    cur.execute(
                        "SELECT id FROM photos WHERE owner = %s AND model_version = %s",
                        (OWNER, self.model_b),
                    )
                    on_b = np.array([r[0] for r in cur.fetchall()], dtype=np.int64)
                self.samples.append((scenes, marks, on_b))
                self.stop.wait(max(0.0, self.every_s - (time.perf_counter() - t0)))
        except BaseException as exc:  # reported by the driver, never lost in a thread
            self.error = exc
        finally:
            conn.close()


def run_switch(
    url: str,
    *,
    photos: int = 20_000,
    landmarks: int = 8,
    landmark_share: float = 0.3,
    batch: int = 256,
    sample_every_s: float = 0.1,
    new_release_first: bool = True,
    seed: int = 0,
) -> SwitchReport:
    """Tag ``photos`` under model A with release RA active, then switch to model B: build
    RB from B's embeddings, import, re-tag and activate it beside RA (``new_release_first``;
    False re-embeds first, the order that drops photos), re-embed every photo under B, and
    retire RA. A sampler reads the albums every ``sample_every_s`` throughout."""
    from workers.db import connect
    from workers.generations import retire
    from workers.releases import import_release
    from workers.retag import retag_release

    rng = np.random.default_rng(seed)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sightline-switch-") as folder:
        model_a, model_b = tiny_models(Path(folder))
    crop = model_a.meta.transform.crop
    bases = rng.integers(0, 256, (landmarks, crop, crop, 3)).astype(np.float64)
    ref_groups = np.repeat(np.arange(landmarks), 12)
    refs = _images(rng, bases, ref_groups)
    noise = _images(rng, bases, np.full(64, -1))
    groups = np.where(rng.random(photos) < landmark_share, rng.integers(0, landmarks, photos), -1)
    keys = [f"p/{i:07d}.jpg" for i in range(photos)]
    ma, mb = model_a.meta.model_version, model_b.meta.model_version

    conn = connect(url, timeout_s=600)
    cache: dict = {}
    t0 = time.perf_counter()
    import_release(conn, _release(model_a, "RA", refs, ref_groups, noise))
    retag_release(conn, "RA", progress=False)  # nothing stored yet: ready, then active
    res_a: list = []
    for lo in range(0, photos, batch):
        sl = slice(lo, lo + batch)
        res_a += _tag(conn, model_a, _images(rng, bases, groups[sl]), keys[sl], cache)
    seconds["tag_a"] = time.perf_counter() - t0
    with conn, conn.cursor() as cur:
        cur.execute("SELECT key, id FROM photos WHERE owner = %s", (OWNER,))
        ids = dict(cur.fetchall())
    pid = np.array([ids[k] for k in keys], dtype=np.int64)

    sampler = _Sampler(url, mb, sample_every_s)
    sampler.start()
    t0 = time.perf_counter()

    def new_release() -> None:
        # The release for the new weights comes from B's embeddings of the reference photos.
        import_release(conn, _release(model_b, "RB", refs, ref_groups, noise), new_model=True)
        retag_release(conn, "RB", progress=False)  # re-matches the photos already on B

    if new_release_first:
        new_release()
    res_b: list = []
    rng_b = np.random.default_rng(seed + 1)
    for lo in range(0, photos, batch):
        sl = slice(lo, lo + batch)
        res_b += _tag(conn, model_b, _images(rng_b, bases, groups[sl]), keys[sl], cache)
    if not new_release_first:
        new_release()
    seconds["switch"] = time.perf_counter() - t0
    time.sleep(3 * sample_every_s)
    retire(conn, "RA")  # no photo of model A is left
    time.sleep(3 * sample_every_s)
    sampler.stop.set()
    sampler.join()
    conn.close()
    if sampler.error is not None:
        raise sampler.error

    # Expected under B: RB's final matches (written at re-embed, or by RB's re-tag when the
    # release came last), so a photo the new model places elsewhere counts as a re-match.
    conn = connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT photo_id, landmark_id FROM landmark_matches WHERE release = 'RB'")
        rb: dict[int, set[str]] = {}
        for p, lm in cur.fetchall():
            rb.setdefault(p, set()).add(lm)
    conn.close()
    exp_a = [_expect(r, {"RA"}) for r in res_a]
    exp_b = [(_expect(r, set())[0], rb.get(int(p), set())) for r, p in zip(res_b, pid)]
    albums = sorted({a for a, _ in exp_a + exp_b if a})
    marks_all = sorted({m for _, ms in exp_a + exp_b for m in ms})

    def coded(exp: list) -> tuple[np.ndarray, np.ndarray]:
        alb = np.array([albums.index(a) if a else -1 for a, _ in exp])
        mat = np.array([[m in ms for m in marks_all] for _, ms in exp], dtype=np.int64)
        return alb, mat.reshape(len(exp), len(marks_all))

    alb_a, mat_a = coded(exp_a)
    alb_b, mat_b = coded(exp_b)
    drops, mid = 0, 0
    for scenes, marks, on_b in sampler.samples:
        b = np.isin(pid, on_b)
        mid += bool(0 < b.sum() < photos)
        alb = np.where(b, alb_b, alb_a)
        want_s = np.bincount(alb[alb >= 0], minlength=len(albums))
        want_m = np.where(b[:, None], mat_b, mat_a).sum(0)
        got_s = np.array([scenes.get(a, 0) for a in albums])
        got_m = np.array([marks.get(m, 0) for m in marks_all])
        drops += int(np.maximum(0, want_s - got_s).sum() + np.maximum(0, want_m - got_m).sum())
    return SwitchReport(
        photos=photos,
        reembedded=len(res_b),
        samples=len(sampler.samples),
        album_drops=drops,
        mid_switch_samples=mid,
        landmark_photos_a=sum(bool(m) for _, m in exp_a),
        landmark_photos_b=sum(bool(m) for _, m in exp_b),
        scene_refiled=sum(a[0] != b[0] for a, b in zip(exp_a, exp_b)),
        landmark_rematched=sum(a[1] != b[1] for a, b in zip(exp_a, exp_b)),
        seconds=seconds,
        models=(ma, mb),
    )
