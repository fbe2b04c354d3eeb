"""Embeddings in and out of Postgres by binary COPY: one fixed-width row layout read and
written as a numpy structured array, so 10^5 vectors move without per-row Python.

Row layout (PGCOPY binary): id bigint, lat float8, lon float8 (NaN for none), vector.
pgvector's binary form of a vector is int16 dim, int16 unused, then dim big-endian float32;
of a halfvec the same with big-endian float16 (photos store halfvec; releases store vector).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def row_dtype(dim: int, half: bool = False) -> np.dtype:
    return np.dtype(
        [
            ("fields", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i8"),
            ("lat_len", ">i4"),
            ("lat", ">f8"),
            ("lon_len", ">i4"),
            ("lon", ">f8"),
            ("vec_len", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("vec", ">f2" if half else ">f4", (dim,)),
        ]
    )


@dataclass(frozen=True)
class EmbeddingRows:
    ids: np.ndarray  # int64
    gps: np.ndarray  # (N, 2) float64, NaN where none
    embeddings: np.ndarray  # (N, dim) float32

    def __len__(self) -> int:
        return len(self.ids)


def decode(data: bytes, dim: int, *, half: bool = False) -> EmbeddingRows:
    """Parse a binary COPY of (id, lat, lon, vector(dim) or halfvec(dim)) rows.

    Embeddings come back as float32 (N, dim) either way. Raises ValueError on another layout.
    """
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a binary COPY stream")
    (ext,) = struct.unpack(">i", data[15:19])
    body = memoryview(data)[19 + ext : len(data) - 2]  # the trailer is int16 -1
    dt = row_dtype(dim, half)
    width = 2 if half else 4
    if len(body) % dt.itemsize:
        raise ValueError(f"COPY rows are not vectors of dim {dim}")
    rows = np.frombuffer(body, dtype=dt)
    if len(rows) and ((rows["fields"] != 4).any() or (rows["vec_len"] != 4 + width * dim).any()):
        raise ValueError(f"COPY rows are not (id, lat, lon, vector({dim}))")
    return EmbeddingRows(
        ids=rows["id"].astype(np.int64),
        gps=np.stack([rows["lat"], rows["lon"]], axis=1).astype(np.float64),
        embeddings=rows["vec"].astype(np.float32),
    )


def encode(ids: np.ndarray, gps: np.ndarray, embeddings: np.ndarray) -> bytes:
    """The binary COPY stream that loads (id, lat, lon, vector) rows."""
    n, dim = embeddings.shape
    rows = np.zeros(n, dtype=row_dtype(dim))
    rows["fields"] = 4
    rows["id_len"], rows["lat_len"], rows["lon_len"] = 8, 8, 8
    rows["vec_len"] = 4 + 4 * dim
    rows["id"] = ids
    rows["lat"], rows["lon"] = gps[:, 0], gps[:, 1]
    rows["dim"] = dim
    rows["vec"] = embeddings
    return _SIGNATURE + struct.pack(">ii", 0, 0) + rows.tobytes() + struct.pack(">h", -1)


def copy_out(cur: Any, select_sql: str, dim: int, *, half: bool = False) -> EmbeddingRows:
    """Run ``COPY (select_sql) TO STDOUT`` in binary; select_sql yields id, lat, lon and a
    vector (a halfvec with ``half``)."""
    buf = io.BytesIO()
    cur.copy_expert(f"COPY ({select_sql}) TO STDOUT (FORMAT binary)", buf)
    return decode(buf.getvalue(), dim, half=half)


def copy_in(cur: Any, table: str, ids, gps, embeddings) -> None:
    """Load rows into ``table (id, lat, lon, embedding)`` by binary COPY."""
    data = encode(np.asarray(ids), np.asarray(gps), np.asarray(embeddings, dtype=np.float32))
    cur.copy_expert(f"COPY {table} FROM STDIN (FORMAT binary)", io.BytesIO(data))
