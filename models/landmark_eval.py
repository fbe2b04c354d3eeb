"""Landmark metrics (the article's two accuracies, frequent vs rare, GAP) and threshold
calibration for a target false-positive rate on not-a-landmark photos."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from models.landmarks import LandmarkIndex, Thresholds, in_square, top1

NONE = -1  # truth: not a landmark; prediction: no match
UNKNOWN = -2  # truth: a landmark the release does not hold (never predicted)
FREQUENT_MIN = 100  # the article: "frequent" means over 100 training photos


def gap(pred: np.ndarray, conf: np.ndarray, truth: np.ndarray) -> float | None:
    """Global Average Precision (Google Landmarks recognition): one prediction per query,
    ranked by confidence; GAP = sum(P(i) rel(i)) / M, M = queries that show a landmark.

    A query with no prediction is left out of the ranking; a prediction on a
    not-a-landmark query counts as wrong. None when no query shows a landmark.
    """
    truth = np.asarray(truth)
    m = int((truth != NONE).sum())
    if m == 0:
        return None
    made = np.flatnonzero(np.asarray(pred) >= 0)
    order = made[np.argsort(-np.asarray(conf)[made], kind="stable")]
    rel = (np.asarray(pred)[order] == truth[order]).astype(np.float64)
    precision = np.cumsum(rel) / np.arange(1, len(rel) + 1)
    return float((precision * rel).sum() / m)


def _mean(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if len(mask) else None


def metrics(
    pred: np.ndarray,
    conf: np.ndarray,
    truth: np.ndarray,
    train_counts: np.ndarray | None = None,
) -> dict[str, Any]:
    """The article's metrics; ``train_counts`` per landmark index splits frequent vs rare."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    pos = truth != NONE
    correct = pred == truth
    out: dict[str, Any] = {
        "photos": len(truth),
        "landmark_photos": int(pos.sum()),
        "non_landmark_photos": int((~pos).sum()),
        "landmark_accuracy": _mean(correct[pos]),
        "non_landmark_accuracy": _mean(pred[~pos] == NONE),
        "false_positive_rate": _mean(pred[~pos] != NONE),
        "frequent_accuracy": None,
        "rare_accuracy": None,
        "frequent_photos": None,
        "rare_photos": None,
        "gap": gap(pred, conf, truth),
    }
    if train_counts is not None:
        counts = np.asarray(train_counts)
        known = pos & (truth >= 0)
        n = np.where(known, counts[np.where(known, truth, 0)], -1)
        freq = known & (n > FREQUENT_MIN)
        rare = known & (n >= 0) & (n <= FREQUENT_MIN)
        out.update(
            frequent_accuracy=_mean(correct[freq]),
            rare_accuracy=_mean(correct[rare]),
            frequent_photos=int(freq.sum()),
            rare_photos=int(rare.sum()),
        )
    return out


def evaluate(
    index: LandmarkIndex,
    embeddings: np.ndarray,
    truth: np.ndarray,
    gps: np.ndarray | None = None,
    train_counts: np.ndarray | None = None,
) -> dict[str, Any]:
    pred, conf = top1(index, embeddings, gps)
    return metrics(pred, conf, truth, train_counts)


@dataclass(frozen=True)
class Calibration:
    thresholds: Thresholds
    fpr_general: float | None  # in-sample, photos treated as without GPS
    fpr_geo: float | None  # in-sample, photos with GPS
    geo_calibrated: bool


def _rate_threshold(neg_best: np.ndarray, rate: float) -> float:
    """The lowest threshold at which at most ``rate`` of the negatives pass (score >= t)."""
    n = len(neg_best)
    allowed = int(np.floor(rate * n + 1e-9))
    ranked = np.sort(neg_best)[::-1]
    if allowed >= n or not np.isfinite(ranked[allowed]):
        return -1.0  # fewer negatives than allowed ever reach a candidate: any threshold does
    return float(np.nextafter(np.float32(ranked[allowed]), np.float32(np.inf)))


def _accuracy(passed: np.ndarray, scores: np.ndarray, truth: np.ndarray) -> float:
    s = np.where(passed, scores, -np.inf)
    best = np.where(np.isfinite(s.max(axis=1)), s.argmax(axis=1), NONE)
    return float((best == truth).mean()) if len(truth) else 0.0


def _grid(values: np.ndarray, size: int) -> np.ndarray:
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return np.array([1.0])
    return np.unique(np.quantile(v, np.linspace(0.0, 1.0, size)).astype(np.float32))


def calibrate(
    index: LandmarkIndex,
    embeddings: np.ndarray,
    truth: np.ndarray,
    gps: np.ndarray | None = None,
    *,
    target_fpr: float = 0.01,
    grid: int = 64,
) -> Calibration:
    """Choose geo, general and verify thresholds so that at most ``target_fpr`` of the
    not-a-landmark photos match, maximising landmark accuracy under that constraint.

    General and verify are chosen on every photo as if it had no GPS (any upload may
    lack it); geo on the photos that have GPS. Without GPS rows geo stays as it was.
    """
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError("target FPR must be in [0, 1)")
    e = np.asarray(embeddings, dtype=np.float32)
    truth = np.asarray(truth)
    neg = truth == NONE
    if not neg.any():
        raise ValueError("calibration needs not-a-landmark photos (label -1)")
    scores = index.landmark_scores(e)
    n = len(scores)
    verify = index.verify_matrix(e)
    pos_truth = truth[~neg]
    best = None
    for g in _grid(scores.max(axis=1), grid):
        cand = scores >= g
        neg_best = np.where(cand[neg], verify[neg], -np.inf).max(axis=1)
        v = _rate_threshold(neg_best, target_fpr)
        passed = cand & (verify >= v)
        acc = _accuracy(passed[~neg], scores[~neg], pos_truth)
        fpr = float(passed[neg].any(axis=1).mean())
        key = (acc, g)  # ties: the higher, more conservative threshold
        if best is None or key > best[0]:
            best = (key, float(g), v, fpr)
    assert best is not None
    _, general, verify_t, fpr_general = best
    th = replace(index.thresholds, general=general, verify=verify_t)
    fpr_geo = None
    has = np.zeros(n, bool) if gps is None else np.isfinite(np.asarray(gps)).all(axis=1)
    geo_calibrated = bool((has & neg).any())
    if geo_calibrated:
        g_rows = np.asarray(gps)[has]
        inside = in_square(
            g_rows[:, :1], g_rows[:, 1:], index.lats[None], index.lons[None], th.square_km
        )
        geo_scores = np.where(inside, scores[has], -np.inf)
        geo_neg = neg[has]
        best_geo = None
        for g in _grid(geo_scores.max(axis=1), grid):
            passed = geo_scores >= g
            fpr = float(passed[geo_neg].any(axis=1).mean())
            if fpr > target_fpr:
                continue
            acc = _accuracy(passed[~geo_neg], geo_scores[~geo_neg], truth[has][~geo_neg])
            key = (acc, g)
            if best_geo is None or key > best_geo[0]:
                best_geo = (key, float(g), fpr)
        if best_geo is None:  # no grid value is strict enough: pass nothing seen
            top = float(geo_scores[geo_neg].max())
            best_geo = (None, float(np.nextafter(np.float32(top), np.float32(np.inf))), 0.0)
        th = replace(th, geo=best_geo[1])
        fpr_geo = best_geo[2]
    return Calibration(th, fpr_general, fpr_geo, geo_calibrated)
