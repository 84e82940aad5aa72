"""bench/flops.py: counting on fake tensors gives a real forward's FLOPs, and the fixed-shape
count with n slots is inference with n proposed queries (issue 23)."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from model_fixtures import make_batch, tiny_config

from cigocc_ros.model.cigocc import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import flops  # noqa: E402


def test_fake_counts_equal_real_ones_and_slots_are_proposals():
    torch.manual_seed(0)
    cfg = tiny_config("lite", "model.proposal_threshold=0.9474", "model.max_queries=512")
    model = build_model(cfg).eval()
    batch = make_batch(cfg, seed=1)
    real, _ = flops.count(model, batch, fake=False)  # the model's own path: the proposed queries
    with torch.inference_mode():
        proposed = int(model(batch, inference=True)["proposal"].sum())
    assert 0 < proposed < 512
    fake, stages = flops.count(model, batch, proposed)
    assert fake == real
    every, _ = flops.count(model, batch, 512)
    assert flops.count(model, batch, 512, fake=False)[0] == every > real
    assert model.static_shapes is False and model.cfg.model.max_queries == 512  # restored
    assert {"encoder", "unet", "cross_attn", "self_attn", "head"} <= set(stages)
    assert sum(stages.values()) <= fake
