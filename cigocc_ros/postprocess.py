"""The full grid from the head's native logits: exact labels and confidence, cheaply on a CPU.

The network's full-grid output is its native logits (B, C, x, y, z) trilinearly upsampled
(align_corners=False) by `scale` = (sx, sy, sz) per axis (OccupancyHead.upsample). Upsampling
every class to the grid costs more than the rest of the head on a CPU, so:

- `native_argmax_confidence`: the argmax over classes of each native voxel and its top class
  probability (softmax), slab by slab along x so that each slab's softmax is written, read and
  reduced while it is still in the cache (one pass over the logits from memory instead of four).
  Both equal `logits.argmax(1)` / `logits.softmax(1).amax(1)` bit for bit: torch's softmax over
  dim 1 computes every voxel on its own (its exponential is not torch.exp's, so it is called, not
  re-derived).
- `upsampled_argmax`: the labels of the full grid. Along an axis of even scale each fine voxel
  lies in the "dual cell" spanned by two neighbouring native centres (edges replicated, which is
  what align_corners=False does there); along an axis of scale 1 it is its native voxel. Where
  all corners of a dual cell have the same argmax c, c is the argmax of any convex combination of
  their logits; the other cells ("disagreeing") are interpolated exactly.

The arithmetic of a disagreeing cell is the one of the first implementation (kept in
test/postprocess_reference.py): the corner weights of `corner_weights`, and per fine voxel and
class sum_k w_k v_k accumulated in corner order, each product rounded (torch's batched matmul
computes products this small with a plain loop). `_exact_cells` computes exactly that with
elementwise operations, blockwise; for larger products (many fine voxels per cell, e.g. the
stride-8 segmentation logits) the matmul uses BLAS, whose rounding differs, and is kept as it
was. test/test_postprocess.py checks labels and confidence against the first implementation bit
for bit. Logits are assumed finite (a NaN logit has no meaningful argmax in either version).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# Logits per slab of native_argmax_confidence (float32: 2 MiB): small enough that the slab's
# softmax output is still in the cache when it is reduced, large enough that the loop over slabs
# is a handful of calls per frame (lite: 20 classes x 128 x 32 per x row -> 6 rows a slab).
SLAB_FLOATS = 1 << 19
# Fine logits per block of _exact_cells (float32: 2 MiB), for the same reason.
BLOCK_FLOATS = 1 << 19
# torch's batched matmul on CPU loops in plain C (products rounded, summed in order) below this
# many multiply-adds per matrix product (contraction x rows x columns), BLAS above it.
PLAIN_MATMUL_BELOW = 400


def axis_weights(scale: int, device: torch.device) -> Tensor:
    """(corners, scale) trilinear weights along one axis, align_corners=False: 2 corners for
    an even scale (the fine voxels of a dual cell), 1 for scale 1 (the voxel itself)."""
    if scale == 1:
        return torch.ones(1, 1, device=device)
    f = (torch.arange(scale, dtype=torch.float32, device=device) + 0.5) / scale
    return torch.stack([1 - f, f])


def corner_weights(scales: tuple[int, int, int], device: torch.device) -> Tensor:
    """(corners, sx*sy*sz) weights of a dual cell's corners (x-major, z fastest) for its fine
    voxels (x-major)."""
    wx, wy, wz = (axis_weights(s, device) for s in scales)
    w = wx[:, None, None, :, None, None] * wy[None, :, None, None, :, None] * wz[None, None, :, None, None, :]
    return w.reshape(w.shape[0] * w.shape[1] * w.shape[2], -1)


def _scales(scale: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (int(scale),) * 3 if isinstance(scale, int) else tuple(int(s) for s in scale)


def native_argmax_confidence(logits: Tensor) -> tuple[Tensor, Tensor]:
    """logits (B, C <= 256, x, y, z) float32 -> (argmax (B, x, y, z) uint8, the first class of
    the largest logit; top class probability (B, 1, x, y, z) float32), equal bit for bit to
    logits.max(1).indices and logits.softmax(1).amax(1, keepdim=True)."""
    B, C, x, y, z = logits.shape
    if C > 256:
        raise ValueError(f"native_argmax_confidence: {C} classes do not fit uint8 labels")
    arg = torch.empty((B, x, y, z), dtype=torch.uint8, device=logits.device)
    conf = torch.empty((B, 1, x, y, z), dtype=logits.dtype, device=logits.device)
    # torch's softmax kernel runs along the voxels in SIMD vectors and finishes a remainder that
    # fills no vector with scalar code, whose exponential rounds differently: slabs of a multiple
    # of 64 voxels (any SIMD width) leave that remainder where the whole tensor has it, at the end.
    unit = 64 // math.gcd(y * z, 64)
    step = max(unit, SLAB_FLOATS // max(1, C * y * z) // unit * unit)
    for b in range(B):
        for x0 in range(0, x, step):  # slabs along x, not voxels: a handful of calls per frame
            slab = logits[b, :, x0:x0 + step].contiguous()  # (C, s, y, z): read once, then in cache
            arg[b, x0:x0 + step] = slab.max(0).indices
            torch.amax(slab.softmax(0), 0, out=conf[b, 0, x0:x0 + step])
    return arg, conf


def _replicate_pad(vol: Tensor, pads: tuple[int, int, int]) -> Tensor:
    """(x, y, z) -> (x + 2 px, y + 2 py, z + 2 pz), edges repeated (F.pad's "replicate", which
    has no uint8 kernel)."""
    for dim, p in enumerate(pads):
        if p:
            n = vol.shape[dim]
            idx = (torch.arange(-p, n + p, device=vol.device)).clamp_(0, n - 1)
            vol = vol.index_select(dim, idx)
    return vol


def upsampled_argmax(logits: Tensor, scale: int | tuple[int, int, int], native: Tensor | None = None) -> Tensor:
    """argmax over classes of F.interpolate(logits, size=(x*sx, y*sy, z*sz), mode="trilinear",
    align_corners=False), without building the upsampled logits where it is not needed.

    logits (B, C <= 256, x, y, z), `scale` one factor or one per axis (even or 1), `native` the
    logits' own argmax (B, x, y, z) uint8 when already computed (native_argmax_confidence)
    -> (B, x*sx, y*sy, z*sz) uint8.
    """
    B, n_cls, x, y, z = logits.shape
    scales = _scales(scale)
    if n_cls > 256:
        raise ValueError(f"upsampled_argmax: {n_cls} classes do not fit uint8 labels")
    if scales == (1, 1, 1):
        return native if native is not None else logits.argmax(1).to(torch.uint8)
    if any(s % 2 and s != 1 for s in scales) or logits.device.type != "cpu":
        # GPUs upsample everything faster than they gather; odd scales lack the dual-cell layout.
        up = F.interpolate(logits.float(), size=(x * scales[0], y * scales[1], z * scales[2]),
                           mode="trilinear", align_corners=False)
        return up.argmax(1).to(torch.uint8)
    logits = logits.float()
    if native is None:
        native = logits.max(1).indices.to(torch.uint8)
    out = torch.empty((B, x * scales[0], y * scales[1], z * scales[2]), dtype=torch.uint8)
    for b in range(B):
        _upsample_one(logits[b], native[b], scales, out[b])
    return out


def _upsample_one(logits: Tensor, arg: Tensor, scales: tuple[int, int, int], out: Tensor) -> None:
    """One frame: logits (C, x, y, z), their argmax (x, y, z) uint8 -> `out` (x sx, y sy, z sz)."""
    n_cls, x, y, z = logits.shape
    pads = tuple(int(s > 1) for s in scales)  # replicate padding / extra dual cell per axis
    cx, cy, cz = x + pads[0], y + pads[1], z + pads[2]  # dual cells per axis
    n_fine = scales[0] * scales[1] * scales[2]
    offsets = [(a, c, e) for a in range(pads[0] + 1) for c in range(pads[1] + 1) for e in range(pads[2] + 1)]
    padded = _replicate_pad(arg, pads)
    corner0 = padded[:cx, :cy, :cz]
    agree = torch.ones((cx, cy, cz), dtype=torch.bool)
    for a, c, e in offsets[1:]:
        agree &= padded[a:a + cx, c:c + cy, e:e + cz] == corner0
    blocks = corner0.unsqueeze(-1).expand(-1, -1, -1, n_fine).contiguous()  # (cx, cy, cz, n_fine)
    cells = (~agree).flatten().nonzero().squeeze(1)  # flat (cx, cy, cz) index of each cell
    if cells.numel():
        ci, rem = cells // (cy * cz), cells % (cy * cz)
        cj, ck = rem // cz, rem % cz
        # Flat native index of each corner (K, M), the edges clamped (= the replicate padding).
        vox = torch.stack([((ci + (a - pads[0])).clamp_(0, x - 1) * y + (cj + (c - pads[1])).clamp_(0, y - 1)) * z
                           + (ck + (e - pads[2])).clamp_(0, z - 1) for a, c, e in offsets])
        weights = corner_weights(scales, logits.device)  # (K, n_fine)
        blocks.view(-1, n_fine)[cells] = _exact_cells(logits.reshape(n_cls, -1), vox, weights)
    sx, sy, sz = scales
    fine = blocks.view(cx, cy, cz, sx, sy, sz).permute(0, 3, 1, 4, 2, 5).reshape(cx * sx, cy * sy, cz * sz)
    hx, hy, hz = sx // 2 * pads[0], sy // 2 * pads[1], sz // 2 * pads[2]
    out.copy_(fine[hx:hx + x * sx, hy:hy + y * sy, hz:hz + z * sz])


def _exact_cells(flat: Tensor, vox: Tensor, weights: Tensor) -> Tensor:
    """Labels of the fine voxels of M dual cells: flat logits (C, N), corner voxels (K, M),
    weights (K, n_fine) -> (M, n_fine) uint8, the argmax (first class among equal values) of
    sum_k w_k v_k accumulated in corner order with rounded products, the arithmetic of
    torch.matmul(weights.t(), values) for matrices this small (see the module docstring)."""
    n_cls = flat.shape[0]
    K, M = vox.shape
    n_fine = weights.shape[1]
    if K * n_fine * n_cls >= PLAIN_MATMUL_BELOW:  # BLAS: the same call as the first version
        vals = flat.index_select(1, vox.t().reshape(-1)).view(n_cls, M, K).permute(1, 2, 0).contiguous()
        return torch.matmul(weights.t(), vals).max(-1).indices.to(torch.uint8)
    labels = torch.empty((M, n_fine), dtype=torch.uint8)
    w = weights[:, None, :, None]  # (K, 1, n_fine, 1): broadcast over classes and cells
    step = max(1, BLOCK_FLOATS // (n_cls * n_fine))
    for s in range(0, M, step):  # blocks of cells, not voxels: the block's values stay in cache
        v = flat.index_select(1, vox[:, s:s + step].reshape(-1)).view(n_cls, K, 1, -1)  # (C, K, 1, b)
        acc = v[:, 0] * w[0]  # (C, n_fine, b)
        for k in range(1, K):
            acc += v[:, k] * w[k]
        labels[s:s + step] = acc.max(0).indices.t()
    return labels


def upsampled_confidence(conf: Tensor, size: tuple[int, int, int], out: Tensor) -> Tensor:
    """Top class probability at the native resolution (B, 1, x, y, z) -> `out` (B, X, Y, Z)
    uint8 = round(255 * its trilinear upsampling to `size`)."""
    if tuple(conf.shape[-3:]) != tuple(size):
        conf = F.interpolate(conf, size=tuple(size), mode="trilinear", align_corners=False)
    else:
        conf = conf.clone()
    out.copy_(conf[:, 0].mul_(255.0).round_().clamp_(0, 255))
    return out
