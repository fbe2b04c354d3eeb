"""`python3 -m models.bench_gpu`: the GPU check that fits one short run (issue 17, item 5).

Imports only torch, torchvision, numpy, Pillow and the ``models`` package, so it runs on a
machine with nothing else installed (no celery, boto3, psycopg2 or exifread). Prints:

- model-only images/s of the two-branch network at each batch size, bf16 autocast with
  channels_last, eager and with ``torch.compile``;
- each rate x FLOPs per image (FlopCounterMode; 27.2 GFLOP for WRN-50-2 at 224 px) divided
  by the bf16 matrix-product rate measured in the same run;
- 12 MP JPEG decodes/s to the network's input crop with DCT drafts on every CPU core, and
  how many decode processes one GPU worker needs to keep its GPU busy;
- the same decode to the crop on the device itself (``torchvision.io.decode_jpeg`` on a
  list of photos, nvJPEG on CUDA; resize and crop there too), batch by batch.

Weights are random (seeded): speed does not depend on them. On a machine without CUDA it
runs on the CPU (``--device cpu``), e.g. with ``--arch tiny`` to prove it works.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image

from models.network import ARCHS, sightline_net
from models.throughput import forward_flops, images_per_s, matmul_peak_gflops
from models.transforms import InputTransform, default_transform


def synthetic_jpeg(width: int, height: int, seed: int, quality: int = 90) -> bytes:
    """A generated photo (smooth colour fields and noise), as sightline.samples makes them."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base, freq = rng.uniform(40, 215, size=3), rng.uniform(0.002, 0.02, size=3)
    img = np.stack(
        [base[c] + 40 * np.sin(x * freq[c] + y * freq[(c + 1) % 3]) for c in range(3)], axis=-1
    )
    img += rng.normal(0, 12, size=img.shape)
    buf = io.BytesIO()
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def decode_crop(data: bytes, resize: int, crop: int) -> np.ndarray:
    """JPEG bytes to the uint8 crop, as workers/photos.decode does it (DCT draft, bilinear
    resize of the shorter side, centre crop); EXIF orientation is left out here."""
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (resize, resize))  # libjpeg scales by 1/2, 1/4 or 1/8 while decoding
    img = img.convert("RGB")
    scale = resize / min(img.size)
    size = (max(crop, round(img.size[0] * scale)), max(crop, round(img.size[1] * scale)))
    img = img.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - crop) // 2, (size[1] - crop) // 2
    return np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


def _decode_many(args: tuple[list[bytes], int, int, int]) -> int:
    photos, resize, crop, n = args
    for i in range(n):
        decode_crop(photos[i % len(photos)], resize, crop)
    return n


def decode_rate(
    photos: list[bytes], t: InputTransform, *, processes: int, per_process: int
) -> tuple[float, float]:
    """(decodes/s on ``processes`` processes, decodes/s of one process)."""
    _decode_many((photos, t.resize, t.crop, 1))  # warm-up
    t0 = time.perf_counter()
    _decode_many((photos, t.resize, t.crop, per_process))
    one = per_process / (time.perf_counter() - t0)
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_decode_many, [(photos, t.resize, t.crop, 1)] * processes))  # start-up
        t0 = time.perf_counter()
        done = sum(pool.map(_decode_many, [(photos, t.resize, t.crop, per_process)] * processes))
        return done / (time.perf_counter() - t0), one


def device_decode_rate(
    photos: list[bytes], t: InputTransform, device: torch.device, *, batch: int, rounds: int
) -> float:
    """Decodes/s of whole JPEGs to the ``t.crop`` square on ``device``: one
    ``torchvision.io.decode_jpeg`` call per batch of ``batch`` photos (nvJPEG on CUDA, which
    has no DCT draft: every pixel is decoded), then an antialiased bilinear resize of the
    shorter side to ``t.resize`` and a centre crop, as ``decode_crop`` does on the CPU."""
    from torchvision.io import decode_jpeg
    from torchvision.transforms.v2 import functional as TF

    data = [torch.frombuffer(bytearray(p), dtype=torch.uint8) for p in photos]
    items = [data[i % len(data)] for i in range(batch)]

    def once() -> None:
        imgs = decode_jpeg(items, device=device)
        for img in imgs:
            img = TF.resize(img, [t.resize], antialias=True)
            TF.center_crop(img, [t.crop, t.crop])

    once()  # first call: nvJPEG handles and buffers
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(rounds):
        once()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return rounds * batch / (time.perf_counter() - t0)


def model_rates(
    net: torch.nn.Module,
    crop: int,
    batch_sizes: list[int],
    device: torch.device,
    *,
    compile_too: bool,
    rounds: int,
    deadline: float = float("inf"),
) -> list[dict[str, Any]]:
    """Model-only images/s per batch size, bf16 autocast, channels_last, eager and compiled.

    The batch dimension is marked dynamic, so torch.compile compiles once for every size.
    Past ``deadline`` (time.perf_counter()) the remaining measurements are skipped."""
    net = net.to(device).eval().to(memory_format=torch.channels_last)
    variants: dict[str, Any] = {"eager": net}
    if compile_too:
        variants["compile"] = torch.compile(net)
    rows = []
    for bs in batch_sizes:
        x = torch.randn(bs, 3, crop, crop, device=device).contiguous(
            memory_format=torch.channels_last
        )
        torch._dynamo.mark_dynamic(x, 0)
        for name, n in variants.items():
            if time.perf_counter() > deadline:
                rows.append({"batch": bs, "mode": name, "skipped": "time budget spent"})
                continue

            def once(n: Any = n, x: Any = x) -> None:
                with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
                    n(x)

            t0 = time.perf_counter()
            once()  # first call: kernel choice, and compilation for torch.compile
            first_s = time.perf_counter() - t0
            rate = images_per_s(once, bs, rounds=rounds, device=device)
            rows.append({"batch": bs, "mode": name, "images_per_s": rate, "first_call_s": first_s})
            print(f"  batch {bs:4} {name:8} {rate:10.1f} images/s", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m models.bench_gpu", description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="wide_resnet50_2", choices=ARCHS)
    p.add_argument("--batch-sizes", default="32,64,128,256")
    p.add_argument("--rounds", type=int, default=5, help="timed calls per batch size and mode")
    p.add_argument("--no-compile", action="store_true", help="eager only")
    p.add_argument("--photos", type=int, default=4, help="distinct generated JPEGs")
    p.add_argument("--width", type=int, default=4000)
    p.add_argument("--height", type=int, default=3000)
    p.add_argument("--decodes", type=int, default=8, help="decodes per process")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    p.add_argument("--device-decode-batch", type=int, default=32,
                   help="photos per decode_jpeg call on the device (0: skip)")  # fmt: skip
    p.add_argument("--peak-seconds", type=float, default=2.0)
    p.add_argument("--budget-s", type=float, default=240, help="skip model runs started after this")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    t_start = time.perf_counter()
    torch.manual_seed(0)
    t = default_transform(args.arch)
    net = sightline_net(arch=args.arch).eval().to(device)
    gflop = forward_flops(net, t.crop, device) / 1e9
    peak = matmul_peak_gflops(device, torch.bfloat16, n=8192 if device.type == "cuda" else 1024,
                              seconds=args.peak_seconds)  # fmt: skip
    print(f"bf16 matmul peak {peak:.0f} GFLOP/s on {device}", file=sys.stderr, flush=True)
    rows = model_rates(
        net,
        t.crop,
        sizes,
        device,
        compile_too=not args.no_compile,
        rounds=args.rounds,
        deadline=t_start + args.budget_s,
    )
    rows_done = [r for r in rows if "images_per_s" in r]
    for r in rows_done:
        r["peak_share"] = r["images_per_s"] * gflop / peak
    photos = [synthetic_jpeg(args.width, args.height, seed=i) for i in range(args.photos)]
    all_cores, one = decode_rate(photos, t, processes=args.processes, per_process=args.decodes)
    best = max(r["images_per_s"] for r in rows_done)
    on_device = (
        device_decode_rate(photos, t, device, batch=args.device_decode_batch, rounds=args.rounds)
        if args.device_decode_batch > 0
        else None
    )
    result = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "arch": args.arch,
        "crop": t.crop,
        "gflop_per_image": round(gflop, 2),
        "bf16_matmul_peak_gflops": round(peak, 1),
        "model_only": [
            {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows
        ],
        "best_model_only_images_per_s": round(best, 1),
        "decode": {
            "photo_size": f"{args.width}x{args.height}",
            "processes": args.processes,
            "decodes_per_s_all_processes": round(all_cores, 1),
            "decodes_per_s_one_process": round(one, 2),
            "processes_to_feed_best_rate": math.ceil(best / one),
            "decode_keeps_up": all_cores >= best,
            "device_decodes_per_s": None if on_device is None else round(on_device, 1),
            "device_decode_batch": args.device_decode_batch,
            "device_decode_keeps_up": None if on_device is None else on_device >= best,
        },
        "elapsed_s": round(time.perf_counter() - t_start, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:30} {v}")
    return 0


if __name__ == "__main__":
    # Run the imported module's main: worker processes find its functions by that name.
    from models import bench_gpu

    sys.exit(bench_gpu.main())
