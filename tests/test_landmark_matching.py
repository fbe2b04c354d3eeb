"""Matching: geo square (antimeridian, high latitude), general threshold with verification."""

from __future__ import annotations

import numpy as np
import pytest

from models.centroids import l2_normalise
from models.landmarks import LandmarkIndex, Thresholds, in_square

NAN = np.nan


def _index(lats, lons, centroids, owners, refs, ref_owners, **th) -> LandmarkIndex:
    return LandmarkIndex(
        landmark_ids=[f"L{i}" for i in range(len(lats))],
        lats=np.array(lats, float),
        lons=np.array(lons, float),
        centroids=l2_normalise(np.array(centroids, float)),
        centroid_landmarks=np.array(owners),
        references=l2_normalise(np.array(refs, float)).reshape(-1, len(centroids[0])),
        reference_landmarks=np.array(ref_owners, dtype=np.int64),
        thresholds=Thresholds(**th),
    )


@pytest.mark.parametrize(
    ("lat", "lon", "lat2", "lon2", "inside"),
    [
        (48.8530, 2.3499, 48.8530, 2.3550, True),  # ~370 m east in Paris
        (48.8530, 2.3499, 48.8530, 2.3650, False),  # ~1.1 km east: outside a 1 km square
        (48.8530, 2.3499, 48.8600, 2.3499, False),  # ~780 m north: outside (half side 500 m)
        (0.0, 179.999, 0.0, -179.999, True),  # 220 m apart across the antimeridian
        (0.0, -179.999, 0.0, 179.999, True),  # the same pair seen from the other side
        (0.0, 179.99, 0.0, -179.99, False),  # 2.2 km apart across the antimeridian
        (78.22, 15.65, 78.22, 15.66, True),  # Svalbard: 0.01 deg of longitude is ~230 m
        (0.0, 15.65, 0.0, 15.66, False),  # at the equator the same 0.01 deg is ~1.1 km
        (48.85, 2.35, NAN, NAN, False),  # a landmark without coordinates is never inside
    ],
)
def test_in_square(lat, lon, lat2, lon2, inside) -> None:
    """The 1 km square wraps the antimeridian, widens in degrees with latitude, skips NaN."""
    got = in_square(lat, lon, np.array([lat2]), np.array([lon2]), 1.0)
    assert bool(got[0]) is inside


def test_geo_restriction_uses_the_square_and_the_geo_threshold() -> None:
    """With GPS only landmarks in the square match, at the (lower) geo threshold; several may."""
    # Two look-alike landmarks 300 m apart in one city, a third 2 km away, same appearance.
    idx = _index(
        [48.8530, 48.8530, 48.8710],
        [2.3499, 2.3540, 2.3499],
        [[1, 0, 0, 0], [1, 0.1, 0, 0], [1, 0, 0.05, 0]],
        [0, 1, 2],
        [[1, 0, 0, 0]],
        [0],
        geo=0.9,
        general=0.999,
        verify=0.99,
    )
    q = l2_normalise(np.array([[1, 0.05, 0.02, 0.3]]))  # ~0.95 to each centroid
    near = idx.match(q, np.array([[48.8530, 2.3510]]))[0]
    assert sorted(idx.landmark_ids[m.landmark] for m in near) == ["L0", "L1"]
    assert near[0].score >= near[1].score
    # Far from every landmark: nothing, however similar the picture.
    assert idx.match(q, np.array([[40.0, 2.35]]))[0] == []
    # Without GPS the general threshold (0.999) is not reached: not a landmark.
    assert idx.match(q)[0] == []


def test_verification_without_gps_rejects_a_centroid_match_far_from_the_references() -> None:
    """Without GPS a photo passing the general threshold still needs its references' support."""
    idx = _index(
        [10.0, 20.0],
        [10.0, 20.0],
        [[1, 0, 0, 0], [0, 1, 0, 0]],
        [0, 1],
        [[1, 0.3, 0, 0], [1, -0.3, 0, 0], [1, 0, 0.3, 0], [0, 1, 0, 0]],
        [0, 0, 0, 1],
        geo=0.5,
        general=0.8,
        verify=0.85,
    )
    good = l2_normalise(np.array([1, 0, 0, 0.1]))  # close to centroid and references
    # Close enough to the centroid (0.85) but leaning away from every reference.
    lookalike = l2_normalise(np.array([1, -0.2, -0.3, 0.45]))
    assert float(lookalike @ idx._centroids[0]) >= 0.8
    assert idx.verify(lookalike, 0) < 0.85 <= idx.verify(good, 0)
    res = idx.match(np.stack([good, lookalike]))
    assert [[idx.landmark_ids[m.landmark] for m in r] for r in res] == [["L0"], []]
    # With GPS at the landmark, verification is not needed and the geo threshold applies.
    assert [m.landmark for m in idx.match(lookalike, np.array([[10.0, 10.0]]))[0]] == [0]


def test_best_centroid_per_landmark_and_landmarks_without_centroids() -> None:
    """A landmark's score is its best centroid; one with no centroid never matches."""
    idx = _index(
        [0, 0, 0],
        [0, 0, 0],
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        [2, 0, 2],  # unsorted owners; landmark 1 has none
        [[1, 0, 0]],
        [0],
    )
    s = idx.landmark_scores(np.array([[0, 0, 1.0], [0, 1.0, 0]], np.float32))
    assert s[0].tolist() == [0.0, -np.inf, 1.0]  # landmark 2's better centroid wins
    assert s[1].tolist() == [1.0, -np.inf, 0.0]


def test_dimension_mismatch_is_refused() -> None:
    """Embeddings of another width are refused rather than silently broadcast."""
    idx = _index([0], [0], [[1, 0, 0]], [0], [[1, 0, 0]], [0])
    with pytest.raises(ValueError, match="dim 4 != release dim 3"):
        idx.match(np.ones((1, 4)))


def test_batched_match_equals_one_by_one() -> None:
    """The vectorised batch gives the same matches as matching each photo alone."""
    rng = np.random.default_rng(3)
    cents = l2_normalise(rng.standard_normal((40, 8)))
    owners = rng.integers(0, 25, 40)
    idx = _index(
        rng.uniform(-1, 1, 25).tolist(),
        rng.uniform(-1, 1, 25).tolist(),
        cents,
        owners,
        l2_normalise(cents + 0.2 * rng.standard_normal(cents.shape)),
        owners,
        geo=0.7,
        general=0.75,
        verify=0.7,
        square_km=150.0,
    )
    q = l2_normalise(cents[rng.integers(0, 40, 3000)] + 0.3 * rng.standard_normal((3000, 8)))
    gps = np.where(rng.random((3000, 1)) < 0.5, rng.uniform(-1, 1, (3000, 2)), np.nan)
    batch = idx.match(q, gps)
    single = [idx.match(q[i : i + 1], gps[i : i + 1])[0] for i in range(0, 3000, 7)]
    assert [[m.landmark for m in r] for r in batch[::7]] == [
        [m.landmark for m in r] for r in single
    ]
    got = [m.score for r in batch[::7] for m in r]
    np.testing.assert_allclose(got, [m.score for r in single for m in r], atol=1e-5)
    assert sum(map(len, batch)) > 300  # the case is not trivially empty
