"""`sightline explain PHOTO --out cam.png`: where the network looked.

Writes two PNGs the size of the photo: the class activation map of the top scene class
(``--out``) and the landmark branch's map (``--landmark-out``, default ``<out>.landmark.png``):
the CAM of the embedding's similarity to the best-matching centroid of ``--centroids``, or,
without centroids, to the photo's own embedding (which regions make the embedding what it is).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="class activation maps of a photo, as PNGs")
    p.add_argument("photo", type=Path, help="a local photo file")
    p.add_argument("--out", required=True, type=Path, help="scene CAM PNG")
    p.add_argument("--landmark-out", type=Path, help="landmark map PNG (default <out>.landmark)")
    p.add_argument("--centroids", type=Path, help="(K, D) float .npy of landmark centroids")
    p.add_argument("--centroid-names", type=Path, help="text file, one name per centroid row")
    p.add_argument("--weights", help="checkpoint (default: SIGHTLINE_WEIGHTS)")
    p.add_argument("--json", action="store_true", help="print what was drawn as JSON")
    p.set_defaults(func=explain_photo)


# A photo is drawn whole, its shorter side at the network's crop size; a longer side past
# this many shorter sides is centre-cropped first (a 3 x 50,000 strip became a 3.7 M pixel
# wide input: 11.7 GB), and what is drawn is scaled to DISPLAY_MAX pixels at most.
MAX_ASPECT = 8
DISPLAY_MAX = 2048


def _load_photo(path: Path, s: Any):
    """The photo as the worker decodes it (``workers.photos.decode_whole``: bit depth,
    orientation, the pixel cap; read with the worker's byte cap, never a FIFO), cut to
    MAX_ASPECT:1 and scaled to DISPLAY_MAX at most; (image, its size as decoded, what was
    cut or None)."""
    from sightline.cli import CliError
    from sightline.commands.photos import read_photo_file
    from workers.photos import PhotoError, decode_whole

    try:
        data = read_photo_file(str(path), s.max_object_bytes)
        photo = decode_whole(data, max_pixels=s.max_pixels)
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}") from None  # as `inspect` says
    except PhotoError as exc:
        raise CliError(f"{path}: {exc}") from None
    w, h = photo.size
    cut = None
    if max(w, h) > MAX_ASPECT * min(w, h):
        cw, ch = min(w, MAX_ASPECT * h), min(h, MAX_ASPECT * w)
        left, top = (w - cw) // 2, (h - ch) // 2
        photo = photo.crop((left, top, left + cw, top + ch))
        cut = f"the centre {cw}x{ch} of {w}x{h} (at most {MAX_ASPECT}:1)"
    photo.thumbnail((DISPLAY_MAX, DISPLAY_MAX))
    return photo, (w, h), cut


def _centroids(args: argparse.Namespace, dim: int):
    import numpy as np

    from sightline.cli import CliError
    from sightline.landmark_inputs import load_array

    if args.centroids is None:
        return None, None
    c = load_array(str(args.centroids), "centroids", 2)
    if c.shape[1] != dim or len(c) == 0:
        raise CliError(f"{args.centroids}: expected a (K, {dim}) array, got {c.shape}")
    names = [f"centroid {i}" for i in range(len(c))]
    if args.centroid_names:
        given = [ln.strip() for ln in args.centroid_names.read_text().splitlines() if ln.strip()]
        if len(given) != len(c):
            raise CliError(f"{args.centroid_names}: {len(given)} names for {len(c)} centroids")
        names = given
    c = c.astype(np.float32)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12), names


def _outputs(args: argparse.Namespace) -> tuple[Path, Path]:
    """The two PNGs' paths; CliError for a path that is a folder, the photo itself (`--out
    p.jpg` wrote a PNG over the user's photo) or the other map's."""
    from sightline.cli import CliError

    out = args.out
    if not out.name or out.is_dir():
        raise CliError(f"--out {out} is a folder; name the PNG to write")
    lm_out = args.landmark_out or out.with_name(out.stem + ".landmark.png")
    if not lm_out.name or lm_out.is_dir():
        raise CliError(f"--landmark-out {lm_out} is a folder; name the PNG to write")
    if _same(out, lm_out):
        raise CliError(f"--out and --landmark-out are one file ({out}); name two")
    for flag, path in (("--out", out), ("--landmark-out", lm_out)):
        if _same(path, args.photo):
            raise CliError(f"{flag} {path} is the photo itself; name another file")
        # a checkpoint, centroids or names file given as the output was written over too:
        # only a PNG (an earlier map) is replaced
        if path.is_file() and not _is_png(path):
            raise CliError(f"{flag} {path} exists and is not a PNG; name another file")
    return out, lm_out


def _is_png(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def explain_photo(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from models.cam import embedding_cam, normalise_map, scene_cam
    from models.scenes import SceneMap
    from sightline.camview import overlay
    from sightline.cli import CliError
    from sightline.loading import load_network
    from workers.settings import Settings

    out, lm_out = _outputs(args)
    s = Settings.from_env()
    net, meta = load_network(s, args.weights)
    sm = SceneMap.for_checkpoint(meta, s.scene_map, sift=s.sift)
    centroids, names = _centroids(args, meta.embedding_dim)
    photo, full_size, cut = _load_photo(args.photo, s)
    t = meta.transform
    # The whole photo, shorter side at the crop size: the map covers every pixel.
    scale = t.crop / min(photo.size)
    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    arr = np.asarray(photo.resize(size), dtype=np.float32) / 255.0
    x = torch.from_numpy(arr).permute(2, 0, 1)[None]
    x = (x - torch.tensor(t.mean).view(1, 3, 1, 1)) / torch.tensor(t.std).view(1, 3, 1, 1)
    net.eval()
    with torch.no_grad():
        shared = net.trunk(x)
        pooled = torch.flatten(F.adaptive_avg_pool2d(net.scene_features(shared), 1), 1)
        keep = torch.from_numpy(sm.keep())
        probs = torch.softmax(net.scene_fc(pooled).masked_fill(~keep, float("-inf")), dim=1)
        emb = net.embed(shared)
    top = sm.top_classes(probs.numpy(), k=5)[0]
    albums = sm.album_scores(probs.numpy(), k=3)[0]
    best = int(probs.argmax())
    hw = (photo.height, photo.width)
    scene_map = normalise_map(scene_cam(net, shared, torch.tensor([best]))[0], hw).numpy()
    if centroids is not None:
        sims = torch.from_numpy(centroids) @ emb[0]
        k = int(sims.argmax())
        direction = torch.from_numpy(centroids[k])[None]
        landmark_what = f"similarity to {names[k]} ({float(sims[k]):.2f})"
    else:
        direction = emb
        landmark_what = "the photo's own embedding (no --centroids given)"
    lm_map = normalise_map(embedding_cam(net, shared, direction)[0], hw).numpy()
    warn = None if meta.scene_head.trained else "UNTRAINED network: noise, not a prediction"
    lm_warn = None if meta.embedding_head.trained else "UNTRAINED embedding head: noise"
    scene_lines = [f"scene CAM: {top[0][0]} {top[0][1]:.3f}"]
    scene_lines += [f"  {name} {p:.3f}" for name, p in top[1:]]
    if albums:
        scene_lines.append("albums: " + ", ".join(f"{a} {p:.3f}" for a, p in albums))
    lm_lines = ["landmark map: " + landmark_what]
    try:
        overlay(photo, scene_map, scene_lines, warn).save(out, format="PNG")
        overlay(photo, lm_map, lm_lines, lm_warn).save(lm_out, format="PNG")
    except OSError as exc:
        raise CliError(f"cannot write {exc.filename}: {exc.strerror}") from None
    summary = {
        "photo": str(args.photo),
        "size": list(full_size),
        "drawn": [photo.width, photo.height],
        "cut": cut,
        "model_version": meta.model_version,
        "trained": meta.trained,
        "heads": meta.heads(),
        "scene_cam": str(out),
        "scene_class": top[0][0],
        "scenes": [[n, round(p, 4)] for n, p in top],
        "albums": [[a, round(p, 4)] for a, p in albums],
        "landmark_map": str(lm_out),
        "landmark_map_of": landmark_what,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        if warn:
            print(f"WARNING: {warn}")
        print(f"{out}: scene CAM of {top[0][0]} ({top[0][1]:.2f})")
        print(f"{lm_out}: landmark map of {landmark_what}")
    return 0
