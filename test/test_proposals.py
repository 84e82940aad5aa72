"""Stage-2 proposal selection with per-distance quotas (model/proposals.py)."""
from __future__ import annotations

import torch
from model_fixtures import make_batch, tiny_config

from cigocc_ros.model.cigocc import build_model
from cigocc_ros.model.proposals import ring_balanced, ring_ids


def test_ring_ids_split_distance_into_equal_rings():
    dist = torch.tensor([0.0, 2.4, 2.6, 5.1, 9.9, 10.0])
    assert ring_ids(dist, 4).tolist() == [0, 0, 1, 2, 3, 3]
    assert ring_ids(dist, 1).tolist() == [0] * 6


def test_keys_are_percentiles_within_each_ring_and_ineligible_last():
    # Ring 0 holds high scores, ring 1 low ones: a global top-2 would take only ring 0.
    score = torch.tensor([[0.9, 0.8, 0.7, 0.3, 0.2, 0.1, 0.95]])
    ring = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    eligible = torch.tensor([[True, True, True, True, True, True, False]])
    keys = ring_balanced(score, eligible, ring, 2)
    # Each ring's best voxel gets 1 - 0.5/3, its worst 1 - 2.5/3; the ineligible one -1.
    expected = torch.tensor([[5 / 6, 1 / 2, 1 / 6, 5 / 6, 1 / 2, 1 / 6, -1.0]])
    assert torch.allclose(keys, expected)
    top = set(keys.topk(2, dim=1).indices[0].tolist())
    assert top == {0, 3}, "a top-k of the keys takes the best voxel of every ring"
    assert torch.argsort(score[0], descending=True)[:2].tolist() == [6, 0]


def test_quota_is_proportional_to_each_rings_eligible_voxels():
    g = torch.Generator().manual_seed(0)
    ring = torch.arange(4).repeat_interleave(torch.tensor([100, 200, 300, 400]))
    score = torch.rand(2, 1000, generator=g) + (3 - ring) * 10.0  # near rings score far higher
    eligible = torch.ones(2, 1000, dtype=torch.bool)
    idx = ring_balanced(score, eligible, ring, 4).topk(250, dim=1).indices
    for b in range(2):
        counts = torch.bincount(ring[idx[b]], minlength=4)
        assert (counts - torch.tensor([25, 50, 75, 100])).abs().max() <= 1, counts
        chosen_in_ring3 = score[b, idx[b][ring[idx[b]] == 3]]
        assert chosen_in_ring3.min() >= score[b, ring == 3].topk(100).values.min(), "best of the ring first"


def test_model_with_rings_proposes_only_eligible_voxels_within_the_budget():
    cfg = tiny_config("lite", "model.proposal_rings=4", "model.proposal_threshold=0")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    batch = make_batch(cfg, seed=1)
    with torch.inference_mode():
        prop = model(batch, inference=True)["proposal"][0].flatten() > 0
        _, _, visible = model.in_view(batch["K"], batch["T_cam_grid"], tuple(batch["img"].shape[-2:]))
    assert 0 < int(prop.sum()) <= cfg.model.max_queries
    assert not (prop & ~visible[0]).any(), "only voxels in view are proposed"
    if int(visible.sum()) > cfg.model.max_queries:
        # The budget reaches every ring that has voxels in view.
        rings = ring_ids(model.voxel_dist, 4)
        assert set(rings[prop].tolist()) == set(rings[visible[0]].tolist())


def test_ring_quotas_export_to_onnx_with_parity(tmp_path):
    """One sort, one cumsum and a scatter: the ONNX graph selects the same voxels as torch."""
    from cigocc_ros.inference import OrtForward
    from cigocc_ros.onnx_export import compare_outputs, export_onnx

    cfg = tiny_config("lite", "model.proposal_rings=4", "model.proposal_threshold=0")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    batch = make_batch(cfg, seed=1)
    ort = OrtForward(export_onnx(model, tmp_path / "rings.onnx", stereo=False), torch.device("cpu"))
    with torch.inference_mode():
        ref = model(batch, inference=True)["ssc_logits_coarse"]
    r = compare_outputs(ref.numpy(), ort(batch["img"], batch["K"], batch["T_cam_grid"], None)["coarse"].numpy())
    assert r["max_abs_logit_diff"] < 1e-3 and r["label_agreement"] >= 0.999, r
