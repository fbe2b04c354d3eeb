"""`sightline bench worker`: end-to-end images/s beside model-only images/s, decode cost,
and on a CPU the bf16 pass against fp32: speed, fidelity and share of the measured peak.

End to end = bytes in memory -> decode + EXIF (I/O threads) -> one forward pass per batch ->
rows committed in Postgres, with two batches in flight as `sightline worker` runs them.
Model only = the same forward pass on already-decoded crops, same batch size, same run.
Precision (CPU) = model-only passes in fp32 and in bf16 autocast, round by round; the
fidelity of bf16 against fp32 on the same weights and crops; FLOPs per image counted by
torch's FlopCounterMode (27.2 GFLOP for WRN-50-2 at 224 px, both branches); the peak is
the best square matrix-product rate measured in this run, in the same dtype.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from statistics import mean
from typing import Any

from sightline.argtypes import positive_int, positive_seconds


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="worker throughput: end to end vs model only")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="photos per batch (default: SIGHTLINE_BATCH_SIZE, else 16)",
    )
    p.add_argument(
        "--batches", type=positive_int, default=3, help="rounds of 2 batches per measurement"
    )
    p.add_argument("--photos", type=positive_int, default=4, help="distinct generated 12 MP JPEGs")
    p.add_argument(
        "--width", type=positive_int, default=4000, help="photo width, pixels (default 4000)"
    )
    p.add_argument(
        "--height", type=positive_int, default=3000, help="photo height, pixels (default 3000)"
    )
    p.add_argument(
        "--layouts",
        action="store_true",
        help="also time channels_last and torch.compile (model only, both precisions)",
    )
    p.add_argument(
        "--peak-seconds", type=positive_seconds, default=1.0, help="matmul peak measurement"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
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
    from sightline.cli import CliError
    from sightline.samples import synthetic_jpeg
    from sightline.stack import scratch_database
    from workers.settings import Settings

    settings = Settings.from_env()
    if args.width * args.height > settings.max_pixels:  # 10^8 x 10^8 was a 142 PiB MemoryError
        raise CliError(
            f"--width x --height is {args.width * args.height:,} pixels, past "
            f"SIGHTLINE_MAX_PIXELS ({settings.max_pixels:,}): the worker would refuse such photos"
        )
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
    out = {
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
    if rt.model.device.type == "cpu":
        out.update(_precision(args, rt.model, crops))
    return out


def _precision(args: argparse.Namespace, model: Any, crops: list) -> dict[str, Any]:
    """fp32 against bf16 on the CPU: model-only rates, fidelity, share of the matmul peak."""
    import torch

    from models.precision import cpu_autocast, cpu_bf16_support
    from models.throughput import compare_outputs, forward_flops, matmul_peak_gflops

    net, batch = model.network, model.meta.transform.to_batch(crops)
    gflop = forward_flops(net, model.meta.transform.crop) / 1e9
    default_bf16 = model.cpu_bf16

    def timed(bf16: bool) -> float:
        model.cpu_bf16 = bf16
        t0 = time.perf_counter()
        model.predict(crops)
        return time.perf_counter() - t0

    timed(False), timed(True)  # warm-up of both paths (oneDNN picks kernels per dtype)
    spent = {False: 0.0, True: 0.0}
    for _ in range(args.batches):  # interleaved, so a noisy neighbour slows both
        for bf16 in (False, True):
            spent[bf16] += timed(bf16)
    model.cpu_bf16 = default_bf16
    ips = {k: args.batches * len(crops) / v for k, v in spent.items()}
    peak32 = matmul_peak_gflops("cpu", torch.float32, seconds=args.peak_seconds)
    peak16 = matmul_peak_gflops("cpu", torch.bfloat16, seconds=args.peak_seconds)
    fid = compare_outputs(net, batch, cpu_autocast(True))
    share32, share16 = ips[False] * gflop / peak32, ips[True] * gflop / peak16
    out: dict[str, Any] = {
        "model_only_images_per_s_fp32": round(ips[False], 3),
        "model_only_images_per_s_bf16": round(ips[True], 3),
        "bf16_speedup": round(ips[True] / ips[False], 3),
        "bf16_embedding_cosine_min": round(fid.embedding_cosine_min, 6),
        "bf16_logits_rel_error_max": round(fid.logits_rel_error_max, 6),
        "bf16_top5_agreement": round(fid.top5_agreement, 4),
        "bf16_top1_agreement": round(fid.top1_agreement, 4),
        "gflop_per_image": round(gflop, 2),
        "matmul_peak_gflops_fp32": round(peak32, 1),
        "matmul_peak_gflops_bf16": round(peak16, 1),
        "peak_share_fp32": round(share32, 3),
        "peak_share_bf16": round(share16, 3),
        # The share of the precision the worker serves in (SIGHTLINE_CPU_BF16).
        "peak_share": round(share16 if default_bf16 else share32, 3),
        "cpu_bf16_default": default_bf16,
        "cpu_bf16_flag": cpu_bf16_support(),
        "torch_threads": torch.get_num_threads(),
    }
    if args.layouts:
        out["layouts_images_per_s"] = _layouts(args, net, batch)
    return out


def _layouts(args: argparse.Namespace, net: Any, batch: Any) -> dict[str, float]:
    """Model-only images/s of eager contiguous, channels_last and torch.compile, fp32 and
    bf16, each warmed up once (compile time not counted), then timed round by round."""
    import copy

    import torch

    from models.precision import cpu_autocast

    last = copy.deepcopy(net).to(memory_format=torch.channels_last)
    variants = {
        "eager": (net, batch),
        "channels_last": (last, batch.contiguous(memory_format=torch.channels_last)),
        "compile": (torch.compile(net), batch),
    }

    def once(name: str, bf16: bool) -> float:
        n, x = variants[name]
        t0 = time.perf_counter()
        with torch.inference_mode(), cpu_autocast(bf16):
            n(x)
        return time.perf_counter() - t0

    keys = [(name, bf16) for name in variants for bf16 in (False, True)]
    for key in keys:
        once(*key)  # warm-up: kernel choice, and compilation for torch.compile
    spent = dict.fromkeys(keys, 0.0)
    for _ in range(args.batches):
        for key in keys:
            spent[key] += once(*key)
    return {
        f"{name}_{'bf16' if bf16 else 'fp32'}": round(args.batches * len(batch) / t, 3)
        for (name, bf16), t in spent.items()
    }
