"""Class activation maps: where the network looked.

Scene branch (Zhou et al.): ``M_c(x, y) = sum_k w_k^c f_k(x, y)`` over the scene layer4 maps
``f``, with ``w^c`` the classifier row of class ``c``; the map's mean plus the bias is the
class logit.

Landmark branch: the embedding is ``L2(BN(W · mean_xy f) + b)``, so before the L2 step its
dot product with any direction ``d`` (a centroid, or the photo's own embedding) is
``mean_xy sum_k v_k f_k(x, y) + const`` with ``v = W^T (d * gamma / sigma)`` (BN in eval
mode is affine). ``M_d(x, y) = sum_k v_k f_k(x, y)`` is therefore an exact CAM of the
similarity to ``d``: the L2 step only rescales it by a positive number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.network import SightlineNet


@torch.no_grad()
def scene_cam(net: SightlineNet, shared: Tensor, classes: Tensor) -> Tensor:
    """(N, h, w) maps of scene class ``classes[i]`` for each trunk output ``shared[i]``."""
    feats = net.scene_features(shared).float()
    weights = net.scene_fc.weight[classes].float()  # (N, C)
    return torch.einsum("nc,nchw->nhw", weights, feats)


def embedding_directions(net: SightlineNet, directions: Tensor) -> Tensor:
    """(N, C) weights over the landmark layer4 channels whose CAM explains ``directions``."""
    bn = net.embed_bn
    scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)
    return (directions.float() * scale) @ net.embed_fc.weight.float()


@torch.no_grad()
def embedding_cam(net: SightlineNet, shared: Tensor, directions: Tensor) -> Tensor:
    """(N, h, w) maps of the (pre-L2) embedding's dot product with ``directions`` (N, D)."""
    feats = net.landmark_features(shared).float()
    return torch.einsum("nc,nchw->nhw", embedding_directions(net, directions), feats)


def normalise_map(cam: Tensor, size: tuple[int, int]) -> Tensor:
    """Upsample (h, w) to ``size`` (height, width) and scale to 0..1 (a flat map is all 0)."""
    up = F.interpolate(cam[None, None].float(), size=size, mode="bilinear", align_corners=False)
    up = up[0, 0]
    lo, hi = up.min(), up.max()
    return (up - lo) / (hi - lo) if float(hi - lo) > 1e-12 else torch.zeros_like(up)
