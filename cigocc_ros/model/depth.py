"""Depth branch: monocular depth over discrete bins, plus an external metric depth map.

Bins: `depth_bins` equal bins over [depth_min, depth_max) metres, bin i centred at
depth_min + (i + 0.5) * step. An external map (stereo, or another node's; 0 = no value), with
a per-pixel confidence, becomes per feature cell the distribution of its valid pixels' depths
over the bins (each pixel split linearly between its two nearest centres, weighted by its
confidence; `external_distribution`) and a weight, the cell's share of confident pixels. It is
blended with the predicted distribution where it has a value:
p = (1 - w v) * softmax(logits) + w v * dist, v the cell's weight and w fixed
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


def soft_one_hot(depth: Tensor, depth_min: float, depth_max: float, bins: int) -> tuple[Tensor, Tensor]:
    """(B, 1, h, w) metric depth -> (soft one-hot (B, D, h, w), in-range mask (B, 1, h, w)).

    Linear split between the two nearest bin centres (depths outside the centres' span go
    wholly to the end bin); depths outside [depth_min, depth_max) are not in range.
    """
    lo, hi, frac, in_range = bin_split(depth, depth_min, depth_max, bins)
    out = torch.zeros(depth.shape[0], bins, *depth.shape[2:], dtype=depth.dtype, device=depth.device)
    out.scatter_add_(1, lo, 1 - frac)
    out.scatter_add_(1, hi, frac)
    return out * in_range, in_range


def bin_split(depth: Tensor, depth_min: float, depth_max: float, bins: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Metric depths (any shape) -> (lower bin, upper bin (int64), the upper one's share, in
    range (bool)): the linear split between the two nearest bin centres."""
    step = (depth_max - depth_min) / bins
    pos = ((depth - depth_min) / step - 0.5).clamp(0, bins - 1)  # fractional bin index
    lo = pos.floor()
    return lo.long(), (lo + 1).clamp(max=bins - 1).long(), pos - lo, (depth >= depth_min) & (depth < depth_max)


def external_distribution(depth: Tensor, conf: Tensor | None, size: tuple[int, int], depth_min: float,
                          depth_max: float, bins: int, full_share: float = 0.25) -> tuple[Tensor, Tensor]:
    """An external depth map (B, 1, H, W) metric (0 = no value) and its per-pixel confidence
    (B, 1, H, W) in [0, 1] (None: 1 wherever there is a depth) -> per (h, w) feature cell:

    - the distribution (B, D, h, w) of the cell's valid pixel depths over the bins: every pixel
      adds its confidence, split linearly between its two nearest bin centres, then the cell's
      histogram is normalised (a cell on a car's edge keeps both the car's and the background's
      depth, where a mean would put one between them, where nothing is);
    - its weight (B, 1, h, w) in [0, 1]: the cell's summed confidence over `full_share` of its
      pixels, capped at 1 (0 where no pixel has a value).
    One scatter of two entries per pixel; no shape depends on the data.
    """
    if conf is None:
        conf = (depth > 0).to(depth.dtype)
    padded, s = cells_of(torch.cat([depth, conf.to(depth.dtype)], 1), size)
    d, c = padded[:, :1], padded[:, 1:]
    B, _, Hp, Wp = d.shape
    h, w = size
    lo, hi, frac, in_range = bin_split(d, depth_min, depth_max, bins)
    wgt = c * (in_range & (d > 0)).to(d.dtype)
    cell = ((torch.arange(Hp, device=d.device) // s).view(-1, 1) * w
            + (torch.arange(Wp, device=d.device) // s).view(1, -1))  # (Hp, Wp)
    base = (torch.arange(B, device=d.device) * (bins * h * w)).view(B, 1, 1, 1)
    hist = torch.zeros(B * bins * h * w, dtype=d.dtype, device=d.device)
    hist.index_add_(0, (base + lo * (h * w) + cell).reshape(-1), (wgt * (1 - frac)).reshape(-1))
    hist.index_add_(0, (base + hi * (h * w) + cell).reshape(-1), (wgt * frac).reshape(-1))
    hist = hist.view(B, bins, h, w)
    total = hist.sum(1, keepdim=True)
    return hist / total.clamp_min(1e-6), (total / (full_share * s * s)).clamp(max=1.0)


def blend_external(prob: Tensor, depth: Tensor, depth_min: float, depth_max: float,
                   weight: float | Tensor, conf: Tensor | None = None) -> Tensor:
    """Blend predicted bin probabilities (B, D, h, w) with an external map (B, 1, H, W):
    p = (1 - w v) p + w v dist, v the map's weight per cell (external_distribution); `weight`
    w is a float or (B, 1, h, w)."""
    dist, valid = external_distribution(depth.to(prob.dtype), conf, prob.shape[-2:], depth_min, depth_max,
                                        prob.shape[1])
    w = weight * valid
    return prob * (1 - w) + dist * w


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
