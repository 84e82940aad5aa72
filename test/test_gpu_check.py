"""bench/gpu_check.py, the one prepared GPU check (issue 15): its CPU dry run passes, and every
missing piece (CUDA, safetensors, time) becomes a "skipped: why" entry, never a crash."""
from __future__ import annotations

import json
import sys

import pytest

from cigocc_ros.model.cigocc import build_model

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "bench"))
import gpu_check  # noqa: E402

CUDA_ONLY = ("cudnn_benchmark", "cuda_graph")


def _run(tmp_path, *args) -> dict:
    assert gpu_check.main(["--out", str(tmp_path), "--threads", "2", *args]) == 0
    assert (tmp_path / "gpu_check.md").read_text().startswith("# GPU check")
    return json.loads((tmp_path / "gpu_check.json").read_text())


@pytest.mark.slow
def test_cpu_dry_run_measures_every_section(tmp_path):
    data = _run(tmp_path, "--device", "cpu", "--quick", "--no-compile")
    assert data["env"]["status"] == "ok" and data["env"]["torch"]
    for config in ("lite", "full"):
        c = data["correctness"][config]
        assert c["status"] == "ok", c
        assert c["device_fp32_vs_cpu_fp32"]["max_abs_logit_diff"] == 0.0  # the CPU against itself
        assert 0.5 < c["device_bf16_vs_device_fp32"]["label_agreement"] <= 1.0
        assert data["stages"][config]["status"] == "ok"
        assert set(data["stages"][config]["stage_ms_median"]) >= {"encoder", "lift", "unet", "head"}
    for key, e in data["inference"].items():
        mode = key.split("/")[2]
        if mode in ("eager", "every_slot"):
            assert e["status"] == "ok" and e["forward"]["median_ms"] > 0, (key, e)
            assert 0 <= e["proposed"]
        elif mode in CUDA_ONLY:
            assert e["status"] == f"skipped: {mode} needs a CUDA device"
        elif mode == "onnxruntime":
            assert e["status"].startswith("skipped: no --onnx file")
        else:
            assert e["status"] == "skipped: --no-compile"
    assert data["inference"]["lite/bf16/eager"]["predict"]["median_ms"] > 0
    for config in ("lite", "full"):  # issue 23: FLOPs with every slot, none, and this frame's proposals
        f = data["flops"][config]
        assert f["status"] == "ok", f
        assert f["gflops_no_proposal"] <= f["gflops_this_frame"] <= f["gflops_every_slot"]
        assert 0 <= f["proposed"] <= f["max_queries"]
    for b in (1, 2):
        t = data["training"][f"batch{b}"]
        assert t["status"] == "ok" and t["loss_finite"] and t["batch_size"] == b
        assert t["semantickitti_epoch_min"]["1_gpu"] > t["semantickitti_epoch_min"]["8_gpus_ideal"] > 0


def test_without_cuda_every_measurement_is_skipped_with_the_reason(tmp_path):
    if gpu_check.optional("torch") and __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    data = _run(tmp_path, "--device", "cuda")
    entries = [e for section in ("correctness", "inference", "stages", "training") for e in data[section].values()]
    assert entries and all(e["status"] == "skipped: device 'cuda' asked for but torch sees no CUDA device"
                           for e in entries)


def test_an_exhausted_budget_skips_and_still_writes_the_report(tmp_path):
    data = _run(tmp_path, "--device", "cpu", "--quick", "--budget-s", "0")
    assert all(e["status"].startswith("skipped: time budget") for e in data["training"].values())


def test_a_failing_section_is_recorded_and_the_run_goes_on():
    report = gpu_check.Report()
    with report.section("a", "b"):
        raise RuntimeError("capture failed")
    with report.section("a", "c") as e:
        e["x"] = 1
    assert report.data["a"]["b"]["status"] == "failed: RuntimeError: capture failed"
    assert report.data["a"]["c"]["status"] == "ok"


def test_missing_safetensors_falls_back_to_random_weights(monkeypatch):
    from model_fixtures import tiny_config

    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if it were not installed
    assert gpu_check.load_shipped(build_model(tiny_config())) == \
        "random (seed 0); shipped weights skipped: safetensors not installed"


def test_the_core_imports_without_what_the_gpu_machine_lacks(repo_root, python_exe):
    """The GPU machine has torch, timm, numpy and onnxruntime only (PyYAML comes with timm):
    what gpu_check uses must import without cv2, safetensors, ROS, tqdm or the ONNX exporter."""
    import subprocess

    absent = ("cv2", "safetensors", "rclpy", "tqdm", "onnx", "onnxscript", "tensorboard", "rosbags")
    code = (f"import sys\nfor m in {absent!r}:\n    sys.modules[m] = None\n"
            "sys.path.insert(0, 'bench')\nimport gpu_check\n"
            "from cigocc_ros import config, inference, onnx_export\n"
            "from cigocc_ros.model import cigocc, losses\nprint('imported')\n")
    res = subprocess.run([python_exe, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "imported" in res.stdout, res.stderr[-2000:]
