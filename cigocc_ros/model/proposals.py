"""Stage-2 proposal selection with per-distance quotas.

A global top-k of stage 1's occupancy favours near voxels: there the lifted volume has many
rays and the UNet is confident, so its scores are high, while the far voxels (most of the
frustum's volume and most of its occupied voxels) score lower across the board. Ranking each
voxel by its score's *percentile within its distance ring* instead gives every ring a share
of the query budget in proportion to its eligible voxels, and the score still decides which
voxels of a ring get it. Fixed shapes throughout (one sort, one cumsum): no host sync, and it
exports to ONNX.
"""
from __future__ import annotations

import torch
from torch import Tensor


def ring_ids(dist: Tensor, rings: int) -> Tensor:
    """(N,) horizontal distances of voxel centres from the grid frame's origin (metres) -> (N,)
    int64 ring of each: `rings` equal-width rings up to the farthest centre."""
    width = dist.max() / rings + 1e-6
    return (dist / width).long().clamp_max(rings - 1)


def ring_balanced(score: Tensor, eligible: Tensor, ring: Tensor, rings: int) -> Tensor:
    """(B, N) scores, (B, N) bool eligible (in view and above the threshold), (N,) ring ids ->
    (B, N) selection keys in [0, 1] for eligible voxels (1 - their score's percentile rank
    within the ring's eligible voxels, so each ring's best voxel is near 1) and -1 elsewhere.
    A top-k of the keys takes about the same share of every ring's eligible voxels."""
    B, N = score.shape
    key = torch.where(eligible, score, torch.full_like(score, -1.0))
    order = key.argsort(dim=1, descending=True)  # eligible first, best first
    ring_sorted = ring.expand(B, N).gather(1, order)
    elig_sorted = eligible.gather(1, order)
    member = (ring_sorted.unsqueeze(-1) == torch.arange(rings, device=score.device)) & elig_sorted.unsqueeze(-1)
    member = member.to(score.dtype)  # (B, N, R)
    rank = (member.cumsum(1) - member).gather(2, ring_sorted.unsqueeze(-1)).squeeze(-1)  # eligible before it
    count = member.sum(1).gather(1, ring_sorted).clamp_min(1)  # (B, N): size of its ring
    pct = torch.where(elig_sorted, 1 - (rank + 0.5) / count, torch.full_like(rank, -1.0))
    return torch.zeros_like(pct).scatter(1, order, pct)
