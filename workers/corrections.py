"""Owners' corrections read back for calibration: what was hidden or added, on which photo,
under which model version and release."""

from __future__ import annotations

from typing import Any

# One row per correction. release: the active release when it was built for the photo's
# model (the release whose album the owner corrected); score: that release's score for the
# label (NULL when it never matched, e.g. an added landmark).
_EXPORT = """
SELECT c.owner, c.photo_id, p.bucket, p.key, c.kind, c.label, c.verdict, c.corrected_at,
       p.model_version, r.version AS release, m.score, p.gps_lat, p.gps_lon,
       p.embedding::text AS embedding
FROM photo_corrections c
JOIN photos p ON p.id = c.photo_id AND p.owner = c.owner
LEFT JOIN releases r ON r.status = 'active' AND r.model_version = p.model_version
LEFT JOIN landmark_matches m ON c.kind = 'landmark' AND m.release = r.version
     AND m.photo_id = c.photo_id AND m.landmark_id = c.label
WHERE (%(kind)s::text IS NULL OR c.kind = %(kind)s)
ORDER BY c.owner, c.photo_id, c.kind, c.label
"""

FIELDS = (
    "owner",
    "photo_id",
    "bucket",
    "key",
    "kind",
    "label",
    "verdict",
    "corrected_at",
    "model_version",
    "release",
    "score",
    "gps_lat",
    "gps_lon",
    "embedding",
)


def export_corrections(cur: Any, kind: str | None = None) -> list[dict[str, Any]]:
    """Every correction (or those of one kind, 'scene' | 'landmark') with the photo's model
    version, the release it was made against, its score there, GPS and embedding as
    pgvector text ('[0.1,...]', None when the photo has none); ordered by owner and photo."""
    cur.execute(_EXPORT, {"kind": kind})
    out = []
    for row in cur.fetchall():
        d = dict(zip(FIELDS, row))
        d["corrected_at"] = d["corrected_at"].isoformat()
        out.append(d)
    return out
