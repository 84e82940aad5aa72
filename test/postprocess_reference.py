"""The Predictor's post-processing as it was before issue 23 (main at dcc8e09,
cigocc_ros/inference.py), kept verbatim as the reference that cigocc_ros/postprocess.py must
match bit for bit (test/test_postprocess.py). Not used by the package."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _axis_weights(scale: int, device: torch.device) -> Tensor:
    """(corners, scale) trilinear weights along one axis, align_corners=False: 2 corners for
    an even scale (the fine voxels of a dual cell), 1 for scale 1 (the voxel itself)."""
    if scale == 1:
        return torch.ones(1, 1, device=device)
    f = (torch.arange(scale, dtype=torch.float32, device=device) + 0.5) / scale
    return torch.stack([1 - f, f])


def _corner_weights(scales: tuple[int, int, int], device: torch.device) -> Tensor:
    """(corners, sx*sy*sz) weights of a dual cell's corners (x-major, z fastest) for its fine
    voxels (x-major)."""
    wx, wy, wz = (_axis_weights(s, device) for s in scales)
    w = wx[:, None, None, :, None, None] * wy[None, :, None, None, :, None] * wz[None, None, :, None, None, :]
    return w.reshape(w.shape[0] * w.shape[1] * w.shape[2], -1)


def upsampled_argmax(logits: Tensor, scale: int | tuple[int, int, int]) -> Tensor:
    """argmax over classes of F.interpolate(logits, size=(x*sx, y*sy, z*sz), mode="trilinear",
    align_corners=False), without building the upsampled logits where it is not needed.

    logits (B, n_cls <= 256, x, y, z), `scale` one factor or one per axis -> (B, x*sx, y*sy,
    z*sz) uint8. Along an axis of even scale each fine voxel lies in the "dual cell" spanned by
    two neighbouring coarse centres (edges replicated, which is what align_corners=False does
    there); along an axis of scale 1 it is its coarse voxel. Cells whose corners agree take
    that class, the others are interpolated exactly.
    """
    B, n_cls, x, y, z = logits.shape
    scales = (scale,) * 3 if isinstance(scale, int) else tuple(int(s) for s in scale)
    if n_cls > 256:
        raise ValueError(f"upsampled_argmax: {n_cls} classes do not fit uint8 labels")
    if scales == (1, 1, 1):
        return logits.argmax(1).to(torch.uint8)
    if any(s % 2 and s != 1 for s in scales) or logits.device.type != "cpu":
        # GPUs upsample everything faster than they gather; odd scales lack the dual-cell layout.
        up = F.interpolate(logits.float(), size=(x * scales[0], y * scales[1], z * scales[2]),
                           mode="trilinear", align_corners=False)
        return up.argmax(1).to(torch.uint8)
    px, py, pz = (int(s > 1) for s in scales)  # replicate padding / extra dual cell per axis
    cx, cy, cz = x + px, y + py, z + pz  # dual cells per axis
    Py, Pz = y + 2 * py, z + 2 * pz  # padded sizes (strides of the flat index)
    n_fine = scales[0] * scales[1] * scales[2]
    weights = _corner_weights(scales, logits.device)
    corner_offsets = [(a, c, e) for a in range(px + 1) for c in range(py + 1) for e in range(pz + 1)]
    offs = torch.tensor([(a * Py + c) * Pz + e for a, c, e in corner_offsets], device=logits.device)
    out = []
    for b in range(B):
        pad = F.pad(logits[b:b + 1].float(), (pz, pz, py, py, px, px), mode="replicate")[0]
        arg = pad.max(0).indices.to(torch.uint8)  # uint8 blocks: 8x less memory traffic than int64
        corners = torch.stack([arg[a:a + cx, c:c + cy, e:e + cz] for a, c, e in corner_offsets])
        agree = (corners == corners[:1]).all(0)
        blocks = corners[0].unsqueeze(-1).expand(-1, -1, -1, n_fine).clone()  # (cx, cy, cz, n_fine)
        cells = (~agree).flatten().nonzero().squeeze(1)  # flat (cx, cy, cz) index of each cell
        if cells.numel():
            # Channels-last rows and a flat gather: the class axis stays contiguous for argmax.
            rows = pad.permute(1, 2, 3, 0).reshape(-1, n_cls)
            ci, rem = cells // (cy * cz), cells % (cy * cz)
            cj, ck = rem // cz, rem % cz
            base = (ci * Py + cj) * Pz + ck  # corner (0, 0, 0) in the padded volume
            vals = rows[base.unsqueeze(1) + offs]  # (M, corners, n_cls)
            fine_logits = torch.matmul(weights.t(), vals)  # (M, n_fine, n_cls), contiguous
            blocks.view(-1, n_fine)[cells] = fine_logits.max(-1).indices.to(torch.uint8)
        sx, sy, sz = scales
        fine = blocks.view(cx, cy, cz, sx, sy, sz).permute(0, 3, 1, 4, 2, 5).reshape(cx * sx, cy * sy, cz * sz)
        hx, hy, hz = sx // 2 * px, sy // 2 * py, sz // 2 * pz
        out.append(fine[hx:hx + x * sx, hy:hy + y * sy, hz:hz + z * sz])
    return torch.stack(out)


def reference_labels_confidence(coarse: Tensor, grid_size: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """Predictor.predict's labels and confidence (X, Y, Z) uint8 from native logits (1, C, x, y, z),
    as it computed them before issue 23."""
    coarse = coarse.float()
    scale = tuple(g // c for g, c in zip(grid_size, coarse.shape[-3:], strict=True))
    labels = upsampled_argmax(coarse, scale)[0]  # uint8
    conf = coarse.softmax(1).amax(1, keepdim=True)
    if scale != (1, 1, 1):
        conf = F.interpolate(conf, size=grid_size, mode="trilinear", align_corners=False)
    conf = (conf[0, 0] * 255.0).round_().clamp_(0, 255)
    return labels, conf.to(torch.uint8)
