"""Owners' corrections read back for calibration: what was hidden or added, on which photo,
under which model version and release."""

from __future__ import annotations

import json
from typing import Any

# One row per correction. release: the active release when it was built for the photo's
# model (the release whose album the owner corrected); score: for a landmark, that
# release's score for the label; for a scene, the score of the photo's photo_albums row for
# the album (what filed it there). NULL when there is none: an added label the photo was
# never filed under or matched to, or a scene album a later scene map no longer files it in.
_EXPORT = """
SELECT c.owner, c.photo_id, p.bucket, p.key, c.kind, c.label, c.verdict, c.corrected_at,
       p.model_version, r.version AS release,
       CASE c.kind WHEN 'landmark' THEN m.score
            ELSE (SELECT max(a.score) FROM photo_albums a
                  WHERE a.photo_id = c.photo_id AND a.album = c.label) END AS score,
       p.gps_lat, p.gps_lon, p.embedding::text AS embedding
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
    version, the release it was made against, the score that put the photo in the album
    (see _EXPORT; None when none did), GPS, and the embedding as a list of D floats (None
    when the photo has none); ordered by owner and photo. corrected_at is ISO 8601 text."""
    cur.execute(_EXPORT, {"kind": kind})
    out = []
    for row in cur.fetchall():
        d = dict(zip(FIELDS, row))
        d["corrected_at"] = d["corrected_at"].isoformat()
        # pgvector's text form '[0.1,...]' is a JSON array: the float32 values exactly.
        d["embedding"] = None if d["embedding"] is None else json.loads(d["embedding"])
        out.append(d)
    return out


def embedding_text(embedding: list[float] | None) -> str:
    """An exported embedding as one CSV cell: a compact JSON array ('' for None), the form
    `sightline calibrate --corrections` reads back."""
    return "" if embedding is None else json.dumps(embedding, separators=(",", ":"))
