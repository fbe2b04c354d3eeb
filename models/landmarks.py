"""Landmark matching maths: dot products of unit vectors against centroids, restricted to a
square around the photo when it has GPS, verified against reference embeddings when not."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

KM_PER_DEGREE_LAT = 111.32
_CHUNK = 512  # photos per matrix product: (chunk, centroids) floats stay near the cache


@dataclass(frozen=True)
class Thresholds:
    """Similarity thresholds (dot products of unit vectors, higher is closer)."""

    geo: float = 0.6  # with GPS, inside the square
    general: float = 0.8  # without GPS, before verification
    verify: float = 0.7  # without GPS: mean similarity to the landmark's references
    square_km: float = 1.0  # side of the square around a photo with GPS

    def to_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Thresholds:
        names = {f.name for f in fields(cls)}
        return cls(**{k: float(v) for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Match:
    landmark: int  # index into LandmarkIndex.landmark_ids
    score: float


@dataclass(frozen=True)
class MatchArrays:
    """Every (photo, landmark) pair that passed, as flat arrays ordered by photo, best first."""

    photo: np.ndarray  # int64 row index into the queries
    landmark: np.ndarray  # int64 index into landmark_ids
    score: np.ndarray  # float32 best-centroid similarity


def in_square(lat, lon, lats, lons, side_km: float) -> np.ndarray:
    """Mask of points inside the side_km square centred on (lat, lon) (broadcasts).

    Longitude differences wrap across the antimeridian; their length shrinks with cos(lat)
    of the photo, so near a pole the square spans many degrees. NaN is never inside.
    """
    lat = np.asarray(lat, dtype=np.float64)
    half = side_km / 2.0
    with np.errstate(invalid="ignore"):
        dlat_km = np.abs(lats - lat) * KM_PER_DEGREE_LAT
        dlon = (lons - lon + 180.0) % 360.0 - 180.0
        dlon_km = np.abs(dlon) * KM_PER_DEGREE_LAT * np.cos(np.radians(lat))
        return (dlat_km <= half) & (dlon_km <= half)


def _group_starts(owners: np.ndarray) -> np.ndarray:
    if len(owners) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])


class LandmarkIndex:
    """Centroids and references of one release, ready to match embeddings."""

    def __init__(
        self,
        *,
        landmark_ids: list[str],
        lats: np.ndarray,
        lons: np.ndarray,
        centroids: np.ndarray,
        centroid_landmarks: np.ndarray,
        references: np.ndarray,
        reference_landmarks: np.ndarray,
        thresholds: Thresholds,
    ) -> None:
        n = len(landmark_ids)
        centroids = np.asarray(centroids, dtype=np.float32)
        centroid_landmarks = np.asarray(centroid_landmarks, dtype=np.int64)
        reference_landmarks = np.asarray(reference_landmarks, dtype=np.int64)
        if centroids.ndim != 2 or len(centroids) != len(centroid_landmarks):
            raise ValueError("centroids must be (C, D) with one landmark index per row")
        for owners in (centroid_landmarks, reference_landmarks):
            if len(owners) and (owners.min() < 0 or owners.max() >= n):
                raise ValueError("landmark index out of range")
        self.landmark_ids = list(landmark_ids)
        self.lats = np.asarray(lats, dtype=np.float64)
        self.lons = np.asarray(lons, dtype=np.float64)
        self.thresholds = thresholds
        self.dim = centroids.shape[1]
        # Sort centroids by landmark so the best centroid per landmark is one reduceat.
        order = np.argsort(centroid_landmarks, kind="stable")
        self._centroids = np.ascontiguousarray(centroids[order])
        owners = centroid_landmarks[order]
        self._owners = owners
        self._starts = _group_starts(owners)
        self._present = owners[self._starts]
        # The mean of dot products is the dot product with the mean reference, so
        # verification is one product per candidate.
        refs = np.asarray(references, dtype=np.float32).reshape(-1, self.dim)
        sums = np.zeros((n, self.dim), dtype=np.float64)
        np.add.at(sums, reference_landmarks, refs)
        counts = np.bincount(reference_landmarks, minlength=n)
        self._has_refs = counts > 0
        self._ref_means = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)

    def __len__(self) -> int:
        return len(self.landmark_ids)

    @property
    def n_centroids(self) -> int:
        return len(self._centroids)

    def landmark_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, L) best centroid similarity per landmark; -inf where it has no centroid."""
        out = np.full((len(embeddings), len(self)), -np.inf, dtype=np.float32)
        if len(self._centroids) == 0 or len(embeddings) == 0:
            return out
        e = np.asarray(embeddings, dtype=np.float32)
        # One photo: a matrix-vector product on the row-major centroids is faster.
        sims = (self._centroids @ e[0])[None] if len(e) == 1 else e @ self._centroids.T
        out[:, self._present] = np.maximum.reduceat(sims, self._starts, axis=1)
        return out

    def verify_scores(self, embeddings: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Mean similarity of each embedding to its paired landmark's references (-inf: none)."""
        e = np.asarray(embeddings, dtype=np.float32)
        landmarks = np.asarray(landmarks, dtype=np.int64)
        s = np.einsum("ij,ij->i", e, self._ref_means[landmarks])
        return np.where(self._has_refs[landmarks], s, -np.inf).astype(np.float32)

    def verify_matrix(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, L) mean similarity to every landmark's references; -inf where it has none."""
        s = np.asarray(embeddings, dtype=np.float32) @ self._ref_means.T
        s[:, ~self._has_refs] = -np.inf
        return s

    def verify(self, embedding: np.ndarray, landmark: int) -> float:
        """Mean similarity to the landmark's reference embeddings (-inf when it has none)."""
        return float(self.verify_scores(np.atleast_2d(embedding), np.array([landmark]))[0])

    def _check(self, embeddings: np.ndarray, gps: np.ndarray | None) -> tuple:
        embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if embeddings.shape[1] != self.dim:
            raise ValueError(f"embedding dim {embeddings.shape[1]} != release dim {self.dim}")
        if gps is None:
            gps = np.full((len(embeddings), 2), np.nan)
        gps = np.asarray(gps, dtype=np.float64).reshape(-1, 2)
        if len(gps) != len(embeddings):
            raise ValueError(f"{len(gps)} GPS rows for {len(embeddings)} embeddings")
        return embeddings, gps

    def _candidates(self, e: np.ndarray, floor: float) -> tuple:
        """(row, landmark, best centroid score) for every landmark scoring >= floor.

        Thresholds are high, so candidates are few: reduce per landmark on them only
        instead of over the whole (photos, centroids) matrix.
        """
        if len(self._centroids) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        sims = (self._centroids @ e[0])[None] if len(e) == 1 else e @ self._centroids.T
        # Most photos are no landmark: a row maximum (one fast pass) skips them before the
        # slower element-wise search runs on the few rows left.
        hot = np.flatnonzero(sims.max(axis=1) >= floor)
        sub = sims[hot]
        r, idx = np.nonzero(sub >= floor)
        rows, s, cols = hot[r], sub[r, idx], self._owners[idx]
        order = np.lexsort((-s, cols, rows))
        rows, cols, s = rows[order], cols[order], s[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
        return rows[first], cols[first], s[first]

    def match_arrays(self, embeddings: np.ndarray, gps: np.ndarray | None = None) -> MatchArrays:
        """The passing (photo, landmark, score) triples of a batch, vectorised.

        ``gps`` is (N, 2) latitude, longitude with NaN where a photo has none.
        """
        embeddings, gps = self._check(embeddings, gps)
        t = self.thresholds
        floor = min(t.geo, t.general)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for lo in range(0, len(embeddings), _CHUNK):
            e = embeddings[lo : lo + _CHUNK]
            g = gps[lo : lo + _CHUNK]
            rows, cols, s = self._candidates(e, floor)
            has_gps = np.isfinite(g[rows]).all(axis=1)
            geo_ok = (
                has_gps
                & (s >= t.geo)
                & in_square(g[rows, 0], g[rows, 1], self.lats[cols], self.lons[cols], t.square_km)
            )
            general = ~has_gps & (s >= t.general)
            ok = geo_ok.copy()
            if general.any():
                idx = np.flatnonzero(general)
                v = self.verify_scores(e[rows[idx]], cols[idx])
                ok[idx[v >= t.verify]] = True
            parts.append((rows[ok] + lo, cols[ok], s[ok]))
        if parts:
            photo, landmark, score = (np.concatenate(x) for x in zip(*parts))
        else:
            photo = landmark = np.zeros(0, np.int64)
            score = np.zeros(0, np.float32)
        order = np.lexsort((-score, photo))
        return MatchArrays(
            photo[order].astype(np.int64),
            landmark[order].astype(np.int64),
            score[order].astype(np.float32),
        )

    def match(self, embeddings: np.ndarray, gps: np.ndarray | None = None) -> list[list[Match]]:
        """Matches per photo, best first; an empty list means not a landmark."""
        embeddings, gps = self._check(embeddings, gps)
        m = self.match_arrays(embeddings, gps)
        out: list[list[Match]] = [[] for _ in range(len(embeddings))]
        for p, j, s in zip(m.photo.tolist(), m.landmark.tolist(), m.score.tolist()):
            out[p].append(Match(j, s))
        return out


def top1(index: LandmarkIndex, embeddings: np.ndarray, gps: np.ndarray | None = None):
    """Best passing landmark per photo (-1 when none) and its score (-inf when none)."""
    m = index.match_arrays(embeddings, gps)
    n = len(np.atleast_2d(embeddings))
    best = np.full(n, -1, dtype=np.int64)
    score = np.full(n, -math.inf, dtype=np.float32)
    first = _group_starts(m.photo)  # arrays are ordered by photo, best first
    best[m.photo[first]] = m.landmark[first]
    score[m.photo[first]] = m.score[first]
    return best, score
