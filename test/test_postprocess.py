"""postprocess.py: labels and confidence bit-identical to the first implementation
(test/postprocess_reference.py) on the same logits: real ones of the shipped weights (mono and
stereo, and the segmentation logits), smooth and noisy random fields, exact ties, every slab and
block boundary."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_fixtures import camera, tiny_config
from postprocess_reference import reference_labels_confidence
from postprocess_reference import upsampled_argmax as reference_argmax

from cigocc_ros import postprocess
from cigocc_ros.geometry import crop_or_pad
from cigocc_ros.inference import Predictor, default_weights
from cigocc_ros.model.cigocc import build_model

SCALES = [(2, 2, 1), (1, 1, 2), (2, 2, 4), (2, 2, 2), (4, 4, 1), (8, 8, 1), (2, 1, 2), 2, 4]


def _fields(shape: tuple[int, ...], seed: int) -> list[torch.Tensor]:
    """Smooth logits (a head's output), pure noise (every cell disagrees) and logits on a 0.5
    grid (exact ties between classes and between interpolated values)."""
    g = torch.Generator().manual_seed(seed)
    B, C, x, y, z = shape
    smooth = F.interpolate(torch.randn(B, C, max(2, x // 3), max(2, y // 3), max(1, z // 2), generator=g) * 3,
                           size=(x, y, z), mode="trilinear")
    noise = torch.randn(shape, generator=g) * 4
    ties = (torch.randn(shape, generator=g) * 2).round() / 2
    return [smooth.contiguous(), noise, ties]


def _new(logits: torch.Tensor, grid: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictor.predict's CPU post-processing (labels, confidence) of (1, C, x, y, z) logits."""
    scale = tuple(g // c for g, c in zip(grid, logits.shape[-3:], strict=True))
    arg, conf = postprocess.native_argmax_confidence(logits)
    out = torch.empty((2, *grid), dtype=torch.uint8)
    out[0] = postprocess.upsampled_argmax(logits, scale, arg)[0]
    postprocess.upsampled_confidence(conf, grid, out[1:])
    return out[0], out[1]


@pytest.mark.parametrize("scale", SCALES)
def test_labels_and_confidence_are_the_first_implementations(scale, monkeypatch):
    # Small slabs and blocks: every boundary (and a last, shorter one) is crossed.
    monkeypatch.setattr(postprocess, "SLAB_FLOATS", 700)
    monkeypatch.setattr(postprocess, "BLOCK_FLOATS", 900)
    sx, sy, sz = (scale,) * 3 if isinstance(scale, int) else scale
    for seed, shape in enumerate([(1, 20, 9, 7, 4), (1, 5, 6, 5, 3)]):
        for logits in _fields(shape, seed):
            grid = (shape[2] * sx, shape[3] * sy, shape[4] * sz)
            labels, conf = _new(logits, grid)
            ref_labels, ref_conf = reference_labels_confidence(logits, grid)
            assert torch.equal(labels, ref_labels)
            assert torch.equal(conf, ref_conf)
    batch = _fields((3, 6, 5, 4, 3), 7)[0]  # several frames at once: upsampled_argmax takes batches
    assert torch.equal(postprocess.upsampled_argmax(batch, scale), reference_argmax(batch, scale))


def test_native_argmax_and_confidence_equal_torchs_bit_for_bit(monkeypatch):
    monkeypatch.setattr(postprocess, "SLAB_FLOATS", 1000)
    # Slabs of 8 x rows of 24 voxels and a shorter last one; of 16 rows of 12 voxels and a last
    # one ending in a remainder no SIMD vector fills; one slab of rows of 30 voxels.
    for logits in _fields((2, 20, 19, 4, 6), 3) + _fields((2, 20, 19, 4, 3), 5) + _fields((1, 20, 11, 6, 5), 4):
        arg, conf = postprocess.native_argmax_confidence(logits)
        assert torch.equal(arg, logits.max(1).indices.to(torch.uint8))
        assert torch.equal(conf, logits.softmax(1).amax(1, keepdim=True))


@pytest.fixture(scope="module")
def shipped():
    return Predictor.from_checkpoint(default_weights(), device="cpu")


def _network_logits(pred: Predictor, rgb, K, T, depth=None, conf=None) -> dict:
    """The forward exactly as predict() feeds it (crop, uint8 -> [0, 1], depth and confidence)."""
    img, K2 = crop_or_pad(rgb, K, pred.image_size)
    x = torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).float().mul_(1.0 / 255.0)
    Kt, Tt = torch.from_numpy(K2).float()[None], torch.from_numpy(T).float()[None]
    d = c = None
    if depth is not None:
        d = torch.from_numpy(crop_or_pad(depth, K, pred.image_size)[0])[None, None]
        c = torch.from_numpy(crop_or_pad(conf, K, pred.image_size)[0]).clamp(0, 1)[None, None]
    with torch.inference_mode():
        return pred.forward(x, Kt, Tt, d, c)


@pytest.mark.parametrize("stereo", [False, True])
def test_shipped_weights_on_a_real_frame_give_the_first_implementations_output(shipped, kitti_samples, stereo):
    """The shipped lite weights on KITTI 00/000000 (mono, and stereo through the pseudo-LiDAR
    path): Predictor.predict's labels, confidence and segmentation equal the first
    implementation's on the network's own logits, voxel for voxel."""
    from cigocc_ros.data import semantic_kitti as sk
    from cigocc_ros.geometry import camera_from_calib, stereo_baseline
    from cigocc_ros.stereo import StereoDepth

    seq = kitti_samples / "sequences" / "00"
    calib = sk.read_calib(seq / "calib.txt")
    rgb = sk.read_image(seq / "image_2" / "000000.png")
    cam = camera_from_calib(calib["P2"], calib["Tr"], rgb.shape[:2])
    depth = conf = None
    if stereo:
        res = StereoDepth(cam.K[0, 0], stereo_baseline(calib["P2"], calib["P3"])).match(
            rgb, sk.read_image(seq / "image_3" / "000000.png"))
        depth, conf = res.depth, res.confidence
    pred = shipped.predict(rgb, cam.K, cam.T_cam_grid, depth=depth, depth_conf=conf, segmentation=True)
    out = _network_logits(shipped, rgb, cam.K, cam.T_cam_grid, depth, conf)
    labels, confidence = reference_labels_confidence(out["coarse"], shipped.grid_size)
    np.testing.assert_array_equal(pred.labels, labels.numpy())
    np.testing.assert_array_equal(pred.confidence, confidence.numpy())
    s = shipped.cfg.model.feat_stride
    seg = reference_argmax(out["seg"].float().unsqueeze(-1), (s, s, 1))[0, ..., 0]
    H, W = shipped.image_size
    np.testing.assert_array_equal(shipped.segmentation_labels(out["seg"]), seg[:H, :W].numpy())
    # Real logits disagree across many dual cells: the exact path is exercised, not bypassed.
    arg = out["coarse"][0].argmax(0)
    assert (arg[1:] != arg[:-1]).float().mean() > 0.01


def test_predict_wires_the_same_post_processing():
    torch.manual_seed(0)
    cfg = tiny_config()
    pred = Predictor(cfg, build_model(cfg), device="cpu")
    H, W = 75, 250
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    K, T = (a[0].double().numpy() for a in camera(1, H, W))
    p = pred.predict(rgb, K, T)
    labels, conf = reference_labels_confidence(_network_logits(pred, rgb, K, T)["coarse"], pred.grid_size)
    np.testing.assert_array_equal(p.labels, labels.numpy())
    np.testing.assert_array_equal(p.confidence, conf.numpy())
