"""deformable_sample (grid_sample based) against an explicit-loop reference: outputs and grads."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from cigocc_ros.model.deformable import deformable_sample


def interp_reference(value: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """Multilinear interpolation of value (C, *S) at loc (nd,) in [0, 1] (loc[0] along the last
    axis), align_corners=False, zeros outside: the textbook formula, corner by corner."""
    sizes = value.shape[1:][::-1]  # sizes in loc order
    pix = [loc[k] * sizes[k] - 0.5 for k in range(len(sizes))]
    base = [math.floor(p.item()) for p in pix]
    out = torch.zeros(value.shape[0], dtype=value.dtype)
    for corner in itertools.product((0, 1), repeat=len(sizes)):
        idx = [base[k] + corner[k] for k in range(len(sizes))]
        if not all(0 <= idx[k] < sizes[k] for k in range(len(sizes))):
            continue
        w = torch.ones((), dtype=value.dtype)
        for k in range(len(sizes)):
            w = w * (1 - (pix[k] - idx[k]).abs())
        out = out + w * value[(slice(None), *idx[::-1])]
    return out


def deformable_reference(values, loc, weights):
    B, Nq, H, L, P, _ = loc.shape
    Dh = values[0].shape[1]
    rows = []
    for b in range(B):
        for q in range(Nq):
            heads = []
            for h in range(H):
                acc = torch.zeros(Dh, dtype=values[0].dtype)
                for lvl in range(L):
                    for p in range(P):
                        acc = acc + weights[b, q, h, lvl, p] * interp_reference(values[lvl][b * H + h], loc[b, q, h, lvl, p])
                heads.append(acc)
            rows.append(torch.cat(heads))
    return torch.stack(rows).view(B, Nq, H * Dh)


def _case(spatial: list[tuple[int, ...]], seed: int):
    g = torch.Generator().manual_seed(seed)
    B, Nq, H, P, Dh = 2, 3, 2, 3, 4
    L, nd = len(spatial), len(spatial[0])
    values = [torch.randn(B * H, Dh, *s, generator=g, dtype=torch.float64).requires_grad_() for s in spatial]
    # Some points fall outside the maps (zeros there) to exercise the padding.
    loc = (torch.rand(B, Nq, H, L, P, nd, generator=g, dtype=torch.float64) * 1.3 - 0.15).requires_grad_()
    weights = torch.rand(B, Nq, H, L, P, generator=g, dtype=torch.float64).requires_grad_()
    return values, loc, weights


@pytest.mark.parametrize("spatial", [[(5, 7), (3, 4)], [(4, 5, 3)]], ids=["2d-two-levels", "3d-volume"])
def test_matches_loop_reference_outputs_and_grads(spatial):
    values, loc, weights = _case(spatial, seed=1)
    got = deformable_sample(values, loc, weights)
    ref = deformable_reference(values, loc, weights)
    assert got.shape == ref.shape == (2, 3, 2 * 4)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)

    upstream = torch.randn(got.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    inputs = [*values, loc, weights]
    g_got = torch.autograd.grad((got * upstream).sum(), inputs)
    g_ref = torch.autograd.grad((ref * upstream).sum(), inputs)
    for name, a, b in zip([f"value{i}" for i in range(len(values))] + ["loc", "weights"], g_got, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=lambda m, n=name: f"grad of {n}: {m}")


def test_outside_points_read_zero_and_level_count_is_checked():
    values = [torch.ones(2, 3, 4, 4)]
    loc = torch.full((1, 1, 2, 1, 1, 2), 2.0)  # far outside the map
    assert deformable_sample(values, loc, torch.ones(1, 1, 2, 1, 1)).abs().max() == 0
    with pytest.raises(ValueError, match="levels"):
        deformable_sample(values * 2, loc, torch.ones(1, 1, 2, 1, 1))
