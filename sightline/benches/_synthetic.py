"""Random releases and embeddings of a given size for the landmark benchmarks."""

from __future__ import annotations

import numpy as np

from models.centroids import l2_normalise
from models.landmarks import Thresholds
from models.release import Release, make_release


def random_release(
    rng: np.random.Generator, *, centroids: int, dim: int, version: str = "bench"
) -> Release:
    """About 85 % as many landmarks as centroids (the seed: ~20 % have several), spread
    over the globe, 4 references each."""
    n_land = max(1, int(centroids * 0.85))
    owners = np.concatenate([np.arange(n_land), rng.integers(0, n_land, centroids - n_land)])
    cents = l2_normalise(rng.standard_normal((centroids, dim)))
    refs = l2_normalise(
        np.repeat(cents[:n_land], 4, axis=0)
        + 0.3 * rng.standard_normal((4 * n_land, dim)) / np.sqrt(dim)
    )
    rows = [
        {"id": f"L{i}", "name": f"Landmark {i}", "lat": la, "lon": lo}
        for i, (la, lo) in enumerate(
            zip(rng.uniform(-60, 70, n_land).tolist(), rng.uniform(-180, 180, n_land).tolist())
        )
    ]
    return make_release(
        version=version,
        model_version="bench-model",
        thresholds=Thresholds(geo=0.6, general=0.8, verify=0.7),
        landmarks=rows,
        centroids=cents,
        centroid_landmarks=owners,
        references=refs,
        reference_landmarks=np.repeat(np.arange(n_land), 4),
    )


def queries(
    rng: np.random.Generator, release: Release, n: int, landmark_share: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """Photos: ``landmark_share`` near a centroid (GPS at its landmark), the rest random;
    half of all photos carry GPS."""
    dim = release.embedding_dim
    q = l2_normalise(rng.standard_normal((n, dim)))
    k = int(n * landmark_share)
    pick = rng.integers(0, len(release.centroids), k)
    q[:k] = l2_normalise(release.centroids[pick] + 0.3 * rng.standard_normal((k, dim)) / 8)
    owner = release.centroid_landmarks[pick]
    gps = np.stack([rng.uniform(-60, 70, n), rng.uniform(-180, 180, n)], axis=1)
    gps[:k] = np.stack([release.lats[owner], release.lons[owner]], axis=1)
    gps[rng.random(n) < 0.5] = np.nan
    return q.astype(np.float32), gps
