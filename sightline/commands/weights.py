"""`sightline weights import|show`: serving checkpoints from published weights, and what a
checkpoint holds (arch, classes, transform, each head's provenance, hash)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sightline.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="import published weights for serving; show a checkpoint")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)

    imp = wsub.add_parser("import", help="convert CSAIL Places365 or torchvision weights")
    imp.add_argument("file", type=Path, help="e.g. resnet50_places365.pth.tar")
    imp.add_argument(
        "--from",
        dest="source",
        required=True,
        choices=("csail-places365", "torchvision"),
        help="the file's layout: a CSAIL Places365 checkpoint or a torchvision state dict",
    )
    imp.add_argument("--arch", help="resnet50, wide_resnet50_2, tiny (default: from the shapes)")
    imp.add_argument("--out", required=True, type=Path, help="FILE.safetensors")
    imp.add_argument(
        "--embedding-dim",
        type=int,
        default=512,
        help="size of the (untrained) landmark embedding head (default: 512)",
    )
    imp.add_argument("--resize", type=int, help="override the source's resize (default 256)")
    imp.add_argument("--crop", type=int, help="override the source's centre crop (default 224)")
    imp.add_argument("--version", help="checkpoint version (default: SOURCE-ARCH-HASH8)")
    imp.add_argument("--json", action="store_true", help="print the result as one JSON object")
    imp.set_defaults(func=import_cmd)

    show = wsub.add_parser("show", help="arch, classes, transform, heads' provenance, hash")
    show.add_argument("file", type=Path, help="a serving checkpoint (.safetensors, .pt)")
    show.add_argument("--json", action="store_true", help="print the metadata as one JSON object")
    show.set_defaults(func=show_cmd)


def describe(meta: Any) -> dict[str, Any]:
    """A checkpoint's metadata as `weights show --json` prints it."""
    return {
        "arch": meta.arch,
        "version": meta.version,
        "model_version": meta.model_version,
        "sha256": meta.sha256,
        "classes": len(meta.categories),
        "categories": list(meta.categories),
        "excluded": list(meta.excluded),
        "embedding_dim": meta.embedding_dim,
        "transform": meta.transform.to_dict(),
        "heads": meta.heads(),
        "serves_landmarks": meta.serves_landmarks,
        "source": meta.source,
    }


def _text(d: dict[str, Any]) -> str:
    t = d["transform"]
    cats = d["categories"]
    src = d["source"]
    lines = [
        f"checkpoint     {d['model_version']} (sha256 {d['sha256']})",
        f"arch           {d['arch']}, embedding {d['embedding_dim']} wide",
        f"classes        {d['classes']} ({', '.join(cats[:3])}, ..., {cats[-1]})"
        + (f"; {len(d['excluded'])} excluded" if d["excluded"] else ""),
        f"transform      resize {t['resize']}, centre crop {t['crop']}, mean {t['mean']}, "
        f"std {t['std']}",
    ]
    for name, label in (("scene", "scene head"), ("embedding", "embedding head")):
        h = d["heads"][name]
        lines.append(f"{label:15}{'real' if h['trained'] else 'UNTRAINED'} ({h['source']})")
    lines.append(
        "landmarks      "
        + ("served" if d["serves_landmarks"] else "off: the embedding head is untrained")
    )
    if src:
        lines.append(
            f"source         {src.get('kind')} {src.get('file')} sha256 {src.get('sha256')}"
        )
    return "\n".join(lines)


def import_cmd(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from models.checkpoint import read_meta
    from models.transforms import InputTransform
    from models.weights_import import WeightsImportError, import_weights

    if args.out.suffix != ".safetensors":
        raise CliError("--out must end in .safetensors (the serving checkpoint format)")
    from models.checkpoint import embedding_dim_problem, version_problem

    problem = embedding_dim_problem(args.embedding_dim) or (
        version_problem(args.version) if args.version is not None else None
    )
    if problem:
        raise CliError(problem.replace("embedding_dim", "--embedding-dim"))
    transform = None
    if args.resize is not None or args.crop is not None:  # 0 is a value, refused below
        base = InputTransform()
        try:
            transform = replace(
                base,
                resize=base.resize if args.resize is None else args.resize,
                crop=base.crop if args.crop is None else args.crop,
            )
        except ValueError as exc:
            raise CliError(f"--resize/--crop: {exc}") from None
    try:
        result = import_weights(
            args.file,
            source=args.source,
            out=args.out,
            arch=args.arch,
            embedding_dim=args.embedding_dim,
            transform=transform,
            version=args.version,
        )
    except WeightsImportError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write {args.out}: {exc.strerror}") from None
    d = describe(read_meta(args.out))
    d.update(out=str(args.out), tensors=result.tensors, classifier=result.classifier)
    if args.json:
        print(json.dumps(d))
    else:
        print(f"wrote {args.out}: {result.tensors} tensors; classifier {result.classifier}")
        print(_text(d))
    return 0


def show_cmd(args: argparse.Namespace) -> int:
    from models.checkpoint import read_meta

    d = describe(read_meta(args.file))
    print(json.dumps(d) if args.json else _text(d))
    return 0
