"""`sightline bench worker`: end-to-end images/s beside model-only images/s, and decode cost.

End to end = bytes in memory -> decode + EXIF (I/O threads) -> one forward pass per batch ->
rows committed in Postgres, with two batches in flight as `sightline worker` runs them.
Model only = the same forward pass on already-decoded crops, same batch size, same run.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from statistics import mean
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="worker throughput: end to end vs model only")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--batches", type=int, default=3, help="rounds of 2 batches per measurement")
    p.add_argument("--photos", type=int, default=4, help="distinct generated 12 MP JPEGs")
    p.add_argument("--width", type=int, default=4000)
    p.add_argument("--height", type=int, default=3000)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _decode_full(data: bytes, resize: int, crop: int) -> None:
    """The naive path the worker avoids: a full-resolution decode, then resize and crop."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    scale = resize / min(img.size)
    img = img.resize((round(img.size[0] * scale), round(img.size[1] * scale)))
    left, top = (img.size[0] - crop) // 2, (img.size[1] - crop) // 2
    img.crop((left, top, left + crop, top + crop)).tobytes()


def _ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return mean(times)


def run(args: argparse.Namespace) -> int:
    from sightline.benches._scratch import scratch_database
    from sightline.samples import synthetic_jpeg
    from sightline.settings import Settings

    settings = Settings.from_env()
    if not settings.weights:
        settings = Settings(**{**settings.__dict__, "allow_untrained": True})
    photos = [
        synthetic_jpeg(
            width=args.width,
            height=args.height,
            seed=i,
            quality=90,
            gps=(48.85 + i / 100, 2.29),
            taken_at="2024:05:01 10:15:00",
        )
        for i in range(args.photos)
    ]
    with scratch_database() as url:
        result = _measure(args, settings, photos, url)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:26} {v}")
    return 0


def _measure(args: argparse.Namespace, settings: Any, photos: list[bytes], url: str) -> dict:
    from workers.db import connect
    from workers.photos import decode
    from workers.runtime import WorkerRuntime

    class InMemoryRuntime(WorkerRuntime):
        def fetch_bytes(self, task: Any) -> bytes:
            return photos[int(task["key"].split("/")[-1].split(".")[0]) % len(photos)]

    batch = args.batch_size or settings.batch_size
    rt = InMemoryRuntime(settings, url)
    rt.model.load()
    t = rt.model.transform
    decode_full_ms = _ms(lambda: [_decode_full(p, t.resize, t.crop) for p in photos], 1)
    decode_draft_ms = _ms(lambda: [decode(p, resize=t.resize, crop=t.crop) for p in photos], 3)
    decode_full_ms /= len(photos)
    decode_draft_ms /= len(photos)
    crops = [
        decode(photos[i % len(photos)], resize=t.resize, crop=t.crop).crop for i in range(batch)
    ]
    rt.model.predict(crops)  # warm-up (allocations, cudnn autotune)

    def tasks(b: int) -> list[dict]:
        return [
            {
                "bucket": "bench",
                "key": f"users/bench/{b * batch + i}.jpg",
                "version_id": None,
                "etag": None,
                "size": None,
                "sequencer": None,
                "event_time": None,
                "owner": "bench",
            }
            for i in range(batch)
        ]

    rt.tag_batch(tasks(10_000))  # warm-up of the whole path
    rt.times.ms.clear()
    # Interleave the two measurements round by round, so a noisy neighbour slows both.
    model_s = e2e_s = 0.0
    outcomes: list = []
    with ThreadPoolExecutor(2) as pool:
        for r in range(args.batches):
            t0 = time.perf_counter()
            rt.model.predict(crops)
            rt.model.predict(crops)
            model_s += time.perf_counter() - t0
            # Two batches in flight, as the worker's thread pool runs them.
            t0 = time.perf_counter()
            for res in pool.map(rt.tag_batch, [tasks(2 * r), tasks(2 * r + 1)]):
                outcomes += res
            e2e_s += time.perf_counter() - t0
    n = 2 * args.batches * batch
    model_ips = n / model_s
    e2e_ips = sum(o == "tagged" for o in outcomes) / e2e_s
    conn = connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM photos WHERE status = 'tagged'")
        rows = cur.fetchone()[0]
    conn.close()
    return {
        "end_to_end_images_per_s": round(e2e_ips, 3),
        "model_only_images_per_s": round(model_ips, 3),
        "ratio": round(e2e_ips / model_ips, 3),
        "decode_full_ms": round(decode_full_ms, 1),
        "decode_draft_ms": round(decode_draft_ms, 1),
        "decode_speedup": round(decode_full_ms / decode_draft_ms, 2),
        "batch_size": batch,
        "batches": args.batches,
        "rows_committed": rows,
        "stage_ms_per_photo": {k: round(v / n, 1) for k, v in rt.times.ms.items()},
        "device": str(rt.model.device),
        "arch": rt.model.meta.arch if rt.model.meta else None,
        "trained": bool(rt.model.meta and rt.model.meta.trained),
        "heads": rt.model.meta.heads() if rt.model.meta else None,
        "photo_bytes_mean": int(mean(len(p) for p in photos)),
        "photo_size": f"{args.width}x{args.height}",
    }
