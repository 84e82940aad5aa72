"""Predictor: the node's inference API (crop/pad, dtypes, exact labels, errors)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_fixtures import camera, tiny_config

from cigocc_ros.geometry import crop_or_pad
from cigocc_ros.inference import Predictor, upsampled_argmax
from cigocc_ros.model.checkpoint import save_checkpoint
from cigocc_ros.model.cigocc import build_model


@pytest.mark.parametrize("scale", [2, 4, (4, 4, 1), (2, 1, 2)])
def test_upsampled_argmax_is_the_argmax_of_trilinear_upsampling(scale):
    sx, sy, sz = (scale,) * 3 if isinstance(scale, int) else scale
    g = torch.Generator().manual_seed(sx * 9 + sy * 3 + sz)
    # Smooth fields (like a head's output) and pure noise (every cell disagrees).
    smooth = F.interpolate(torch.randn(2, 6, 3, 3, 2, generator=g) * 3, size=(9, 7, 4), mode="trilinear")
    noise = torch.randn(1, 5, 4, 3, 5, generator=g)
    for logits in (smooth, noise):
        x, y, z = logits.shape[-3:]
        ref = F.interpolate(logits, size=(x * sx, y * sy, z * sz), mode="trilinear", align_corners=False).argmax(1)
        assert torch.equal(upsampled_argmax(logits, scale), ref.to(torch.uint8))


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    cfg = tiny_config()
    return Predictor(cfg, build_model(cfg), device="cpu")


def _frame(H=75, W=250, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    K, T = camera(1, H, W)
    return img, K[0].double().numpy(), T[0].double().numpy()


def test_segmentation_is_the_segmentation_branch_on_the_frame_the_model_saw(predictor):
    """predict(segmentation=True): the labels `cigocc segment` gives for the cropped frame (argmax
    of the bilinearly upsampled stride-8 logits), put back into the input frame; the rows the
    crop removed are 0."""
    from cigocc_ros.model.segmenter import ImageSegmenter
    from cigocc_ros.segmentation_inference import SegmentationPredictor

    img, K, T = _frame()  # 75 x 250 for a 64 x 192 model: 11 rows cropped at the top, 29 | 29 columns
    pred = predictor.predict(img, K, T, segmentation=True)
    assert pred.segmentation.shape == img.shape[:2] and pred.segmentation.dtype == np.uint8
    seg = ImageSegmenter(predictor.cfg)
    seg.load_state_dict({k: v for k, v in predictor.model.state_dict().items()
                         if k.startswith(("encoder.", "seg_head."))})
    crop, _ = crop_or_pad(img, K, predictor.cfg.model.image_size)
    ref = SegmentationPredictor(seg, "cpu").labels(crop)
    np.testing.assert_array_equal(pred.segmentation[11:, 29:-29], ref)
    assert (pred.segmentation[:11] == 0).all() and (pred.segmentation[:, :29] == 0).all()
    assert predictor.predict(img, K, T).segmentation is None


def test_predict_matches_the_network_on_the_cropped_frame(predictor):
    img, K, T = _frame()
    pred = predictor.predict(img, K, T)
    X, Y, Z = predictor.cfg.grid.size
    assert pred.labels.shape == pred.confidence.shape == (X, Y, Z)
    assert pred.labels.dtype == np.uint8 and pred.confidence.dtype == np.uint8
    assert pred.labels.max() < 20 and pred.inference_ms > 0
    # The same frame through the training-time forward: crop by hand, argmax of full logits.
    crop, K2 = crop_or_pad(img, K, predictor.cfg.model.image_size)
    batch = {"img": torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255,
             "K": torch.from_numpy(K2).float()[None], "T_cam_grid": torch.from_numpy(T).float()[None]}
    with torch.no_grad():
        logits = predictor.model(batch)["ssc_logits"][0]
    assert np.array_equal(pred.labels, logits.argmax(0).numpy().astype(np.uint8))
    conf = logits.softmax(0).amax(0).numpy() * 255
    assert np.abs(pred.confidence.astype(float) - conf).mean() < 8  # interpolated at coarse res


def test_small_frames_are_padded_and_depth_is_used(predictor):
    img, K, T = _frame(H=40, W=100, seed=1)
    depth = np.where(np.random.default_rng(2).random((40, 100)) < 0.5, 12.0, 0.0).astype(np.float32)
    a = predictor.predict(img, K, T)
    b = predictor.predict(img, K, T, depth=depth)
    assert a.labels.shape == b.labels.shape == tuple(predictor.cfg.grid.size)
    assert not np.array_equal(a.confidence, b.confidence)


def test_bad_inputs_are_named(predictor):
    img, K, T = _frame()
    with pytest.raises(ValueError, match="image_rgb"):
        predictor.predict(img.astype(np.float32), K, T)
    with pytest.raises(ValueError, match="image_rgb"):
        predictor.predict(img[..., 0], K, T)
    with pytest.raises(ValueError, match="K must"):
        predictor.predict(img, K[:2], T)
    with pytest.raises(ValueError, match="T_cam_grid"):
        predictor.predict(img, K, np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="depth"):
        predictor.predict(img, K, T, depth=np.zeros((3, 3), np.float32))


def test_from_checkpoint_and_device_choice(tmp_path, predictor):
    path = save_checkpoint(tmp_path / "m.safetensors", predictor.model, predictor.cfg)
    loaded = Predictor.from_checkpoint(path, device="cpu")
    img, K, T = _frame(seed=4)
    assert np.array_equal(loaded.predict(img, K, T).labels, predictor.predict(img, K, T).labels)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            Predictor(predictor.cfg, predictor.model, device="cuda")
        assert Predictor(predictor.cfg, predictor.model, device="auto").device.type == "cpu"
    with pytest.raises(ValueError, match="device"):
        Predictor(predictor.cfg, predictor.model, device="tpu")
