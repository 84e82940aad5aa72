"""Shapes of every stage (lite and full at reduced size), ablation switches, the lift's geometry,
the depth encoding, and that a few optimisation steps lower the loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from model_fixtures import camera, make_batch, tiny_config

from cigocc_ros.geometry import project
from cigocc_ros.model.cigocc import build_model
from cigocc_ros.model.depth import bin_centres, blend_external, external_distribution, soft_one_hot
from cigocc_ros.model.lift import DepthLift, project_to_image
from cigocc_ros.model.losses import compute_losses
from cigocc_ros.model.pseudo_lidar import PseudoLidar, StereoFreeSpace, pool_evidence


@pytest.mark.parametrize("name", ["lite", "full"])
def test_stage_shapes(name):
    torch.manual_seed(0)
    cfg = tiny_config(name, "model.max_queries=32")
    model = build_model(cfg).eval()
    m, (X, Y, Z) = cfg.model, cfg.grid.size
    B, (H, W) = 2, m.image_size
    batch = make_batch(cfg, B, depth=True)
    with torch.no_grad():
        feats = model.encoder(batch["img"])
        assert [f.shape[1] for f in feats] == [m.embed_dims] * len(m.backbone_out_indices)
        for s, f in zip(model.encoder.strides, feats, strict=True):
            assert f.shape[-2:] == (-(-H // s), -(-W // s))
        h, w = feats[model.fusion_level].shape[-2:]
        br = model.image_branches(batch["img"], batch["depth"])
        assert br["context"].shape == (B, m.unet_channels, h, w)
        assert br["depth_prob"].shape == (B, m.depth_bins, h, w)
        torch.testing.assert_close(br["depth_prob"].sum(1), torch.ones(B, h, w))
        vol, mass = model.lift(br["context"], br["depth_prob"], batch["K"], batch["T_cam_grid"])
        cX, cY, cZ = X // m.coarse_downsample, Y // m.coarse_downsample, Z // m.coarse_downsample
        assert vol.shape == (B, m.unet_channels, cX, cY, cZ) and mass.shape == (B, 1, cX, cY, cZ)
        sem = br["seg_logits"].softmax(1)
        pl = model.pseudo_lidar(batch["depth"], None, batch["K"], batch["T_cam_grid"], sem)
        assert pl.shape == (B, 1 + m.num_classes, *model.native) and pl[:, 0].sum() > 0
        torch.testing.assert_close(pl[:, 1:].sum(1), pl[:, 0])  # each point adds probabilities summing to 1
        pooled = pool_evidence(pl, tuple(m.head_subdivide))
        torch.testing.assert_close(torch.expm1(pooled[:, 0]).sum(), pl[:, 0].sum())
        unet_in = torch.cat([vol, mass, pooled], 1)
        assert model.unet(unet_in).shape == (B, m.unet_channels, cX, cY, cZ)
        out = model(batch)
        out_inf = model(batch, inference=True)
    assert out["seg_logits"].shape == (B, 20, h, w)
    assert out["depth_logits"].shape == (B, m.depth_bins, h, w)
    assert out["aux_logits"].shape == (B, 20, X // 2, Y // 2, Z // 2)
    assert out["ssc_logits"].shape == (B, 20, X, Y, Z)
    assert out["proposal"].shape == (B, cX, cY, cZ)
    assert 0 < out["proposal"].sum(dim=(1, 2, 3)).min() and out["proposal"].sum(dim=(1, 2, 3)).max() <= 32
    assert set(out_inf) == {"ssc_logits_coarse", "proposal", "seg_logits"}  # seg: the node's ~/segmentation
    torch.testing.assert_close(out_inf["seg_logits"], out["seg_logits"])
    # The full-grid logits are the coarse ones upsampled (same network, two output forms).
    up = torch.nn.functional.interpolate(out_inf["ssc_logits_coarse"], size=(X, Y, Z), mode="trilinear",
                                         align_corners=False)
    torch.testing.assert_close(up, out["ssc_logits"])


def test_ablation_switches_remove_the_branches():
    base = build_model(tiny_config())
    no_seg = build_model(tiny_config("lite", "model.use_segmentation=false"))
    no_depth = build_model(tiny_config("lite", "model.use_depth=false"))
    assert no_seg.seg_head is None and not any(n.startswith("seg_head") for n, _ in no_seg.named_parameters())
    assert no_depth.depth_head is None and not any(n.startswith("depth_head") for n, _ in no_depth.named_parameters())
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert n(no_seg) < n(base) and n(no_depth) < n(base)
    # Without depth the cross-attention samples (u, v) only: 2 offset coordinates per point.
    attn = no_depth.cross_attn.attn[0]
    assert attn.nd == 2 and attn.offsets.out_features == attn.heads * attn.levels * attn.points * 2
    for model, missing in ((no_seg, "seg_logits"), (no_depth, "depth_logits")):
        cfg = model.cfg
        batch = make_batch(cfg, 1, targets=True, depth=True)
        out = model.eval()(batch)
        assert missing not in out and out["ssc_logits"].shape[-3:] == tuple(cfg.grid.size)
        losses = compute_losses(out, batch, cfg)
        assert ("distill_bce" in losses) == (missing != "seg_logits")
        assert ("depth" in losses) == (missing != "depth_logits")


def test_lift_puts_a_frustum_point_in_its_voxel():
    """One feature pixel with all its depth mass in one bin lands in the voxel that the
    geometry module's projection puts that 3D point in, and nowhere else."""
    size, vs, origin = (16, 16, 4), 3.2, (0.0, -25.6, -2.0)
    bins, stride, (H, W) = 28, 8, (64, 192)
    lift = DepthLift(size, vs, origin, 2.0, 58.0, bins, stride)
    K, T = camera(1, H, W)
    h, w = H // stride, W // stride
    i, j, d = 3, 13, 9
    ctx = torch.zeros(1, 3, h, w)
    ctx[0, :, i, j] = torch.tensor([1.0, 2.0, 3.0])
    prob = torch.zeros(1, bins, h, w)
    prob[0, d, i, j] = 1.0
    vol, mass = lift(ctx, prob, K, T)
    # Expected voxel: back-project the cell centre at the bin's depth with numpy.
    depth = float(bin_centres(2.0, 58.0, bins)[d])
    uv1 = np.array([j * stride + (stride - 1) / 2, i * stride + (stride - 1) / 2, 1.0])
    cam = depth * np.linalg.solve(K[0].double().numpy(), uv1)
    grid_pt = np.linalg.solve(T[0].double().numpy(), np.append(cam, 1.0))[:3]
    uv_back, z_back = project(grid_pt[None], K[0].double().numpy(), T[0].double().numpy())
    np.testing.assert_allclose(uv_back[0], uv1[:2], atol=1e-6)
    assert z_back[0] == pytest.approx(depth)
    vox = tuple(int(k) for k in np.floor((grid_pt - np.array(origin)) / vs))
    nz = mass[0, 0].nonzero().tolist()
    assert nz == [list(vox)]
    torch.testing.assert_close(vol[0, :, vox[0], vox[1], vox[2]], torch.tensor([1.0, 2.0, 3.0]))
    assert vol.abs().sum().item() == pytest.approx(6.0)


def test_external_depth_soft_one_hot_and_blend():
    depth = torch.tensor([[[[7.3, 0.0], [100.0, 2.2]]]])
    onehot, in_range = soft_one_hot(depth, 2.0, 58.0, 56)
    centres = bin_centres(2.0, 58.0, 56)
    assert in_range.squeeze().tolist() == [[True, False], [False, True]]
    torch.testing.assert_close((onehot[0, :, 0, 0] * centres).sum(), torch.tensor(7.3))
    torch.testing.assert_close(onehot[0, :, 0, 0].sum(), torch.tensor(1.0))
    assert onehot[0, :, 0, 1].sum() == 0 and onehot[0, :, 1, 0].sum() == 0
    prob = torch.full((1, 56, 2, 2), 1 / 56)
    blended = blend_external(prob, depth, 2.0, 58.0, 0.5)
    torch.testing.assert_close(blended.sum(1), torch.ones(1, 2, 2))
    torch.testing.assert_close(blended[0, :, 0, 1], prob[0, :, 0, 1])  # no value: untouched
    torch.testing.assert_close(blended[0, :, 0, 0], 0.5 * prob[0, :, 0, 0] + 0.5 * onehot[0, :, 0, 0])


def test_external_depth_keeps_every_depth_of_a_cell():
    """A stride-4 cell on a car's edge: half its pixels at 10.5 m, half at 40.5 m. The distribution
    holds both (not 25 m, where nothing is); confidence weighs the pixels; the weight is the
    cell's confident share over a quarter of its pixels, capped at 1."""
    centres = bin_centres(2.0, 58.0, 56)
    depth = torch.zeros(1, 1, 4, 8)
    depth[..., :, :2], depth[..., :, 2:4] = 10.5, 40.5  # cell (0, 0): two surfaces (bin centres)
    depth[..., 0, 4] = 20.0  # cell (0, 1): one pixel of 16
    conf = torch.ones_like(depth)
    dist, weight = external_distribution(depth, conf, (1, 2), 2.0, 58.0, 56)
    torch.testing.assert_close(dist.sum(1), torch.ones(1, 1, 2))
    near, far = centres.sub(10.5).abs().argmin(), centres.sub(40.5).abs().argmin()
    assert dist[0, near, 0, 0] == pytest.approx(0.5, abs=0.01) and dist[0, far, 0, 0] == pytest.approx(0.5, abs=0.01)
    assert dist[0, centres.sub(25.0).abs().argmin(), 0, 0] == 0
    torch.testing.assert_close(weight, torch.tensor([[[[1.0, 1 / 4]]]]))
    conf[..., :, 2:4] = 0.25  # the far surface matched less surely
    dist, _ = external_distribution(depth, conf, (1, 2), 2.0, 58.0, 56)
    assert dist[0, near, 0, 0] == pytest.approx(0.8, abs=0.01)


def test_external_depth_changes_the_prediction():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg).eval()
    batch = make_batch(cfg, 1, depth=True)
    with torch.no_grad():
        with_depth = model(batch)["ssc_logits"]
        without = model({k: v for k, v in batch.items() if k != "depth"})["ssc_logits"]
    assert not torch.allclose(with_depth, without)


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg).train()
    batch = make_batch(cfg, 1, targets=True, depth=True, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        terms = compute_losses(model(batch), batch, cfg)
        terms["total"].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(terms["total"].item())
    assert losses[-1] < 0.9 * losses[0], losses
    # Every branch is trained: the segmentation, depth and both attention stages get gradients.
    for name in ("seg_head.classifier.weight", "depth_head.classifier.weight",
                 "cross_attn.attn.0.offsets.weight", "self_attn.0.offsets.weight", "head.body.3.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="feat_stride"):
        build_model(tiny_config("lite", "model.feat_stride=4"))
    with pytest.raises(ValueError, match="coarse_downsample"):
        build_model(tiny_config("lite", "model.coarse_downsample=3"))
    with pytest.raises(ValueError, match="unet_block"):
        build_model(tiny_config("lite", "model.unet_block=sparse"))


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_mixed_precision_forward_matches_fp32():
    """The CUDA path runs under bf16 autocast; CPU autocast exercises the same dtype handling
    (fp32 geometry, lift sums and sampling coordinates inside a bf16 network)."""
    torch.manual_seed(0)
    # Which voxels stage 2 attends is a top-k of near-tied scores in an untrained network, and
    # bf16 rounding reorders near ties: that is selection, not dtype handling. Every voxel
    # attends here (no top-k, no threshold), so the comparison is about the latter.
    cfg = tiny_config("lite", "model.max_queries=1000000", "model.proposal_threshold=-1.0")
    model = build_model(cfg).eval()
    batch = make_batch(cfg, 1, depth=True)
    # oneDNN's bf16 conv3d (torch 2.14.1, CPU only) can return NaN once earlier training steps
    # in the process have run; the native kernels check our dtype handling without that bug.
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        ref = model(batch)["ssc_logits"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(batch)
    assert out["ssc_logits"].dtype == torch.bfloat16 and torch.isfinite(out["ssc_logits"]).all()
    assert (out["ssc_logits"].float() - ref).abs().max() < 0.1 * ref.abs().max()
    assert (out["ssc_logits"].float().argmax(1) == ref.argmax(1)).float().mean() > 0.95


def test_training_at_half_resolution_with_ssc_scale():
    """loss.ssc_scale=2: in training the head's logits (and the main SSC losses) are at grid/2,
    never coarser than the head's own resolution; evaluation and inference keep the full grid."""
    from cigocc_ros.config import ssc_train_factors, target_key
    from cigocc_ros.data.semantic_kitti import downsample_labels

    torch.manual_seed(0)
    for subdivide, factors in (("[1, 1, 1]", (2, 2, 2)), ("[1, 2, 2]", (2, 1, 1))):
        cfg = tiny_config("lite", "loss.ssc_scale=2", f"model.head_subdivide={subdivide}")
        assert ssc_train_factors(cfg) == factors
        model = build_model(cfg)
        batch = make_batch(cfg, 1, targets=True)
        key = target_key(factors)
        batch[key] = torch.from_numpy(downsample_labels(batch["target"][0].numpy(), factors).astype(np.int64))[None]
        X, Y, Z = cfg.grid.size
        out = model.train()(batch)
        assert out["ssc_logits"].shape[-3:] == (X // factors[0], Y // factors[1], Z // factors[2])
        losses = compute_losses(out, batch, cfg)
        assert torch.isfinite(losses["total"]) and "ssc_ce" in losses
        with torch.no_grad():
            assert model.eval()(batch)["ssc_logits"].shape[-3:] == (X, Y, Z)


def test_head_subdivide_places_each_sub_voxel():
    """Channel ((a sy + b) sz + c) n_cls + k of coarse voxel (i, j, l) is class k's logit of
    grid-native voxel (i sx + a, j sy + b, l sz + c)."""
    from cigocc_ros.model.head import OccupancyHead

    sub, n = (2, 1, 3), 4
    head = OccupancyHead(8, n, (4, 3, 6), sub)
    head.body = torch.nn.Identity()  # feed the final-layer channels directly
    x = torch.randn(1, n * 6, 2, 3, 2)
    out = head.native(x)
    assert out.shape == (1, n, 4, 3, 6)
    for a in range(2):
        for c in range(3):
            for k in range(n):
                ch = (a * 3 + c) * n + k
                torch.testing.assert_close(out[0, k, a::2, :, c::3], x[0, ch])
    with pytest.raises(ValueError, match="head_subdivide"):
        build_model(tiny_config("lite", "model.head_subdivide=[3, 1, 1]"))


def test_learned_depth_blend_starts_fixed_and_trains():
    torch.manual_seed(0)
    cfg = tiny_config("lite", "model.external_depth_blend=learned", "model.external_depth_weight=0.3")
    model = build_model(cfg).train()
    batch = make_batch(cfg, 1, targets=True, depth=True)
    batch["depth"][..., : batch["depth"].shape[-1] // 2] = 0  # no stereo value on the left half
    out = model(batch)
    w = out["depth_weight"]
    has = w > 0
    assert has.any() and (~has).any()  # cells without a stereo value are untouched
    # An untrained gate is the fixed blend: 0.3 times the cell's share of stereo pixels.
    m = cfg.model
    _, valid = external_distribution(batch["depth"], None, w.shape[-2:], m.depth_min, m.depth_max, m.depth_bins)
    torch.testing.assert_close(w, 0.3 * valid)
    assert (valid[has] == 1).float().mean() > 0.5
    compute_losses(out, batch, cfg)["total"].backward()
    assert model.depth_gate.conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="external_depth_blend"):
        build_model(tiny_config("lite", "model.external_depth_blend=mean"))


def test_lift_counts_frustum_points_and_density_scores():
    torch.manual_seed(0)
    cfg = tiny_config("lite", "model.proposal_score=density", "model.proposal_threshold=0")
    model = build_model(cfg).eval()
    batch = make_batch(cfg, 1)
    with torch.no_grad():
        br = model.image_branches(batch["img"], None)
        vol, mass, count = model.lift(br["context"], br["depth_prob"], batch["K"], batch["T_cam_grid"], count=True)
        h, w = br["context"].shape[-2:]
        index = model.lift.voxel_index(batch["K"], batch["T_cam_grid"], (h, w))
        assert count.sum() == (index < count.numel()).sum()  # every frustum point inside, once
        assert (mass <= count + 1e-4).all()  # a point adds at most p = 1 to the mass
        assert model(batch)["proposal"].sum() > 0
    with pytest.raises(ValueError, match="proposal_score"):
        build_model(tiny_config("lite", "model.proposal_score=nearest"))


def test_pseudo_lidar_counts_each_stereo_pixel_in_its_voxel():
    """A pixel with depth d lands in the voxel of d K^-1 [u, v, 1] carried into the grid frame,
    adding its confidence; pixels without depth or outside the volume add nothing."""
    K, T = camera(1, 8, 16)
    pl = PseudoLidar((10, 10, 4), (1.0, 1.0, 0.5), (0.0, -5.0, -1.0))
    depth = torch.zeros(1, 1, 8, 16)
    conf = torch.full_like(depth, 0.5)
    depth[0, 0, 3, 5], depth[0, 0, 6, 2] = 7.3, 80.0  # the second is beyond the volume
    feats = torch.zeros(1, 3, 2, 4)  # stride-4 cells; pixel (3, 5) is in cell (0, 1)
    feats[0, :, 0, 1] = torch.tensor([0.2, 0.7, 0.1])
    vol = pl(depth, conf, K, T, feats)
    counts = vol[:, :1]
    cam = 7.3 * torch.linalg.inv(K[0]) @ torch.tensor([5.0, 3.0, 1.0])
    grid = torch.linalg.inv(T[0]) @ torch.cat([cam, torch.ones(1)])
    vox = torch.floor((grid[:3] - torch.tensor([0.0, -5.0, -1.0])) / torch.tensor([1.0, 1.0, 0.5])).long()
    assert counts.sum() == pytest.approx(0.5)
    assert counts[0, 0, vox[0], vox[1], vox[2]] == pytest.approx(0.5)
    torch.testing.assert_close(vol[0, 1:, vox[0], vox[1], vox[2]], 0.5 * torch.tensor([0.2, 0.7, 0.1]))
    assert vol[0, 1:].sum() == pytest.approx(0.5)
    assert pl(depth, None, K, T).sum() == pytest.approx(1.0)  # no confidence: 1 per pixel


def test_stereo_free_space_is_the_signed_ray_distance_to_the_nearest_stereo_surface():
    """A stereo wall at 6 m over the left half of the image: voxels whose centre projects there
    are "in front" by (6 - z) / sigma, "behind" by (z - 6) / sigma (each clipped at 3, over 3);
    voxels seeing the right half (no stereo) or off the image are zero; a nearer point in a
    pixel block wins (a voxel is in front only of everything stereo saw there)."""
    H, W = 8, 16
    K, T = camera(1, H, W)
    size, vs, origin = (10, 10, 4), (1.0, 1.0, 0.5), (0.0, -5.0, -1.0)
    fs = StereoFreeSpace(size, vs, origin, cell=4, sigma0=0.3, quad=0.0)
    depth = torch.zeros(1, 1, H, W)
    depth[..., : W // 2] = 6.0
    depth[0, 0, 0, 0] = 4.0  # nearer, in block (0, 0)
    out = fs(depth, K, T)[0]  # (2, X, Y, Z)
    uv, z = (t[0] for t in project_to_image(fs.centres, K, T))
    px = torch.floor(uv + 0.5)
    ok = (z > 0) & (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H)
    left = ok & (px[:, 0] < W // 2)
    near_block = left & (px[:, 0] < 4) & (px[:, 1] < 4)
    ds = torch.where(near_block, torch.tensor(4.0), torch.tensor(6.0))
    r = (ds - z) / 0.3
    want = torch.zeros(2, z.numel())
    want[0] = torch.where(left, r.clamp(0, 3) / 3, torch.zeros_like(r))
    want[1] = torch.where(left, (-r).clamp(0, 3) / 3, torch.zeros_like(r))
    assert left.any() and (ok & ~left).any() and (left & (r > 0)).any() and (left & (r < 0)).any()
    torch.testing.assert_close(out.reshape(2, -1), want)
    assert fs(torch.zeros(1, 1, H, W), K, T).abs().sum() == 0  # no stereo map: nothing


def test_free_space_channels_start_at_zero_and_load_weights_trained_without_them(tmp_path):
    """model.stereo_free_space adds evidence.free (zero at start): the logits equal the model's
    without it, and its checkpoint loads as a partial file; mono never computes it."""
    from cigocc_ros.model.checkpoint import load_weights, save_checkpoint
    torch.manual_seed(0)
    cfg = tiny_config()
    base = build_model(cfg).eval()
    path = save_checkpoint(tmp_path / "base.safetensors", base, cfg)
    cfg_fs = tiny_config("lite", "model.stereo_free_space=true")
    model = build_model(cfg_fs).eval()
    loaded = load_weights(model, path, partial="file")
    assert "evidence.free.weight" not in loaded and (model.evidence.free.weight == 0).all()
    batch = make_batch(cfg, 1, depth=True)
    with torch.no_grad():
        torch.testing.assert_close(model(batch, inference=True)["ssc_logits_coarse"],
                                   base(batch, inference=True)["ssc_logits_coarse"])
        model.evidence.free.weight[0, 0] = 50.0  # "empty" wins wherever stereo saw through
        after = model(batch, inference=True)["ssc_logits_coarse"]
        free = model.free_space(batch["depth"], batch["K"], batch["T_cam_grid"])[0, 0]
        model.evidence.free.bias[3] = 7.0  # a stereo map shifts class 3 everywhere; mono does not
        shifted = model(batch, inference=True)["ssc_logits_coarse"]
        mono = {k: v for k, v in batch.items() if k != "depth"}
        none = dict(batch, depth=torch.zeros_like(batch["depth"]))  # a map without a valid pixel is mono
        torch.testing.assert_close(model(none, inference=True)["ssc_logits_coarse"],
                                   base(mono, inference=True)["ssc_logits_coarse"])
    assert (free > 0).any()
    assert (after.argmax(1)[0][free > 0.5] == 0).all()
    torch.testing.assert_close(shifted[:, 3], after[:, 3] + 7.0)
    with pytest.raises(ValueError, match="stereo_free_space needs model.pseudo_lidar"):
        build_model(tiny_config("lite", "model.stereo_free_space=true", "model.pseudo_lidar=false"))


def test_stereo_evidence_reaches_the_head_and_mono_skips_it():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg).eval()
    batch = make_batch(cfg, 1, depth=True)
    mono = {k: v for k, v in batch.items() if k != "depth"}
    with torch.no_grad():
        before = model(batch, inference=True)["ssc_logits_coarse"]
        ref_mono = model(mono, inference=True)["ssc_logits_coarse"]
        model.evidence.conv.weight[0, 0] = -50.0  # "empty" loses wherever stereo put a point
        after = model(batch, inference=True)["ssc_logits_coarse"]
        mono_after = model(mono, inference=True)["ssc_logits_coarse"]
        counts = model.pseudo_lidar(batch["depth"], None, batch["K"], batch["T_cam_grid"])[0, 0]  # features do not move points
    has = counts > 0
    assert has.any() and (~has).any()
    assert (after.argmax(1)[0][has] != 0).all()
    torch.testing.assert_close(after[0][:, ~has], before[0][:, ~has])
    torch.testing.assert_close(mono_after, ref_mono)  # no stereo map: the evidence term is absent
