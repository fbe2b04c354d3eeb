"""`sightline bench model-switch`: a model switch (tiny untrained networks A -> B) with the
albums sampled every 100 ms throughout; `album_drops` must be 0. See benches/_switch.py."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "model-switch", help="switch weights under a live library; album_drops must be 0"
    )
    p.add_argument(
        "--photos",
        type=int,
        default=20_000,
        help="synthetic photos tagged under model A, then re-embedded under B (default 20000)",
    )
    p.add_argument(
        "--landmarks",
        type=int,
        default=8,
        help="landmarks in each release (about 30%% of photos are noisy copies of them; default 8)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=256,
        help="photos per forward pass and write (default 256)",
    )
    p.add_argument(
        "--sample-ms",
        type=float,
        default=100.0,
        help="how often the sampler reads scene_albums and landmark_albums, in ms (default 100)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sightline.benches._switch import run_switch
    from sightline.cli import CliError
    from sightline.stack import scratch_database

    if args.photos < 1 or args.batch < 1 or args.sample_ms <= 0 or args.landmarks < 1:
        raise CliError("--photos, --landmarks, --batch and --sample-ms must be positive")
    with scratch_database() as url:
        report = run_switch(
            url,
            photos=args.photos,
            landmarks=args.landmarks,
            batch=args.batch,
            sample_every_s=args.sample_ms / 1000.0,
        )
    out = {**report.to_json(), "sample_ms": args.sample_ms, "network": "tiny, untrained"}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:20} {v}")
    return 0 if report.album_drops == 0 else 1
