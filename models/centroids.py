"""Centroids per landmark by complete-linkage clustering, and the seed's reference cleaning.

Distances between unit vectors are cosine distances, 1 - dot product: complete linkage
with threshold t keeps clusters whose every pair of photos is at least 1 - t similar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOT_A_LANDMARK = -1


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class CentroidSet:
    """Centroids (C, D) and the landmark label each belongs to."""

    centroids: np.ndarray
    labels: np.ndarray  # (C,) the landmark label of each centroid
    photos: dict[int, int]  # label -> number of photos it was built from

    def per_landmark(self) -> dict[int, int]:
        values, counts = np.unique(self.labels, return_counts=True)
        return dict(zip(values.tolist(), counts.tolist()))

    @property
    def multi_centroid_landmarks(self) -> int:
        return sum(1 for c in self.per_landmark().values() if c > 1)


def landmark_centroids(
    embeddings: np.ndarray, *, min_cluster: int = 50, linkage_threshold: float = 0.5
) -> np.ndarray:
    """Centroids of one landmark's embeddings: one per complete-linkage cluster with at least
    ``min_cluster`` photos, or one from all photos when no cluster is that large."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    e = l2_normalise(embeddings)
    if len(e) == 0:
        return np.zeros((0, e.shape[-1]), dtype=np.float32)
    if len(e) >= max(2, min_cluster):
        dist = np.clip(pdist(e.astype(np.float64), metric="cosine"), 0.0, 2.0)
        tree = linkage(dist, method="complete")
        assign = fcluster(tree, t=linkage_threshold, criterion="distance")
        ids, counts = np.unique(assign, return_counts=True)
        big = ids[counts >= min_cluster]
        # Largest cluster first, so the first centroid is the landmark's main view.
        big = big[np.argsort(-counts[counts >= min_cluster], kind="stable")]
        if len(big):
            return l2_normalise(np.stack([e[assign == c].mean(axis=0) for c in big]))
    return l2_normalise(e.mean(axis=0, keepdims=True))


def build_centroids(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    min_cluster: int = 50,
    linkage_threshold: float = 0.5,
) -> CentroidSet:
    """Centroids for every label except NOT_A_LANDMARK (-1), which never gets one."""
    labels = np.asarray(labels)
    if len(labels) != len(embeddings):
        raise ValueError(f"{len(labels)} labels for {len(embeddings)} embeddings")
    out, owners, photos = [], [], {}
    for label in np.unique(labels):
        if label == NOT_A_LANDMARK:
            continue
        rows = embeddings[labels == label]
        c = landmark_centroids(rows, min_cluster=min_cluster, linkage_threshold=linkage_threshold)
        out.append(c)
        owners.extend([int(label)] * len(c))
        photos[int(label)] = len(rows)
    dim = np.asarray(embeddings).shape[-1]
    return CentroidSet(
        centroids=np.concatenate(out) if out else np.zeros((0, dim), np.float32),
        labels=np.asarray(owners, dtype=np.int64),
        photos=photos,
    )


def mean_reference_distance(
    embeddings: np.ndarray,
    labels: np.ndarray,
    references: np.ndarray,
    reference_labels: np.ndarray,
) -> np.ndarray:
    """Per photo, the mean cosine distance to its landmark's references (NaN: none)."""
    e = l2_normalise(embeddings)
    refs = l2_normalise(references)
    labels = np.asarray(labels)
    reference_labels = np.asarray(reference_labels)
    out = np.full(len(e), np.nan, dtype=np.float32)
    for label in np.unique(reference_labels):
        rows = np.flatnonzero(labels == label)
        if len(rows):
            mean_ref = refs[reference_labels == label].mean(axis=0)
            out[rows] = 1.0 - e[rows] @ mean_ref  # mean of (1 - dot) = 1 - dot with the mean
    return out


def clean_mask(
    embeddings: np.ndarray,
    labels: np.ndarray,
    references: np.ndarray,
    reference_labels: np.ndarray,
    *,
    threshold: float,
) -> np.ndarray:
    """True for photos to keep: mean distance to their landmark's references <= threshold.

    Not-a-landmark photos and photos of a landmark without references are kept: there is
    nothing to judge them against.
    """
    d = mean_reference_distance(embeddings, labels, references, reference_labels)
    with np.errstate(invalid="ignore"):
        return np.isnan(d) | (d <= threshold) | (np.asarray(labels) == NOT_A_LANDMARK)
