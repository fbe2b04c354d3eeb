"""Synthetic embeddings with known structure for the landmark tests.

Each landmark has one or more viewpoint directions; its photos are noisy copies of them.
Not-a-landmark photos are random directions plus near-duplicate distractors: noisier
copies of real viewpoints, labelled -1 (the look-alike buildings of the article).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.centroids import l2_normalise


@dataclass
class World:
    dim: int
    views: list[np.ndarray]  # per landmark, (viewpoints, dim)
    lats: np.ndarray
    lons: np.ndarray

    def landmark_rows(self) -> list[dict]:
        return [
            {
                "id": str(i),
                "name": f"Landmark {i}",
                "city": f"City {i % 3}",
                "country": "XX",
                "lat": float(self.lats[i]),
                "lon": float(self.lons[i]),
            }
            for i in range(len(self.views))
        ]


def make_world(
    rng: np.random.Generator, viewpoints: list[int], dim: int = 64, spread: float = 2.0
) -> World:
    """Landmarks with the given number of viewpoints each, far apart on the globe."""
    views = []
    for k in viewpoints:
        base = l2_normalise(rng.standard_normal(dim))
        extra = [
            l2_normalise(base + spread * l2_normalise(rng.standard_normal(dim)))
            for _ in range(k - 1)
        ]
        views.append(np.stack([base, *extra]))
    n = len(viewpoints)
    lats = np.linspace(-60, 60, n)
    lons = np.linspace(-170, 170, n)
    return World(dim, views, lats, lons)


def noisy(rng: np.random.Generator, centre: np.ndarray, n: int, sigma: float) -> np.ndarray:
    dim = centre.shape[-1]
    return l2_normalise(centre + sigma * rng.standard_normal((n, dim)) / np.sqrt(dim))


def photos(
    rng: np.random.Generator,
    world: World,
    per_view: list[int] | int,
    sigma: float = 0.35,
) -> tuple[np.ndarray, np.ndarray]:
    """Landmark photos: ``per_view[i]`` photos for each viewpoint of landmark i."""
    counts = per_view if isinstance(per_view, list) else [per_view] * len(world.views)
    es, ls = [], []
    for i, (v, c) in enumerate(zip(world.views, counts)):
        for view in v:
            es.append(noisy(rng, view, c, sigma))
            ls.append(np.full(c, i))
    return np.concatenate(es), np.concatenate(ls).astype(np.int64)


def negatives(
    rng: np.random.Generator, world: World, n_random: int, n_lookalike: int, sigma: float = 1.1
) -> np.ndarray:
    """Not-a-landmark photos: random directions and near-duplicates of real viewpoints."""
    rand = l2_normalise(rng.standard_normal((n_random, world.dim)))
    all_views = np.concatenate(world.views)
    pick = all_views[rng.integers(0, len(all_views), n_lookalike)]
    look = l2_normalise(pick + sigma * rng.standard_normal(pick.shape) / np.sqrt(world.dim))
    return np.concatenate([rand, look]).astype(np.float32)


def references(rng: np.random.Generator, world: World, per: int = 4, sigma: float = 0.3):
    """3-5 reference photos per landmark, from its main (first) viewpoint."""
    refs = [noisy(rng, v[0], per, sigma) for v in world.views]
    return np.concatenate(refs), np.repeat(np.arange(len(world.views)), per).astype(np.int64)


def insert_photos(
    conn, embeddings: np.ndarray, gps: np.ndarray, model_version: str, owner: str = "alice"
) -> list[int]:
    """Stored, tagged photos with these embeddings (as the worker leaves them); their ids."""
    from psycopg2.extras import execute_values

    rows = [
        (
            owner,
            "b",
            f"{owner}/{model_version}/{i}.jpg",
            "tagged",
            model_version,
            None if np.isnan(g[0]) else float(g[0]),
            None if np.isnan(g[1]) else float(g[1]),
            np.asarray(e, np.float32),
        )
        for i, (e, g) in enumerate(zip(embeddings, gps))
    ]
    with conn, conn.cursor() as cur:
        got = execute_values(
            cur,
            "INSERT INTO photos (owner, bucket, key, status, model_version, gps_lat, gps_lon,"
            " embedding) VALUES %s RETURNING id",
            rows,
            page_size=2000,
            fetch=True,
        )
    return [r[0] for r in got]
