"""Depth branch: monocular depth over discrete bins, plus an external metric depth map.

Bins: `depth_bins` equal bins over [depth_min, depth_max) metres, bin i centred at
depth_min + (i + 0.5) * step. An external map (stereo, or another node's; 0 = no value) is
averaged over each feature cell, turned into a soft one-hot over the bins (linear between the
two nearest centres, so its expectation is the measured depth) and blended with the predicted
distribution where it has a value: p = (1 - w) * softmax(logits) + w * onehot, w fixed
(model.external_depth_weight) or predicted per cell by ExternalDepthGate.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import conv_bn_relu


def bin_centres(depth_min: float, depth_max: float, bins: int) -> Tensor:
    """(D,) float32 bin centres in metres."""
    step = (depth_max - depth_min) / bins
    return depth_min + (torch.arange(bins, dtype=torch.float32) + 0.5) * step


class DepthHead(nn.Module):
    """(B, Cin, h, w) fused image (+ segmentation) features -> depth logits (B, D, h, w)."""

    def __init__(self, in_channels: int, channels: int, bins: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(in_channels, channels), conv_bn_relu(channels, channels))
        self.classifier = nn.Conv2d(channels, bins, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.body(x))


def cells_of(x: Tensor, size: tuple[int, int]) -> tuple[Tensor, int]:
    """Pad (B, C, H, W) with zeros on the bottom/right to (h*s, w*s), s = ceil(H / h), so that
    feature cell (i, j) of the stride-s map covers pixels [s*i, s*i + s) x [s*j, s*j + s)
    exactly (the lift's ray goes through that block's centre). Returns (padded, s)."""
    H, W = x.shape[-2:]
    h, w = size
    s = -(-H // h)
    if -(-H // s) != h or -(-W // s) != w:
        raise ValueError(f"a ({H}, {W}) map does not have ({h}, {w}) cells of one stride")
    return F.pad(x, (0, w * s - W, 0, h * s - H)), s


def cell_mean_depth(depth: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Mean of the valid (> 0) metric depths of (B, 1, H, W) over each cell of a (h, w) grid.

    Returns (depth (B, 1, h, w), valid (B, 1, h, w) bool); cells without a value are 0/False.
    """
    depth, s = cells_of(depth, size)
    valid = (depth > 0).to(depth.dtype)
    total = F.avg_pool2d(depth * valid, s)
    count = F.avg_pool2d(valid, s)
    has = count > 0
    return torch.where(has, total / count.clamp_min(1e-6), torch.zeros_like(total)), has


def soft_one_hot(depth: Tensor, depth_min: float, depth_max: float, bins: int) -> tuple[Tensor, Tensor]:
    """(B, 1, h, w) metric depth -> (soft one-hot (B, D, h, w), in-range mask (B, 1, h, w)).

    Linear split between the two nearest bin centres (depths outside the centres' span go
    wholly to the end bin); depths outside [depth_min, depth_max) are not in range.
    """
    step = (depth_max - depth_min) / bins
    pos = ((depth - depth_min) / step - 0.5).clamp(0, bins - 1)  # fractional bin index
    lo = pos.floor()
    frac = pos - lo
    hi = (lo + 1).clamp(max=bins - 1)
    out = torch.zeros(depth.shape[0], bins, *depth.shape[2:], dtype=depth.dtype, device=depth.device)
    out.scatter_add_(1, lo.long(), 1 - frac)
    out.scatter_add_(1, hi.long(), frac)
    in_range = (depth >= depth_min) & (depth < depth_max)
    return out * in_range, in_range


def external_one_hot(depth: Tensor, size: tuple[int, int], depth_min: float, depth_max: float,
                     bins: int) -> tuple[Tensor, Tensor]:
    """External map (B, 1, H, W) -> (soft one-hot (B, D, h, w), has-a-value mask (B, 1, h, w) as
    0/1 floats) on the (h, w) feature cells."""
    cell, has = cell_mean_depth(depth, size)
    onehot, in_range = soft_one_hot(cell, depth_min, depth_max, bins)
    return onehot, (has & in_range).to(depth.dtype)


def blend_external(prob: Tensor, depth: Tensor, depth_min: float, depth_max: float,
                   weight: float | Tensor) -> Tensor:
    """Blend predicted bin probabilities (B, D, h, w) with an external map (B, 1, H, W):
    p = (1 - w) p + w onehot where the map has a value; `weight` is a float or (B, 1, h, w)."""
    onehot, valid = external_one_hot(depth.to(prob.dtype), prob.shape[-2:], depth_min, depth_max, prob.shape[1])
    w = weight * valid
    return prob * (1 - w) + onehot * w


class ExternalDepthGate(nn.Module):
    """The learned blend weight of the external depth: (B, E, h, w) image features, predicted
    (B, D, h, w) and external (B, D, h, w) distributions -> w (B, 1, h, w) in (0, 1).

    Input: the features, both distributions and their agreement sum_d p(d) onehot(d) (how
    likely the predicted distribution finds the measured depth). Zero weights and a bias of
    logit(`init`) make a new gate the fixed blend; training moves it per cell (trust stereo
    where it agrees with the image, less on textureless or occluded cells)."""

    def __init__(self, channels: int, bins: int, init: float):
        super().__init__()
        self.conv = nn.Conv2d(channels + 2 * bins + 1, 1, 1)
        nn.init.zeros_(self.conv.weight)
        init = min(max(init, 1e-3), 1 - 1e-3)
        nn.init.constant_(self.conv.bias, math.log(init / (1 - init)))

    def forward(self, feats: Tensor, prob: Tensor, onehot: Tensor) -> Tensor:
        agree = (prob * onehot).sum(1, keepdim=True)
        x = torch.cat([feats.to(prob.dtype), prob, onehot, agree], 1)
        return torch.sigmoid(self.conv(x.to(self.conv.weight.dtype)).float())
