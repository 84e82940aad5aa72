"""backend.py: backend "auto" runs ONNX Runtime only on an export of exactly the given weights
(beside them or in the export cache, matched by sha256), torch otherwise, and says why."""
from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
from model_fixtures import camera, tiny_checkpoint

from cigocc_ros import backend
from cigocc_ros.inference import Predictor
from cigocc_ros.model.checkpoint import load_checkpoint
from cigocc_ros.onnx_export import export_onnx


@pytest.fixture(scope="module")
def weights_and_export(tmp_path_factory):
    """A tiny checkpoint, its stereo export (carrying its sha256) and an export of other weights."""
    import onnx

    d = tmp_path_factory.mktemp("auto")
    ckpt = tiny_checkpoint(d / "tiny.safetensors")
    model, _ = load_checkpoint(ckpt)
    good = export_onnx(model, d / "exports" / "good.onnx", stereo=True, source=ckpt.name,
                       weights_sha256=backend.file_sha256(ckpt))
    proto = onnx.load(str(good))  # the same file, exported (it says) from other weights
    next(p for p in proto.metadata_props if p.key == backend.SHA_KEY).value = "0" * 64
    stale = d / "exports" / "stale.onnx"
    onnx.save(proto, str(stale))
    return ckpt, good, stale


def _place(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def test_auto_is_torch_without_an_export_and_says_how_to_make_one(weights_and_export, tmp_path, monkeypatch):
    monkeypatch.setenv("CIGOCC_CACHE", str(tmp_path / "cache"))
    ckpt = _place(weights_and_export[0], tmp_path / "w" / "tiny.safetensors")
    choice = backend.choose(ckpt, "auto")
    assert choice.backend == "torch" and choice.path == ckpt
    assert "cigocc export" in choice.reason and "--cache" in choice.reason
    assert backend.choose(ckpt, "torch").reason == "as configured"
    with pytest.raises(ValueError, match="backend must be"):
        backend.choose(ckpt, "tensorrt")


def test_auto_finds_an_export_beside_the_weights_or_in_the_cache(weights_and_export, tmp_path, monkeypatch):
    ckpt_src, good, stale = weights_and_export
    monkeypatch.setenv("CIGOCC_CACHE", str(tmp_path / "cache"))
    ckpt = _place(ckpt_src, tmp_path / "w" / "tiny.safetensors")
    sha = backend.file_sha256(ckpt)
    # A stale export (other weights) beside them is never run.
    _place(stale, tmp_path / "w" / "tiny.stereo.onnx")
    assert backend.choose(ckpt, "auto", stereo=True).backend == "torch"
    # The cache, keyed by the weights' hash.
    cached = _place(good, backend.cached_export_path(sha, stereo=True))
    assert cached.parent == tmp_path / "cache" / "onnx" and sha[:16] in cached.name
    choice = backend.choose(ckpt, "auto", stereo=True)
    assert (choice.backend, choice.path) == ("onnxruntime", cached)
    # Beside the weights wins over the cache; a mono node takes a stereo export too.
    beside = _place(good, tmp_path / "w" / "tiny.stereo.onnx")
    assert backend.choose(ckpt, "auto").path == beside
    # Not on a GPU, and not without onnxruntime.
    assert backend.choose(ckpt, "auto", device="cuda").backend == "torch"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert "not installed" in backend.choose(ckpt, "auto").reason


def test_a_stereo_node_needs_a_stereo_export(weights_and_export, tmp_path, monkeypatch):
    ckpt_src, good, _ = weights_and_export
    monkeypatch.setenv("CIGOCC_CACHE", str(tmp_path / "cache"))
    ckpt = _place(ckpt_src, tmp_path / "tiny.safetensors")
    _place(good, tmp_path / "tiny.onnx")  # named as a mono export: not looked at for stereo
    assert backend.choose(ckpt, "auto", stereo=True).backend == "torch"
    assert backend.choose(ckpt, "auto", stereo=False).backend == "onnxruntime"


def test_predictor_load_auto_runs_the_export_with_the_same_labels(weights_and_export, tmp_path, monkeypatch):
    ckpt_src, good, _ = weights_and_export
    monkeypatch.setenv("CIGOCC_CACHE", str(tmp_path / "cache"))
    ckpt = _place(ckpt_src, tmp_path / "tiny.safetensors")
    _place(good, backend.cached_export_path(backend.file_sha256(ckpt), stereo=True))
    auto = Predictor.load(ckpt, "cpu", "auto", stereo=True)
    assert auto.backend == "onnxruntime" and "export of these weights" in auto.backend_reason
    plain = Predictor.load(ckpt, "cpu", "torch")
    H, W = auto.image_size
    img = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    K, T = (a[0].double().numpy() for a in camera(1, H, W))
    agree = (auto.predict(img, K, T).labels == plain.predict(img, K, T).labels).mean()
    assert agree >= 0.999


def test_export_command_writes_to_the_cache(weights_and_export, tmp_path, monkeypatch, capsys):
    from cigocc_ros.cli.main import main as cli_main

    monkeypatch.setenv("CIGOCC_CACHE", str(tmp_path / "cache"))
    ckpt = _place(weights_and_export[0], tmp_path / "tiny.safetensors")
    assert cli_main(["export", str(ckpt), "--cache", "--no-check"]) == 0
    path = backend.cached_export_path(backend.file_sha256(ckpt))
    assert str(path) in capsys.readouterr().out
    assert backend.export_sha256(path) == backend.file_sha256(ckpt)
    assert backend.choose(ckpt, "auto").path == path
