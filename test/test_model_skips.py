"""Inference skips the work whose result is discarded (issue 23): only the proposed queries are
projected and cross-attend; the slots under the threshold, which take the learned fill anyway,
are not computed. Checked against the computation before issue 23 (`old_voxel_queries`, below:
Q_d projected for every voxel, every one of the max_queries slots cross-attending, the
unproposed ones then replaced by the fill) on the same weights and inputs, and against the
fixed-shape path (`static_shapes`: what ONNX export and CUDA-graph capture run)."""
from __future__ import annotations

import types

import pytest
import torch
from model_fixtures import make_batch, tiny_config

from cigocc_ros.model.cigocc import build_model


def old_voxel_queries(self, f_raw, idx, proposed, n_used, uv, z, pos, feats, prob):
    """CIGOcc's stage-2 query volume as the first version computed it (n_used ignored)."""
    B, C = f_raw.shape[:2]
    N = f_raw[0, 0].numel()
    fill = self.fill_embed.to(f_raw.dtype).view(1, 1, C)
    if self.cross_attn is not None:
        q = self.query_proj(f_raw).flatten(2).transpose(1, 2)
        q = torch.gather(q, 1, idx.unsqueeze(-1).expand(-1, -1, C))
        with torch.autocast(f_raw.device.type, enabled=False):
            ref_uv, ref_d, to_depth, sizes = self._references(torch.gather(uv, 1, idx.unsqueeze(-1).expand(-1, -1, 2)),
                                                              torch.gather(z, 1, idx), feats)
        q = self.cross_attn(q, pos[idx], ref_uv, ref_d, feats,
                            prob.unsqueeze(1) if prob is not None else None, to_depth, sizes)
        q = torch.where(proposed.unsqueeze(-1), q, fill.to(q.dtype))
    else:
        q = fill.expand(B, idx.shape[1], C)
    vol2 = fill.to(q.dtype).expand(B, N, C).clone()
    vol2.scatter_(1, idx.unsqueeze(-1).expand(-1, -1, C), q)
    return vol2


def _old(model):
    """A deep copy of `model` (same weights) computing stage 2's queries the old way."""
    import copy

    ref = copy.deepcopy(model)
    ref.voxel_queries = types.MethodType(old_voxel_queries, ref)
    return ref


def _close(a, b, what):
    assert a.dtype == b.dtype, what
    assert torch.allclose(a.float(), b.float(), atol=1e-5, rtol=1e-5), (what, (a.float() - b.float()).abs().max())


@pytest.mark.parametrize(("threshold", "depth", "rings"),
                         [(0.1, False, 0), (0.9474, False, 0), (1.0, False, 0), (0.1, True, 0), (0.9474, True, 0),
                          (0.9474, False, 3)])
def test_only_the_proposed_queries_cross_attend_with_the_old_result(threshold, depth, rings):
    torch.manual_seed(0)
    cfg = tiny_config("lite", f"model.proposal_threshold={threshold}", "model.max_queries=512",
                      f"model.proposal_rings={rings}")
    model = build_model(cfg).eval()
    old = _old(model)
    batch = make_batch(cfg, B=2, depth=depth, seed=1)
    with torch.inference_mode():
        before = old(batch, inference=True)
        now = model(batch, inference=True)
        model.static_shapes = True
        static = model(batch, inference=True)
    n = before["proposal"].flatten(1).sum(1)
    if threshold == 0.9474 and not depth:  # some proposed, some not (untrained mono scores lie near 0.947)
        assert (n > 0).all() and (n < 512).all()
    if threshold == 1.0:  # nothing proposed: one slot computed (then the fill), no other
        assert (n == 0).all()
    for out in (now, static):
        assert torch.equal(out["proposal"], before["proposal"])
        _close(out["ssc_logits_coarse"], before["ssc_logits_coarse"], "coarse logits")
        assert torch.equal(out["ssc_logits_coarse"].argmax(1), before["ssc_logits_coarse"].argmax(1))


def test_the_skip_computes_only_the_proposed_prefix(monkeypatch):
    """The cross-attention sees as many queries as the batch's largest proposal count, not
    max_queries (static_shapes: all of them)."""
    torch.manual_seed(0)
    cfg = tiny_config("lite", "model.proposal_threshold=0.9474", "model.max_queries=512")
    model = build_model(cfg).eval()
    seen = []
    model.cross_attn.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[1]))
    batch = make_batch(cfg, B=2, seed=1)
    with torch.inference_mode():
        out = model(batch, inference=True)
        model.static_shapes = True
        model(batch, inference=True)
    assert seen == [int(out["proposal"].flatten(1).sum(1).max()), 512]


def test_mixed_precision_frame_without_proposals_keeps_the_dtype():
    """Under autocast the query volume has the attention's output dtype also when nothing is
    proposed (one slot is computed and replaced by the fill), as before."""
    torch.manual_seed(0)
    cfg = tiny_config("lite", "model.proposal_threshold=1.0")
    model = build_model(cfg).eval()
    old = _old(model)
    batch = make_batch(cfg, seed=3)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        before = old(batch, inference=True)["ssc_logits_coarse"]
        now = model(batch, inference=True)["ssc_logits_coarse"]
    assert now.dtype == before.dtype
    assert torch.equal(now, before)


def test_training_keeps_every_slot_with_the_old_result():
    """Training computes every slot (fixed work per step, all parameters in the graph for DDP),
    with the old outputs and gradients on the same weights; Q_d is projected after the gather."""
    torch.manual_seed(0)
    cfg = tiny_config("lite", "model.proposal_threshold=0.9474")
    model = build_model(cfg).train()
    old = _old(model)
    batch = make_batch(cfg, targets=True, seed=2)
    seen = []
    model.cross_attn.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[1]))
    now, before = model(batch), old(batch)
    assert seen == [cfg.model.max_queries]
    _close(now["ssc_logits"], before["ssc_logits"], "training logits")
    now["ssc_logits"].sum().backward()
    before["ssc_logits"].sum().backward()
    for (name, p), q in zip(model.named_parameters(), old.parameters(), strict=True):
        if p.grad is None:
            assert q.grad is None, name
            continue
        assert torch.allclose(p.grad, q.grad, atol=1e-4, rtol=1e-3), (name, (p.grad - q.grad).abs().max())
    assert model.cross_attn.attn[0].offsets.weight.grad is not None
    assert model.query_proj.weight.grad is not None


def test_nothing_proposed_in_training_still_uses_the_attention():
    torch.manual_seed(0)
    cfg = tiny_config("lite", "model.proposal_threshold=1.0")
    model = build_model(cfg).train()
    out = model(make_batch(cfg, targets=True, seed=2))
    out["ssc_logits"].sum().backward()
    assert model.cross_attn.attn[0].offsets.weight.grad is not None
    assert model.query_proj.weight.grad is not None
