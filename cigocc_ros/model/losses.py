"""Training losses of CIGOcc; each term has a weight in LossConfig (0 disables it).

- ssc_ce: class-weighted cross-entropy of the full-grid logits (weights 1/ln(n + 0.001),
  classes.class_weights), label 255 ignored; ssc_aux: the same on the stage-1 1:2 output.
- sem_scal / geo_scal: MonoScene's scene-class-affinity losses (per-class / occupied-vs-empty
  precision, recall and specificity pushed to 1 with a BCE), over voxels whose label is not 255.
- distill_bce: the segmentation head's logits, upsampled to the teacher mask's size, against
  the teacher's one-hot classes (BCE per class), over pixels with a mask (not 255).
- set_cross_entropy (the 2D training of `cigocc train-seg`, not a LossConfig term): cross-entropy
  against label sets, for CamVid's coarser classes.
- depth: cross-entropy over depth bins against the LiDAR depth, per feature cell taking the
  nearest valid LiDAR return (> 0) in the cell; cells without one (or out of range) are skipped.
A term whose target key is absent from the batch, or whose branch the model lacks, is skipped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..classes import IGNORE_LABEL, class_weights
from ..config import ExperimentConfig, target_key
from .depth import cells_of

_EPS = 1e-6


def _bce_to_one(x: Tensor) -> Tensor:
    """BCE of ratios x in [0, 1] against a target of 1: -log(x), clamped to stay finite."""
    return -torch.log(x.clamp(min=_EPS, max=1.0))


def ssc_cross_entropy(logits: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """logits (B, n_cls, X, Y, Z), target (B, X, Y, Z) int64 with 255 ignored -> scalar."""
    if not (target != IGNORE_LABEL).any():
        return logits.sum() * 0.0
    w = weights.to(logits.device, logits.dtype) if weights is not None else None
    return F.cross_entropy(logits, target, weight=w, ignore_index=IGNORE_LABEL)


def sem_scal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """MonoScene sem_scal: mean over classes present in the valid target of
    BCE(precision, 1) + BCE(recall, 1) + BCE(specificity, 1), with p = softmax(logits)."""
    n_cls = logits.shape[1]
    valid = (target != IGNORE_LABEL)
    p = logits.float().softmax(1).movedim(1, -1)[valid]  # (M, n_cls)
    onehot = F.one_hot(target[valid], n_cls).float()  # (M, n_cls)
    tp = (p * onehot).sum(0)
    pred_pos, true_pos = p.sum(0), onehot.sum(0)
    true_neg = (1 - onehot).sum(0)
    present = true_pos > 0
    loss = torch.where(pred_pos > 0, _bce_to_one(tp / pred_pos.clamp_min(_EPS)), torch.zeros_like(tp))
    loss = loss + _bce_to_one(tp / true_pos.clamp_min(_EPS))
    spec = ((1 - p) * (1 - onehot)).sum(0) / true_neg.clamp_min(_EPS)
    loss = loss + torch.where(true_neg > 0, _bce_to_one(spec), torch.zeros_like(spec))
    if not present.any():
        return logits.sum() * 0.0
    return loss[present].mean()


def geo_scal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """MonoScene geo_scal on occupied (label != 0) vs empty (label 0) over valid voxels:
    BCE(precision, 1) + BCE(recall, 1) + BCE(specificity, 1) with P(occupied) = 1 - p_empty."""
    valid = target != IGNORE_LABEL
    p_empty = logits.float().softmax(1)[:, 0][valid]
    p_occ = 1 - p_empty
    occ = (target[valid] != 0).float()
    tp = (p_occ * occ).sum()
    loss = logits.sum() * 0.0
    if p_occ.sum() > 0 and occ.sum() > 0:
        loss = loss + _bce_to_one(tp / p_occ.sum()) + _bce_to_one(tp / occ.sum())
    if (1 - occ).sum() > 0:
        loss = loss + _bce_to_one((p_empty * (1 - occ)).sum() / (1 - occ).sum())
    return loss


def distill_bce_loss(seg_logits: Tensor, teacher: Tensor) -> Tensor:
    """seg_logits (B, n_cls, h, w), teacher (B, H, W) int64 class ids, 255 = no mask -> scalar."""
    n_cls = seg_logits.shape[1]
    logits = F.interpolate(seg_logits.float(), size=teacher.shape[-2:], mode="bilinear", align_corners=False)
    valid = teacher != IGNORE_LABEL
    if not valid.any():
        return seg_logits.sum() * 0.0
    x = logits.movedim(1, -1)[valid]  # (M, n_cls)
    y = F.one_hot(teacher[valid], n_cls).float()
    return F.binary_cross_entropy_with_logits(x, y)


def set_cross_entropy(logits: Tensor, target: Tensor, sets: Tensor, weights: Tensor | None = None) -> Tensor:
    """Cross-entropy against label SETS (the 2D training, data/camvid.py): a pixel with target t
    is right when its class is any of the classes in row t of `sets`, so its loss is
    -log sum_{c in sets[t]} softmax(logits)_c. A one-class row is the plain cross-entropy.

    logits (B, n_cls, H, W); target (B, H, W) int64 row indices into `sets` (R, n_cls) bool,
    255 = no label; `weights` (R,) per row. Each sample's loss is the weighted mean over its
    labelled pixels, the result the mean over samples that have any: a frame with sparse LiDAR
    labels counts as much as a densely labelled one.
    """
    valid = target != IGNORE_LABEL
    t = torch.where(valid, target, torch.zeros_like(target))
    logp = F.log_softmax(logits.float(), dim=1).movedim(1, -1)  # (B, H, W, n_cls)
    member = sets.to(logits.device)[t]  # (B, H, W, n_cls)
    nll = -torch.logsumexp(logp.masked_fill(~member, float("-inf")), dim=-1)
    w = (weights.to(logits.device, torch.float32)[t] if weights is not None else torch.ones_like(nll)) * valid
    per_sample = (nll * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(_EPS)
    has = valid.flatten(1).any(1)
    if not has.any():
        return logits.sum() * 0.0
    return per_sample[has].mean()


def cell_nearest_depth(depth: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, H, W) metric depth (0 = none) -> (B, h, w) nearest valid depth per cell, 0 if none."""
    padded, s = cells_of(depth.unsqueeze(1), size)  # padding is 0 = no return
    d = torch.where(padded > 0, padded, torch.full_like(padded, float("inf")))
    nearest = -F.max_pool2d(-d, s).squeeze(1)
    return torch.where(torch.isfinite(nearest), nearest, torch.zeros_like(nearest))


def depth_loss(depth_logits: Tensor, depth_target: Tensor, depth_min: float, depth_max: float) -> Tensor:
    """depth_logits (B, D, h, w), depth_target (B, H, W) metric (0 = none) -> scalar CE."""
    D = depth_logits.shape[1]
    d = cell_nearest_depth(depth_target.float(), depth_logits.shape[-2:])
    valid = (d >= depth_min) & (d < depth_max)
    if not valid.any():
        return depth_logits.sum() * 0.0
    bins = ((d - depth_min) / ((depth_max - depth_min) / D)).long().clamp(0, D - 1)
    return F.cross_entropy(depth_logits.float().movedim(1, -1)[valid], bins[valid])


def compute_losses(outputs: dict[str, Tensor], batch: dict[str, Tensor], cfg: ExperimentConfig) -> dict[str, Tensor]:
    """Weighted loss terms and their sum under "total" (terms with weight 0 are left out)."""
    lc, m = cfg.loss, cfg.model
    logits = outputs["ssc_logits"]
    weights = torch.from_numpy(class_weights()).to(logits.device)
    terms: dict[str, Tensor] = {}
    grid = tuple(cfg.grid.size)
    key = target_key(tuple(g // max(n, 1) for g, n in zip(grid, logits.shape[-3:], strict=True)))
    if key in batch:
        target = batch[key].long()
        if tuple(target.shape[-3:]) != tuple(logits.shape[-3:]):
            raise ValueError(f"ssc_logits {tuple(logits.shape[-3:])} do not match {key} {tuple(target.shape[-3:])}")
        if lc.ssc_ce:
            terms["ssc_ce"] = lc.ssc_ce * ssc_cross_entropy(logits.float(), target, weights)
        if lc.sem_scal:
            terms["sem_scal"] = lc.sem_scal * sem_scal_loss(logits, target)
        if lc.geo_scal:
            terms["geo_scal"] = lc.geo_scal * geo_scal_loss(logits, target)
    if lc.ssc_aux and "target_2" in batch and "aux_logits" in outputs:
        terms["ssc_aux"] = lc.ssc_aux * ssc_cross_entropy(outputs["aux_logits"].float(), batch["target_2"].long(), weights)
    if lc.distill_bce and "teacher" in batch and "seg_logits" in outputs:
        terms["distill_bce"] = lc.distill_bce * distill_bce_loss(outputs["seg_logits"], batch["teacher"].long())
    if lc.depth and "depth_target" in batch and "depth_logits" in outputs:
        terms["depth"] = lc.depth * depth_loss(outputs["depth_logits"], batch["depth_target"], m.depth_min, m.depth_max)
    if not terms:
        raise KeyError("compute_losses: the batch has none of the target keys "
                       "'target', 'target_2', 'teacher', 'depth_target'")
    terms["total"] = sum(terms.values())
    return terms
