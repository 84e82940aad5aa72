"""ONNX export (onnx_export.py) and the ONNX Runtime backend of the Predictor.

Parity tolerance (docs/onnx.md): torch and ONNX Runtime, both fp32 on the CPU, same input. The
predicted full-grid labels agree on at least 99.9 % of the voxels. The coarse logits differ by
at most 1e-3 on a tiny random model (measured ~1e-5) and at most 0.05 with the shipped lite
weights on a real KITTI frame (logits up to about 7; measured 0.018 at the worst voxel, 1e-2 at
the 99.99th percentile: trained features are sharp, so the different summation order and
sampling arithmetic of the two runtimes show more).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import make_batch, tiny_config

from cigocc_ros.inference import OrtForward, Predictor, default_weights
from cigocc_ros.model.cigocc import build_model
from cigocc_ros.onnx_export import compare_outputs, export_onnx, small_inverse

LOGIT_ATOL = 1e-3  # tiny random model
LOGIT_ATOL_TRAINED = 0.05  # shipped lite weights, real frame
MIN_LABEL_AGREEMENT = 0.999


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_small_inverse_matches_linalg_inv(n):
    g = torch.Generator().manual_seed(n)
    A = torch.randn(6, n, n, generator=g, dtype=torch.float64) + 2 * torch.eye(n, dtype=torch.float64)
    assert torch.allclose(small_inverse(A), torch.linalg.inv(A), atol=1e-10)


def test_small_inverse_of_a_calibration_without_pivots():
    """KITTI's velodyne -> camera rotation has zeros on its diagonal (no pivot-free elimination)."""
    T = torch.tensor([[0.0, -1, 0, 0.1], [0, 0, -1, -0.08], [1, 0, 0, -0.27], [0, 0, 0, 1]])
    K = torch.tensor([[707.0, 0, 601.9], [0, 707.0, 183.1], [0, 0, 1]])
    assert torch.allclose(small_inverse(T) @ T, torch.eye(4), atol=1e-6)
    assert torch.allclose(small_inverse(K) @ K, torch.eye(3), atol=1e-6)
    with pytest.raises(ValueError, match="size <= 4"):
        small_inverse(torch.eye(5))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A tiny random model (lite architecture, with the stereo free-space term, its weights
    non-zero so that the export must compute it) exported with the depth input."""
    torch.manual_seed(0)
    model = build_model(tiny_config("lite", "model.stereo_free_space=true")).eval()
    with torch.no_grad():
        model.evidence.free.weight.normal_(0, 2.0)
        model.evidence.free.bias.normal_(0, 2.0)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", stereo=True)
    return model, path


def test_tiny_export_matches_torch_mono_and_stereo(tiny_onnx):
    model, path = tiny_onnx
    ort = OrtForward(path, torch.device("cpu"))
    assert ort.takes_depth and ort.cfg == model.cfg
    assert model.static_shapes is False  # the export computes every query slot, then restores the flag
    batch = make_batch(model.cfg, depth=True, seed=3)
    for depth in (batch["depth"], None):  # None: the graph gets zeros, the model's "no value"
        with torch.inference_mode():
            ref = model({**batch, "depth": depth} if depth is not None else
                        {k: v for k, v in batch.items() if k != "depth"}, inference=True)["ssc_logits_coarse"]
        got = ort(batch["img"], batch["K"], batch["T_cam_grid"], depth)["coarse"]
        r = compare_outputs(ref.numpy(), got.numpy())
        assert r["max_abs_logit_diff"] < LOGIT_ATOL, r
        assert r["label_agreement"] >= MIN_LABEL_AGREEMENT, r


def test_predictor_backends_agree_on_labels(tiny_onnx):
    model, path = tiny_onnx
    H, W = model.cfg.model.image_size
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (H + 6, W, 3), dtype=np.uint8)  # cropped to the model's size
    batch = make_batch(model.cfg)
    K, T = batch["K"][0].double().numpy(), batch["T_cam_grid"][0].double().numpy()
    a = Predictor(model.cfg, model, device="cpu").predict(img, K, T)
    onnx_pred = Predictor.load(path, device="cpu", backend="onnxruntime")
    assert onnx_pred.backend == "onnxruntime" and onnx_pred.model is None
    b = onnx_pred.predict(img, K, T)
    assert b.labels.shape == a.labels.shape == tuple(model.cfg.grid.size)
    assert (a.labels == b.labels).mean() >= MIN_LABEL_AGREEMENT
    assert np.abs(a.confidence.astype(int) - b.confidence).max() <= 1


def test_gpu_check_times_an_exported_file(tiny_onnx):
    """bench/gpu_check.py's ONNX Runtime section, on the CPU (the GPU session passes --onnx)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import gpu_check

    entry: dict = {}
    gpu_check.onnxruntime_section(entry, str(tiny_onnx[1]), "cpu", iters=1, warmup=0)
    assert entry["providers"] == ["CPUExecutionProvider"] and entry["forward"]["median_ms"] > 0
    assert entry["weights"].startswith("random (seed 0); shipped weights not loaded")  # a tiny config


def test_backend_errors_are_clear(tiny_onnx, tmp_path, monkeypatch):
    _, path = tiny_onnx
    with pytest.raises(ValueError, match="cigocc export"):
        Predictor.load(default_weights(), device="cpu", backend="onnxruntime")
    with pytest.raises(ValueError, match="backend 'onnxruntime'"):
        Predictor.load(path, device="cpu", backend="torch")
    with pytest.raises(ValueError, match="backend must be"):
        Predictor.load(path, device="cpu", backend="tensorrt")
    with pytest.raises(FileNotFoundError):
        Predictor.load(tmp_path / "missing.onnx", device="cpu", backend="onnxruntime")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load"):
        Predictor.load(tmp_path / "bad.onnx", device="cpu", backend="onnxruntime")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        Predictor.load(path, device="cpu", backend="onnxruntime")


@pytest.mark.slow
def test_shipped_lite_export_parity_on_a_real_frame(tmp_path, kitti_samples, capsys):
    """`cigocc export` of the shipped weights, then both backends on a real KITTI frame."""
    from cigocc_ros.cli import export, infer
    from cigocc_ros.cli.main import main as cli_main
    from cigocc_ros.data.semantic_kitti import read_calib, read_image
    from cigocc_ros.geometry import camera_from_calib, crop_or_pad
    from cigocc_ros.onnx_export import parity

    out = tmp_path / "lite.onnx"
    export.run(argparse.Namespace(weights="", onnx=str(out), stereo=False, no_check=False, cache=False))
    assert "argmax agreement" in capsys.readouterr().out
    seq = kitti_samples / "sequences" / "00"
    image = read_image(sorted((seq / "image_2").glob("*.png"))[0])
    calib = read_calib(seq / "calib.txt")
    cam = camera_from_calib(calib["P2"], calib["Tr"], image.shape[:2])
    torch_pred = Predictor.load(default_weights(), "cpu", "torch")
    img, K = crop_or_pad(image, cam.K, torch_pred.image_size)
    inputs = {"img": torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255,
              "K": torch.from_numpy(K).float()[None], "T_cam_grid": torch.from_numpy(cam.T_cam_grid).float()[None]}
    r = parity(torch_pred.model, out, inputs=inputs)
    assert r["max_abs_logit_diff"] < LOGIT_ATOL_TRAINED and r["label_agreement"] >= MIN_LABEL_AGREEMENT, r
    a = torch_pred.predict(image, cam.K, cam.T_cam_grid)
    b = Predictor.load(out, "cpu", "onnxruntime").predict(image, cam.K, cam.T_cam_grid)
    agreement = (a.labels == b.labels).mean()
    assert agreement >= MIN_LABEL_AGREEMENT, agreement
    assert (a.labels > 0).mean() > 0.01  # a real prediction, not an empty grid
    # `cigocc infer --backend onnxruntime` on that frame writes the same labels.
    frame = sorted((seq / "image_2").glob("*.png"))[0]
    args = dict(inputs=[str(frame)], weights=str(out), backend="onnxruntime", calib=str(seq / "calib.txt"),
                camera="auto", out=str(tmp_path / "inf"), device="cpu", every=1, no_render=True, stereo=False,
                right=None)
    assert infer.run(argparse.Namespace(**args)) == 0
    assert (tmp_path / "inf" / f"{frame.stem}.label").is_file()
    # The mono export refuses stereo input with one error line (exit 2), not a traceback.
    right = seq / "image_3" / frame.name
    capsys.readouterr()  # (the progress bar of the run above)
    assert cli_main(["infer", str(frame), "--right", str(right), "--weights", str(out), "--backend", "onnxruntime",
                     "--calib", str(seq / "calib.txt"), "--out", str(tmp_path / "inf"), "--device", "cpu",
                     "--no-render"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: exported without a depth input") and err.count("\n") == 1, err


def test_export_command_refuses_bad_arguments_with_one_line(tmp_path, capsys):
    from cigocc_ros.cli.main import main

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"x" * 64)
    assert main(["export", "--onnx", str(tmp_path / "m.txt"), "--no-check"]) == 2
    assert "must name a .onnx file" in capsys.readouterr().err
    assert main(["export", str(bad), "--onnx", str(tmp_path / "m.onnx"), "--no-check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: not a safetensors checkpoint") and err.count("\n") == 1, err
