"""Landmark matching maths: dot products of unit vectors against centroids, restricted to a
square around the photo when it has GPS, verified against reference embeddings when not."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

KM_PER_DEGREE_LAT = 111.32


@dataclass(frozen=True)
class Thresholds:
    """Similarity thresholds (dot products of unit vectors, higher is closer)."""

    geo: float = 0.6  # with GPS, inside the square
    general: float = 0.8  # without GPS, before verification
    verify: float = 0.7  # without GPS: mean similarity to the landmark's references
    square_km: float = 1.0  # side of the square around a photo with GPS

    def to_dict(self) -> dict[str, float]:
        return {
            "geo": self.geo,
            "general": self.general,
            "verify": self.verify,
            "square_km": self.square_km,
        }


@dataclass(frozen=True)
class Match:
    landmark: int  # index into LandmarkIndex.landmark_ids
    score: float


def in_square(
    lat: float, lon: float, lats: np.ndarray, lons: np.ndarray, side_km: float
) -> np.ndarray:
    """Mask of points inside the side_km square centred on (lat, lon).

    Longitude differences wrap across the antimeridian; their length shrinks with cos(lat).
    Points with NaN coordinates are never inside.
    """
    half = side_km / 2.0
    dlat_km = np.abs(lats - lat) * KM_PER_DEGREE_LAT
    dlon = (lons - lon + 180.0) % 360.0 - 180.0
    dlon_km = np.abs(dlon) * KM_PER_DEGREE_LAT * math.cos(math.radians(lat))
    with np.errstate(invalid="ignore"):
        return (dlat_km <= half) & (dlon_km <= half)


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
        if centroids.ndim != 2 or len(centroids) != len(centroid_landmarks):
            raise ValueError("centroids must be (C, D) with one landmark index per row")
        if len(centroid_landmarks) and (
            centroid_landmarks.min() < 0 or centroid_landmarks.max() >= n
        ):
            raise ValueError("centroid landmark index out of range")
        self.landmark_ids = list(landmark_ids)
        self.lats = np.asarray(lats, dtype=np.float64)
        self.lons = np.asarray(lons, dtype=np.float64)
        self.thresholds = thresholds
        self.dim = centroids.shape[1]
        # Sort centroids by landmark so the best centroid per landmark is one reduceat.
        order = np.argsort(centroid_landmarks, kind="stable")
        self._centroids = np.ascontiguousarray(centroids[order], dtype=np.float32)
        owners = np.asarray(centroid_landmarks)[order]
        self._starts = (
            np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
            if len(owners)
            else np.zeros(0, int)
        )
        self._present = owners[self._starts] if len(owners) else np.zeros(0, int)
        ref_order = np.argsort(reference_landmarks, kind="stable")
        self._refs = np.ascontiguousarray(references[ref_order], dtype=np.float32)
        ref_owners = np.asarray(reference_landmarks)[ref_order]
        self._ref_slices: dict[int, slice] = {}
        if len(ref_owners):
            bounds = np.flatnonzero(np.r_[True, ref_owners[1:] != ref_owners[:-1], True])
            for a, b in itertools.pairwise(bounds):
                self._ref_slices[int(ref_owners[a])] = slice(int(a), int(b))

    def __len__(self) -> int:
        return len(self.landmark_ids)

    def landmark_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, L) best centroid similarity per landmark; -inf where it has no centroid."""
        out = np.full((len(embeddings), len(self)), -np.inf, dtype=np.float32)
        if len(self._centroids) == 0:
            return out
        sims = embeddings.astype(np.float32, copy=False) @ self._centroids.T
        out[:, self._present] = np.maximum.reduceat(sims, self._starts, axis=1)
        return out

    def verify(self, embedding: np.ndarray, landmark: int) -> float:
        """Mean similarity to the landmark's reference embeddings (-inf when it has none)."""
        sl = self._ref_slices.get(landmark)
        if sl is None:
            return -math.inf
        return float((self._refs[sl] @ embedding).mean())

    def match(self, embeddings: np.ndarray, gps: np.ndarray | None = None) -> list[list[Match]]:
        """Matches per photo, best first; an empty list means not a landmark.

        ``gps`` is (N, 2) latitude, longitude with NaN where a photo has none.
        """
        embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if embeddings.shape[1] != self.dim:
            raise ValueError(f"embedding dim {embeddings.shape[1]} != release dim {self.dim}")
        if gps is None:
            gps = np.full((len(embeddings), 2), np.nan)
        scores = self.landmark_scores(embeddings)
        t = self.thresholds
        results: list[list[Match]] = []
        for i, row in enumerate(scores):
            lat, lon = float(gps[i, 0]), float(gps[i, 1])
            if math.isfinite(lat) and math.isfinite(lon):
                ok = in_square(lat, lon, self.lats, self.lons, t.square_km) & (row >= t.geo)
                found = [Match(int(j), float(row[j])) for j in np.flatnonzero(ok)]
            else:
                found = [
                    Match(int(j), float(row[j]))
                    for j in np.flatnonzero(row >= t.general)
                    if self.verify(embeddings[i], int(j)) >= t.verify
                ]
            results.append(sorted(found, key=lambda m: -m.score))
        return results
