"""Landmark metrics on hand-checkable cases, and calibration reaching its target FPR."""

from __future__ import annotations

import numpy as np
import pytest

from models.centroids import build_centroids
from models.landmark_eval import calibrate, evaluate, gap, metrics
from models.landmarks import Thresholds
from models.release import make_release
from tests.synthetic_landmarks import make_world, negatives, photos, references


def test_gap_by_hand() -> None:
    """GAP ranks predictions by confidence; misses and no-predictions lower it as defined."""
    # Ranked by confidence: right, wrong (a not-a-landmark photo), right; one landmark unmatched.
    pred = np.array([3, 7, 5, -1, -1])
    conf = np.array([0.9, 0.8, 0.7, 0.0, 0.0])
    truth = np.array([3, -1, 5, 2, -1])
    # P(1) = 1, P(3) = 2/3; M = 3 landmark queries.
    assert gap(pred, conf, truth) == pytest.approx((1 + 2 / 3) / 3)
    assert gap(np.array([-1]), np.array([0.0]), np.array([-1])) is None


def test_accuracies_and_frequent_rare_split_by_hand() -> None:
    """Landmark, not-a-landmark, frequent (> 100 training photos) and rare accuracies."""
    pred = np.array([0, 1, 1, -1, -1, 2, -1])
    truth = np.array([0, 1, 0, 2, -1, -1, -1])
    counts = np.array([500, 100, 7])  # landmark 1 has exactly 100: rare ("over 100" is frequent)
    m = metrics(pred, np.ones(7), truth, counts)
    assert m["landmark_accuracy"] == pytest.approx(2 / 4)
    assert m["non_landmark_accuracy"] == pytest.approx(2 / 3)
    assert m["false_positive_rate"] == pytest.approx(1 / 3)
    assert (m["frequent_photos"], m["frequent_accuracy"]) == (2, pytest.approx(1 / 2))
    assert (m["rare_photos"], m["rare_accuracy"]) == (2, pytest.approx(1 / 2))


def _scene(seed: int, gps: bool):
    rng = np.random.default_rng(seed)
    world = make_world(rng, [2, 1, 1, 2, 1, 1, 1, 1])
    e, lab = photos(rng, world, [70, 120, 60, 60, 10, 55, 80, 8])
    cs = build_centroids(e, lab, min_cluster=50)
    refs, rl = references(rng, world)
    release = make_release(
        version="v1",
        model_version="m",
        thresholds=Thresholds(),
        landmarks=world.landmark_rows(),
        centroids=cs.centroids,
        centroid_landmarks=cs.labels,
        references=refs,
        reference_landmarks=rl,
    )

    def split(seed2: int):
        r = np.random.default_rng(seed2)
        pe, pl = photos(r, world, 6, sigma=0.6)
        ne = negatives(r, world, 3000, 1500)
        emb = np.concatenate([pe, ne])
        truth = np.concatenate([pl, np.full(len(ne), -1)])
        g = np.full((len(emb), 2), np.nan)
        if gps:
            # Half the photos carry GPS: landmark photos at their landmark (within ~100 m),
            # negatives around random landmarks (tourists photograph other things too).
            where = np.where(truth >= 0, truth, r.integers(0, len(world.views), len(truth)))
            g = np.stack([world.lats[where], world.lons[where]], axis=1)
            g = g + r.uniform(-0.001, 0.001, g.shape)
            g[r.random(len(g)) < 0.5] = np.nan
        return emb, truth, g

    return release, split(seed + 100), split(seed + 200)


@pytest.mark.parametrize("target", [0.01, 0.05])
def test_calibration_reaches_the_target_fpr_on_held_out_negatives(target: float) -> None:
    """Thresholds chosen on one sample keep held-out not-a-landmark FPR near the target."""
    release, (ve, vt, vg), (te, tt, tg) = _scene(7, gps=True)
    cal = calibrate(release.index(), ve, vt, vg, target_fpr=target)
    assert cal.geo_calibrated
    assert cal.fpr_general <= target and cal.fpr_geo <= target
    tuned = release.with_thresholds(cal.thresholds, version="v2").index()
    held_out = evaluate(tuned, te, tt, tg)
    # 4,500 held-out negatives: the binomial spread around the target is small.
    assert held_out["false_positive_rate"] <= target * 1.6 + 0.002
    assert held_out["landmark_accuracy"] > 0.5  # still finds landmarks


def test_stricter_target_gives_fewer_false_positives() -> None:
    """A lower target FPR gives fewer false positives and no more landmark accuracy."""
    release, (ve, vt, _vg), _ = _scene(11, gps=False)
    idx = release.index()

    def at(target: float) -> dict:
        th = calibrate(idx, ve, vt, target_fpr=target).thresholds
        return evaluate(release.with_thresholds(th, version=str(target)).index(), ve, vt)

    loose, strict = at(0.05), at(0.002)
    assert strict["false_positive_rate"] <= 0.002 < loose["false_positive_rate"] <= 0.05
    assert strict["landmark_accuracy"] <= loose["landmark_accuracy"]
