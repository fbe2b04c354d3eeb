"""Centroids by complete linkage (multi-viewpoint discovery, rare landmarks) and cleaning."""

from __future__ import annotations

import numpy as np
import pytest

from models.centroids import build_centroids, clean_mask, l2_normalise, landmark_centroids
from tests.synthetic_landmarks import make_world, noisy, photos, references


def test_viewpoint_clusters_become_centroids_and_rare_landmarks_get_one() -> None:
    """Each viewpoint with >= min_cluster photos gives a centroid near it; a rare one gets one."""
    rng = np.random.default_rng(0)
    world = make_world(rng, [2, 1, 3, 1])
    e, labels = photos(rng, world, [80, 120, 60, 12])  # landmark 3 is rare (12 photos)
    noise = l2_normalise(rng.standard_normal((40, world.dim)))
    e = np.concatenate([e, noise])
    labels = np.concatenate([labels, np.full(40, -1)])
    cs = build_centroids(e, labels, min_cluster=50, linkage_threshold=0.5)
    assert cs.per_landmark() == {0: 2, 1: 1, 2: 3, 3: 1}  # -1 never gets a centroid
    assert cs.multi_centroid_landmarks == 2
    assert cs.photos == {0: 160, 1: 120, 2: 180, 3: 12}
    assert np.allclose(np.linalg.norm(cs.centroids, axis=1), 1.0, atol=1e-5)
    for label, views in enumerate(world.views):
        got = cs.centroids[cs.labels == label]
        # Every true viewpoint has a centroid within a few degrees of it.
        assert (views @ got.T).max(axis=1).min() > 0.98


def test_small_clusters_are_dropped_not_averaged_in() -> None:
    """A minority of stray photos (a nearby square) does not pull the landmark's centroid."""
    rng = np.random.default_rng(1)
    world = make_world(rng, [1])
    main = noisy(rng, world.views[0][0], 90, 0.35)
    stray = noisy(rng, l2_normalise(rng.standard_normal(world.dim)), 30, 0.35)
    c = landmark_centroids(np.concatenate([main, stray]), min_cluster=50)
    assert c.shape == (1, world.dim)
    assert float(c[0] @ world.views[0][0]) > 0.99
    mean_all = l2_normalise(np.concatenate([main, stray]).mean(axis=0))
    assert float(mean_all @ world.views[0][0]) < 0.97  # what one plain mean would give


def test_no_large_cluster_gives_one_centroid_from_all_photos() -> None:
    """When no cluster reaches min_cluster the landmark still gets the mean of all photos."""
    rng = np.random.default_rng(2)
    e = l2_normalise(rng.standard_normal((30, 16)))
    c = landmark_centroids(e, min_cluster=50)
    np.testing.assert_allclose(c[0], l2_normalise(e.mean(axis=0)), atol=1e-6)


def test_cleaning_keeps_photos_near_the_references() -> None:
    """The seed's cleaning drops photos whose mean distance to the references is too large."""
    rng = np.random.default_rng(4)
    world = make_world(rng, [1, 1])
    good, gl = photos(rng, world, 40, sigma=0.35)
    junk = l2_normalise(rng.standard_normal((20, world.dim)))
    jl = np.repeat([0, 1], 10)
    refs, rl = references(rng, world, per=4)
    e = np.concatenate([good, junk, junk[:3]])
    labels = np.concatenate([gl, jl, [-1, -1, 5]])  # -1 and a label with no references: kept
    keep = clean_mask(e, labels, refs, rl, threshold=0.3)
    assert keep[:80].all()
    assert not keep[80:100].any()
    assert keep[100:].all()


def test_labels_must_match_embeddings() -> None:
    """Mismatched label and embedding counts are refused."""
    with pytest.raises(ValueError, match="3 labels for 2 embeddings"):
        build_centroids(np.ones((2, 4)), np.array([0, 0, 1]))
