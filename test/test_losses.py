"""Loss terms on hand-made cases."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cigocc_ros.classes import class_weights
from cigocc_ros.config import load_experiment
from cigocc_ros.model.losses import (
    cell_nearest_depth,
    compute_losses,
    depth_loss,
    distill_bce_loss,
    geo_scal_loss,
    sem_scal_loss,
    ssc_cross_entropy,
)


def _target(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, 20, (2, 6, 5, 4), generator=g)
    t[:, 0] = 0  # plenty of empty voxels
    t[:, :, 0, 0] = 255
    return t


def test_ce_ignores_255_and_uses_class_weights():
    t = _target()
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 20, 6, 5, 4, generator=g)
    w = torch.from_numpy(class_weights())
    loss = ssc_cross_entropy(logits, t, w)
    # Hand computation over the valid voxels only: sum(w_t * -log p_t) / sum(w_t).
    valid = t != 255
    logp = logits.log_softmax(1).movedim(1, -1)[valid]
    tv = t[valid]
    manual = -(w[tv] * logp.gather(1, tv[:, None]).squeeze(1)).sum() / w[tv].sum()
    torch.testing.assert_close(loss, manual)
    # Whatever the network says at ignored voxels does not matter.
    logits2 = logits.clone()
    logits2.movedim(1, -1)[~valid] = 1e3 * torch.randn(int((~valid).sum()), 20, generator=g)
    torch.testing.assert_close(ssc_cross_entropy(logits2, t, w), loss)
    # All ignored: a zero that still backpropagates.
    zero = ssc_cross_entropy(logits.requires_grad_(), torch.full_like(t, 255), w)
    assert zero.item() == 0.0 and zero.requires_grad


def _perfect_logits(t: torch.Tensor, scale: float = 50.0) -> torch.Tensor:
    """Logits whose softmax equals the one-hot target to float32 precision (ignored voxels: noise)."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(*t.shape[:1], 20, *t.shape[1:], generator=g)
    valid = t != 255
    onehot = F.one_hot(t.clamp(max=19), 20).movedim(-1, 1).float()
    return torch.where(valid.unsqueeze(1), scale * onehot, logits)


@pytest.mark.parametrize("fn", [sem_scal_loss, geo_scal_loss], ids=["sem_scal", "geo_scal"])
def test_scal_losses_vanish_when_prediction_equals_target(fn):
    """With logits 50 * onehot(target) on every valid voxel, softmax is the one-hot target in
    float32 (the other classes get e^-50 ~ 2e-22), so precision = recall = specificity = 1
    and each BCE(1, 1) = -log 1 = 0: the loss is 0 up to 1e-6. A wrong prediction costs more."""
    t = _target()
    assert fn(_perfect_logits(t), t).item() == pytest.approx(0.0, abs=1e-6)
    wrong = (t + 1) % 20
    wrong[t == 255] = 255
    assert fn(_perfect_logits(wrong), t).item() > 1.0
    # Softer but still right predictions sit between the two.
    soft = fn(_perfect_logits(t, scale=2.0), t).item()
    assert 1e-3 < soft < fn(_perfect_logits(wrong), t).item()


def test_geo_scal_by_hand():
    # Four valid voxels: two occupied, two empty; P(occupied) = 0.5 everywhere.
    t = torch.tensor([[[[1, 0, 9, 0, 255]]]])
    logits = torch.zeros(1, 20, 1, 1, 5)
    logits[:, 0] = math.log(19.0)  # p_empty = 19 / (19 + 19) = 0.5
    # precision = 1 / 2 (tp = 1 of predicted mass 2), recall = 1 / 2, specificity = 1 / 2.
    assert geo_scal_loss(logits, t).item() == pytest.approx(3 * math.log(2), rel=1e-5)


def test_distillation_bce_masks_and_upsamples():
    teacher = torch.full((1, 8, 8), 255)
    teacher[0, :3, :3] = 3  # a masked patch of class 3, away from the bilinear blend at row/col 3
    seg = torch.full((1, 20, 4, 4), -30.0)
    seg[:, 3, :2, :2] = 30.0  # matches the teacher at half resolution
    assert distill_bce_loss(seg, teacher).item() < 1e-6
    seg_other = seg.clone()
    seg_other[:, :, 2:, 2:] = torch.randn(1, 20, 2, 2) * 100  # where the teacher has no mask
    assert distill_bce_loss(seg_other, teacher).item() < 1e-6
    seg_wrong = seg.clone()
    seg_wrong[:, 3, :2, :2] = -30.0
    assert distill_bce_loss(seg_wrong, teacher).item() > 1.0
    assert distill_bce_loss(seg, torch.full_like(teacher, 255)).item() == 0.0


def test_depth_loss_uses_nearest_return_per_cell_and_skips_empty_cells():
    target = torch.zeros(1, 8, 8)
    target[0, 1, 1] = 10.2
    target[0, 2, 3] = 30.0  # same 4x4 cell, farther: the nearest return wins
    near = cell_nearest_depth(target, (2, 2))
    assert near[0, 0, 0].item() == pytest.approx(10.2)
    assert near[0, 0, 1] == 0 and near[0, 1, 0] == 0 and near[0, 1, 1] == 0
    bins = 56  # 2..58 m, 1 m bins: 10.2 m -> bin 8
    logits = torch.full((1, bins, 2, 2), -20.0)
    logits[0, 8, 0, 0] = 20.0
    assert depth_loss(logits, target, 2.0, 58.0).item() < 1e-6
    logits[0, 8, 0, 0], logits[0, 9, 0, 0] = -20.0, 20.0
    assert depth_loss(logits, target, 2.0, 58.0).item() > 10.0
    assert depth_loss(logits, torch.zeros(1, 8, 8), 2.0, 58.0).item() == 0.0


def test_compute_losses_weights_and_skips():
    cfg = load_experiment("lite", ["loss.geo_scal=0", "loss.sem_scal=2.0", "grid.size=[6, 5, 4]"])
    t = _target()
    g = torch.Generator().manual_seed(5)
    out = {"ssc_logits": torch.randn(2, 20, 6, 5, 4, generator=g),
           "aux_logits": torch.randn(2, 20, 3, 3, 2, generator=g),
           "seg_logits": torch.randn(2, 20, 4, 4, generator=g)}
    batch = {"target": t, "target_2": t[:, ::2, ::2, ::2]}
    terms = compute_losses(out, batch, cfg)
    assert set(terms) == {"ssc_ce", "sem_scal", "ssc_aux", "total"}  # geo_scal weight 0; no teacher
    torch.testing.assert_close(terms["sem_scal"], 2.0 * sem_scal_loss(out["ssc_logits"], t))
    torch.testing.assert_close(terms["total"], terms["ssc_ce"] + terms["sem_scal"] + terms["ssc_aux"])
    with pytest.raises(KeyError, match="target"):
        compute_losses(out, {}, cfg)
