"""The one prepared GPU check (issue 15): correctness, inference latency and memory, the stage
breakdown and training throughput of the lite and full configs on a CUDA device, written as
JSON + markdown. One command, under 8 minutes on one H100/H200:

    PYTHONPATH=. python bench/gpu_check.py --out $OUT          # on the GPU machine
    PYTHONPATH=. python bench/gpu_check.py --device cpu --quick  # the dry run (test/test_gpu_check.py)

It needs only the core (torch, timm, numpy, PyYAML; PyYAML and safetensors come with timm as
its dependencies): no ROS, no cv2, nothing installed. Every section runs on its own: a piece
that is missing or fails (no CUDA, no safetensors, no onnxruntime, torch.compile or a CUDA graph
capture failing, the time budget spent) is recorded as "skipped: why" or "failed: error" and the
rest goes on. `--quick` shrinks both configs to a tiny image and grid (the dry run; its figures
mean nothing). torch.compile runs in child processes with a timeout, so a slow compile cannot
overrun the budget.

Sections (docs/benchmarks.md, "GPU check", reads the report):
- env: versions, device, TF32 flags, which optional packages exist.
- correctness: lite and full forward in fp32 on the device vs the CPU (same weights, same input:
  max |logit difference|, coarse argmax agreement, proposal agreement), and bf16 vs fp32 on the
  device, as shipped and with every voxel attending (the dtype handling without the top-k
  selection that bf16 rounding reorders). lite uses the shipped weights when safetensors can read them, else random weights.
- flops: GFLOPs of lite and full (bench/flops.py): every query slot, no proposal, per 1,000
  proposed queries, and the check's frame with its proposed queries; full against issue 23's
  314 GFLOPs target.
- inference: forward latency (synchronised, after warm-up: median / p90 / min) and peak memory
  (torch.cuda.max_memory_allocated) for lite and full in fp32 and bf16, eager (the proposed
  queries only, their number recorded), eager with every query slot (bf16), with
  cudnn.benchmark, as a captured CUDA graph, and under torch.compile; the whole
  Predictor.predict (crop, forward, full-grid argmax, confidence, copy to numpy) in the
  Predictor's own precision (bf16 autocast on CUDA).
- stages: per-stage wall times of full and lite in bf16 (forward hooks that synchronise).
- training: full in bf16, steps per second and peak memory at batch 1 and 2 on random frames and
  labels of SemanticKITTI shapes, the step of the trainer (compute_losses, AdamW, grad clip),
  and what a SemanticKITTI epoch (3834 training frames) would take on 1 and 8 GPUs.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The --quick configs: a tiny image and grid (the same shrink as test/model_fixtures.py), and
# full's EfficientNet-B5 replaced by B0 (same strides): the dry run tests this script, not speed.
QUICK = ["model.image_size=[64, 192]", "grid.size=[32, 32, 8]", "grid.voxel_size=1.6",
         "model.coarse_downsample=2", "model.max_queries=64", "model.depth_bins=28",
         "model.head_subdivide=[1, 2, 2]"]
QUICK_FULL = ["model.backbone=efficientnet_b0"]
KITTI_TRAIN_FRAMES = 3834  # SemanticKITTI sequences 00-07, 09, 10: every 5th scan has voxel labels
CONFIGS = ("lite", "full")
MODES = ("eager", "every_slot", "cudnn_benchmark", "cuda_graph", "compile")
CGFORMER_GFLOPS = 314.0  # issue 23's target for full


class Budget:
    """Wall-clock budget of the whole run; sections ask before they start."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class Report:
    """Results by section; each entry is a dict of figures or {"status": "skipped: ..." |
    "failed: ..."}."""

    def __init__(self):
        self.data: dict = {}

    @contextlib.contextmanager
    def section(self, *path: str):
        """Run a block whose figures go to data[path...]; an exception becomes "failed: ..."
        (Skip becomes "skipped: ...") and the run goes on."""
        entry: dict = {}
        t = time.monotonic()
        try:
            yield entry
            entry.setdefault("status", "ok")
        except Skip as e:
            entry.clear()
            entry["status"] = f"skipped: {e}"
        except Exception as e:  # any failure of one measurement must not stop the others
            entry["status"] = f"failed: {type(e).__name__}: {str(e)[:400]}"
            entry["traceback"] = traceback.format_exc()[-1500:]
        entry["section_s"] = round(time.monotonic() - t, 1)
        node = self.data
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = entry
        print(f"[gpu_check] {'/'.join(path)}: {entry['status']} ({entry['section_s']} s)", flush=True)


class Skip(Exception):
    """A section that cannot run here; the message says why."""


def optional(name: str) -> str | None:
    """Version of an importable package, None when missing."""
    try:
        mod = importlib.import_module(name)
    except Exception:
        return None
    return str(getattr(mod, "__version__", "present"))


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------
def build(config: str, quick: bool, seed: int = 0):
    import torch

    from cigocc_ros.config import load_experiment
    from cigocc_ros.model.cigocc import build_model

    cfg = load_experiment(config, (QUICK + (QUICK_FULL if config == "full" else [])) if quick else [])
    torch.manual_seed(seed)
    return cfg, build_model(cfg).eval()


def frame(cfg, device, seed: int = 0) -> dict:
    """A random image with a KITTI-like camera (onnx_export.example_inputs) on `device`."""
    from cigocc_ros.onnx_export import example_inputs

    return {k: v.to(device) for k, v in example_inputs(cfg, stereo=False, seed=seed).items()}


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def stats_ms(times: list[float]) -> dict:
    s = sorted(times)
    return {"median_ms": round(statistics.median(s), 2), "p90_ms": round(s[min(len(s) - 1, int(0.9 * len(s)))], 2),
            "min_ms": round(s[0], 2), "n": len(s)}


def timed(fn, device, warmup: int, iters: int) -> dict:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t) * 1000)
    return stats_ms(times)


def autocast(device, dtype: str, cache: bool = True):
    import torch

    dev = torch.device(device)
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=torch.bfloat16, cache_enabled=cache)


def peak_reset(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mib(device) -> float | None:
    import torch

    if torch.device(device).type != "cuda":
        return None  # CPU: no allocator statistics (model_bench.py reports the process RSS)
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


# ------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------
def env_section(entry: dict, device: str) -> None:
    import torch

    entry.update({
        "python": platform.python_version(), "torch": torch.__version__, "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "device": device, "cpu_cores": os.cpu_count(),
        "numpy": optional("numpy"), "timm": optional("timm"), "yaml": optional("yaml"),
        "safetensors": optional("safetensors"), "onnxruntime": optional("onnxruntime"),
        "onnx": optional("onnx"), "onnxscript": optional("onnxscript"), "cv2": optional("cv2"),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    })
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        entry.update({"gpu": p.name, "gpu_memory_GiB": round(p.total_memory / 2**30, 1),
                      "capability": f"{p.major}.{p.minor}", "cudnn": torch.backends.cudnn.version()})
    if entry["onnxruntime"]:
        import onnxruntime

        entry["onnxruntime_providers"] = onnxruntime.get_available_providers()


def compare(ref, got) -> dict:
    """Coarse logits (1, n_cls, ...) and proposals of two runs of the same input."""
    a, b = ref["ssc_logits_coarse"].float().cpu(), got["ssc_logits_coarse"].float().cpu()
    return {"max_abs_logit_diff": float((a - b).abs().max()), "max_abs_logit": float(a.abs().max()),
            "label_agreement": float((a.argmax(1) == b.argmax(1)).float().mean()),
            "proposal_agreement": float((ref["proposal"].cpu() == got["proposal"].cpu()).float().mean())}


def load_shipped(model) -> str:
    """Load the shipped lite weights into `model` when possible -> what the model now holds."""
    if optional("safetensors") is None:
        return "random (seed 0); shipped weights skipped: safetensors not installed"
    from cigocc_ros.inference import default_weights
    from cigocc_ros.model.checkpoint import load_weights

    try:
        load_weights(model, default_weights())
    except Exception as e:  # e.g. weights of another lite version: keep the random ones
        return f"random (seed 0); shipped weights not loaded: {str(e)[:200]}"
    return f"shipped {default_weights().name}"


def correctness_section(entry: dict, config: str, device: str, quick: bool) -> None:
    import torch

    cfg, model = build(config, quick)
    entry["weights"] = load_shipped(model) if config == "lite" and not quick else "random (seed 0)"
    batch = frame(cfg, "cpu")
    with torch.inference_mode():
        ref = model(batch, inference=True)
        model.to(device)
        dev_batch = {k: v.to(device) for k, v in batch.items()}
        fp32 = model(dev_batch, inference=True)
        with autocast(device, "bf16"):
            bf16 = model(dev_batch, inference=True)
    if torch.device(device).type == "cpu":
        entry["note"] = "device is the CPU (dry run): device vs CPU compares a run with itself"
    entry["device_fp32_vs_cpu_fp32"] = compare(ref, fp32)
    entry["device_bf16_vs_device_fp32"] = compare(fp32, bf16)
    entry["proposed_voxels"] = int(fp32["proposal"].sum())
    entry["device_bf16_vs_device_fp32_every_voxel"] = every_voxel_bf16(cfg, model, dev_batch, device)


def every_voxel_bf16(cfg, model, batch, device: str) -> dict:
    """bf16 vs fp32 of `model`'s weights with every voxel attending (no top-k, no threshold).
    Which voxels stage 2 attends is a top-k of near-tied scores, and bf16 rounding reorders
    near ties: that is selection, not dtype handling; without the selection the agreement
    measures the dtype handling alone (test_model.py asks > 0.95 of the same comparison)."""
    import dataclasses

    import torch

    from cigocc_ros.model.cigocc import build_model

    every = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, max_queries=10**9, proposal_threshold=-1.0))
    twin = build_model(every).eval().to(device)
    twin.load_state_dict(model.state_dict())
    # oneDNN's bf16 conv3d (CPU only) can return NaN once training steps ran in the process
    # (test_model.py); the native kernels check the dtype handling without that bug.
    cpu = torch.device(device).type == "cpu"
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=not cpu):
        fp32 = twin(batch, inference=True)
        with autocast(device, "bf16"):
            bf16 = twin(batch, inference=True)
    return compare(fp32, bf16)


def flops_section(entry: dict, config: str, device: str, quick: bool) -> None:
    """GFLOPs (bench/flops.py: torch.utils.flop_counter, 2 per multiply-add) of the inference
    forward on this check's frame: every query slot, no proposal and per 1,000 proposed queries
    counted on fake tensors (shapes only), and the frame's own count, a real forward on the
    device computing only its proposed queries."""
    sys.path.insert(0, str(REPO / "bench"))
    import flops

    cfg, model = build(config, quick)
    batch = frame(cfg, "cpu")
    n_q = min(cfg.model.max_queries, model.voxel_xyz.shape[0])
    every, stages = flops.count(model, batch, n_q)
    none, _ = flops.count(model, batch, 1)
    half, _ = flops.count(model, batch, max(n_q // 2, 2))
    model.to(device)
    real, _ = flops.count(model, {k: v.to(device) for k, v in batch.items()}, fake=False)
    import torch

    with torch.inference_mode():
        proposed = int(model({k: v.to(device) for k, v in batch.items()}, inference=True)["proposal"].sum())
    entry.update({"max_queries": n_q, "gflops_every_slot": round(every / 1e9, 2),
                  "gflops_no_proposal": round(none / 1e9, 2),
                  "gflops_per_1000_queries": round(1000 * (every - half) / (n_q - max(n_q // 2, 2)) / 1e9, 3),
                  "proposed": proposed, "gflops_this_frame": round(real / 1e9, 2),
                  "stage_gflops_every_slot": {k: round(v / 1e9, 2) for k, v in stages.items()}})
    if config == "full" and not quick:
        entry["target_gflops"] = CGFORMER_GFLOPS
        entry["target_met"] = real / 1e9 <= CGFORMER_GFLOPS


def forward_fn(model, batch, dtype: str, device: str, cache: bool = True):
    import torch

    def fn():
        with torch.inference_mode(), autocast(device, dtype, cache):
            return model(batch, inference=True)

    return fn


def latency_section(entry: dict, config: str, dtype: str, mode: str, device: str, quick: bool, iters: int,
                    warmup: int, budget: Budget, compile_timeout: float) -> None:
    import torch

    dev = torch.device(device)
    if mode in ("cudnn_benchmark", "cuda_graph") and dev.type != "cuda":
        raise Skip(f"{mode} needs a CUDA device")
    if mode == "compile":
        return compile_child(entry, config, dtype, device, quick, iters, warmup, compile_timeout)
    cfg, model = build(config, quick)
    model.to(dev)
    batch = frame(cfg, dev)
    torch.backends.cudnn.benchmark = mode == "cudnn_benchmark"
    try:
        peak_reset(dev)
        if mode == "cuda_graph":
            entry.update(cuda_graph_latency(model, batch, dtype, dev, iters, warmup))
        else:
            # every_slot: eager with every query slot cross-attending (static_shapes, what
            # the graph and ONNX compute) beside "eager", which computes the proposed ones only.
            model.static_shapes = mode == "every_slot"
            fn = forward_fn(model, batch, dtype, device)
            entry["forward"] = timed(fn, dev, warmup, iters)
            entry["proposed"] = int(fn()["proposal"].sum())
        entry["peak_MiB"] = peak_mib(dev)
        if mode == "eager" and dtype == "bf16" and budget.left() > 30:  # the Predictor picks its own precision
            predict_latency(entry, cfg, model, dev, iters, warmup)
    finally:
        torch.backends.cudnn.benchmark = False


def predict_latency(entry: dict, cfg, model, dev, iters: int, warmup: int) -> None:
    """Predictor.predict on a KITTI-sized uint8 frame (cropped to the model's size)."""
    import numpy as np

    from cigocc_ros.inference import Predictor

    H, W = cfg.model.image_size
    img = np.random.default_rng(0).integers(0, 256, (H + 6, W + 21, 3), dtype=np.uint8)
    b = frame(cfg, "cpu")
    K, T = b["K"][0].double().numpy(), b["T_cam_grid"][0].double().numpy()
    pred = Predictor(cfg, model, dev)
    peak_reset(dev)
    entry["predict"] = timed(lambda: pred.predict(img, K, T), dev, warmup, iters)
    entry["predict"]["precision"] = "bf16 autocast" if dev.type == "cuda" else "fp32"
    entry["predict_peak_MiB"] = peak_mib(dev)


def cuda_graph_latency(model, batch, dtype: str, dev, iters: int, warmup: int) -> dict:
    """Capture one forward into a CUDA graph (static inputs) and time its replay; the replayed
    logits are compared with an eager run. The capture computes every query slot
    (model.static_shapes: no host sync, shapes the data does not decide); eager inference only
    the proposed ones (issue 23), so the comparison checks the two paths against each other."""
    import torch

    fn = forward_fn(model, batch, dtype, str(dev), cache=False)  # autocast's cache breaks capture
    eager = fn()
    model.static_shapes = True
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn()
    graph.replay()
    torch.cuda.synchronize()
    return {"forward": timed(graph.replay, dev, warmup, iters), "replay_vs_eager": compare(eager, static_out)}


def compile_child(entry: dict, config: str, dtype: str, device: str, quick: bool, iters: int, warmup: int,
                  timeout: float) -> None:
    if timeout < 20:
        raise Skip(f"time budget: {timeout:.0f} s left for torch.compile")
    cmd = [sys.executable, __file__, "--child-compile", config, dtype, "--device", device,
           "--iters", str(iters), "--warmup", str(warmup), *(["--quick"] if quick else [])]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        raise Skip(f"torch.compile did not finish within the {timeout:.0f} s left of the budget") from None
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode or not lines:
        raise RuntimeError(f"child exited {res.returncode}: {(res.stderr or res.stdout)[-600:]}")
    entry.update(json.loads(lines[-1]))


def compile_measure(config: str, dtype: str, device: str, quick: bool, iters: int, warmup: int) -> dict:
    """In a child process: torch.compile(model) (default mode), time the first call (the
    compile) and the steady state; compare the output with eager."""
    import torch

    dev = torch.device(device)
    cfg, model = build(config, quick)
    model.to(dev)
    batch = frame(cfg, dev)
    eager = forward_fn(model, batch, dtype, device)()
    compiled = torch.compile(model)
    fn = forward_fn(compiled, batch, dtype, device)
    t = time.perf_counter()
    out = fn()
    sync(dev)
    first = time.perf_counter() - t
    peak_reset(dev)
    res = {"compile_s": round(first, 1), "forward": timed(fn, dev, warmup, iters), "peak_MiB": peak_mib(dev),
           "compiled_vs_eager": compare(eager, out)}
    return res


def onnxruntime_section(entry: dict, onnx: str, device: str, iters: int, warmup: int) -> None:
    """The exported lite (`cigocc export`, carried to the machine with --onnx) in ONNX Runtime on
    the device, against torch fp32 on the same device and input."""
    import torch

    from cigocc_ros.inference import OrtForward
    from cigocc_ros.model.cigocc import build_model

    if not onnx:
        raise Skip("no --onnx file (export one with `cigocc export --onnx lite.onnx` and pass it)")
    if optional("onnxruntime") is None:
        raise Skip("onnxruntime not installed")
    dev = torch.device(device)
    ort = OrtForward(onnx, dev)
    entry["providers"] = ort.session.get_providers()
    cfg = ort.cfg
    batch = frame(cfg, dev)
    entry["forward"] = timed(lambda: ort(batch["img"], batch["K"], batch["T_cam_grid"], None), dev, warmup, iters)
    if optional("safetensors") is not None:
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        entry["weights"] = load_shipped(model)
        if entry["weights"].startswith("shipped"):
            model.to(dev)
            with torch.inference_mode():
                ref = model(batch, inference=True)
            got = {"ssc_logits_coarse": ort(batch["img"], batch["K"], batch["T_cam_grid"], None)["coarse"],
                   "proposal": ref["proposal"]}
            entry["onnxruntime_vs_torch_fp32"] = compare(ref, got)


def stages_section(entry: dict, config: str, device: str, quick: bool, iters: int) -> None:
    import torch

    sys.path.insert(0, str(REPO / "bench"))
    from model_bench import attach_stage_timers

    dev = torch.device(device)
    cfg, model = build(config, quick)
    model.to(dev)
    batch = frame(cfg, dev)
    times = attach_stage_timers(model)
    fn = forward_fn(model, batch, "bf16", device)
    warm = 1 if quick else 2
    for _ in range(warm + iters):
        fn()
    entry["precision"] = "bf16 autocast"
    entry["stage_ms_median"] = {k: round(statistics.median(v[warm:]), 2) for k, v in times.items()}
    entry["sum_ms"] = round(sum(entry["stage_ms_median"].values()), 2)


def train_batch(cfg, B: int, device, seed: int = 0) -> dict:
    """Random frames and labels with the shapes of a SemanticKITTI training batch."""
    import torch

    from cigocc_ros.onnx_export import example_inputs

    g = torch.Generator().manual_seed(seed)
    H, W = cfg.model.image_size
    X, Y, Z = cfg.grid.size
    one = example_inputs(cfg, stereo=False, seed=seed)
    tgt = torch.randint(0, 20, (B, X, Y, Z), generator=g)
    tgt[torch.rand(B, X, Y, Z, generator=g) < 0.7] = 0  # mostly empty, like the real grids
    depth = torch.rand(B, H, W, generator=g) * 50 + 3
    batch = {"img": torch.rand(B, 3, H, W, generator=g), "K": one["K"].expand(B, 3, 3).clone(),
             "T_cam_grid": one["T_cam_grid"].expand(B, 4, 4).clone(), "target": tgt,
             "target_2": tgt[:, ::2, ::2, ::2].clone(),
             "teacher": torch.randint(0, 20, (B, H, W), generator=g),
             "depth_target": torch.where(torch.rand(B, H, W, generator=g) < 0.05, depth, torch.zeros_like(depth))}
    return {k: v.to(device) for k, v in batch.items()}


def training_section(entry: dict, batch_size: int, device: str, quick: bool, iters: int, warmup: int) -> None:
    """The trainer's step (cigocc_ros train: compute_losses on the fp32 outputs, AdamW, grad
    clip) in bf16 autocast, without the data loader."""
    import torch

    from cigocc_ros.model.losses import compute_losses

    dev = torch.device(device)
    cfg, model = build("full", quick)
    model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    batch = train_batch(cfg, batch_size, dev)

    last = {}

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(device, "bf16") if dev.type == "cuda" else contextlib.nullcontext():
            out = model(batch)
        losses = compute_losses({k: v.float() for k, v in out.items()}, batch, cfg)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        last["loss"] = losses["total"].detach()

    peak_reset(dev)
    t = timed(step, dev, warmup, iters)
    sps = 1000.0 / t["median_ms"]
    entry.update({"batch_size": batch_size, "precision": "bf16 autocast" if dev.type == "cuda" else "fp32",
                  "step": t, "steps_per_s": round(sps, 3), "frames_per_s": round(sps * batch_size, 3),
                  "peak_MiB": peak_mib(dev), "loss_finite": bool(torch.isfinite(last["loss"]).item())})
    epoch_s = KITTI_TRAIN_FRAMES / (sps * batch_size)
    entry["semantickitti_epoch_min"] = {"1_gpu": round(epoch_s / 60, 1), "8_gpus_ideal": round(epoch_s / 8 / 60, 1)}


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
def fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1e-2 and x else f"{x:.2f}".rstrip("0").rstrip(".")
    return str(x)


def tri(t: dict | None) -> str:
    """'median / p90 / min' of a stats_ms dict."""
    return f"{fmt(t['median_ms'])} / {fmt(t['p90_ms'])} / {fmt(t['min_ms'])}" if t else "-"


def markdown(data: dict) -> str:
    env = data.get("env", {})
    lines = [f"# GPU check ({data.get('run', {}).get('utc', '')})", "",
             f"Command: `{data.get('run', {}).get('command', '')}`; total {data.get('run', {}).get('total_s')} s.",
             f"Device: {env.get('gpu', env.get('device'))}; torch {env.get('torch')} (CUDA {env.get('cuda_build')}), "
             f"python {env.get('python')}, {env.get('cpu_cores')} CPU cores.", ""]
    if data.get("run", {}).get("quick"):
        lines += ["**--quick dry run: tiny image and grid; the figures mean nothing.**", ""]
    lines += ["## Correctness (same weights and input)", "",
              "| config | weights | device fp32 vs CPU fp32: max abs logit diff / labels / proposals "
              "| device bf16 vs fp32: max abs logit diff / labels / proposals "
              "| same, every voxel attending | status |", "| --- | --- | --- | --- | --- | --- |"]
    for config, e in data.get("correctness", {}).items():
        def trio(c):
            return f"{fmt(c['max_abs_logit_diff'])} (of {fmt(c['max_abs_logit'])}) / " \
                   f"{100 * c['label_agreement']:.2f} % / {100 * c['proposal_agreement']:.2f} %" if c else "-"
        lines.append(f"| {config} | {e.get('weights', '-')} | {trio(e.get('device_fp32_vs_cpu_fp32'))} "
                     f"| {trio(e.get('device_bf16_vs_device_fp32'))} "
                     f"| {trio(e.get('device_bf16_vs_device_fp32_every_voxel'))} | {e['status']} |")
    lines += ["", "## GFLOPs per frame (torch.utils.flop_counter, 2 per multiply-add; bench/flops.py)", "",
              "| config | every query slot | no proposal | per 1,000 queries | this frame (proposed) | status |",
              "| --- | --- | --- | --- | --- | --- |"]
    for config, e in data.get("flops", {}).items():
        target = (f"; target <= {e['target_gflops']:.0f}: {'met' if e['target_met'] else 'missed'}"
                  if "target_gflops" in e else "")
        lines.append(f"| {config} | {fmt(e.get('gflops_every_slot'))} | {fmt(e.get('gflops_no_proposal'))} | "
                     f"{fmt(e.get('gflops_per_1000_queries'))} | {fmt(e.get('gflops_this_frame'))} "
                     f"({fmt(e.get('proposed'))} of {fmt(e.get('max_queries'))}) | {e['status'][:160]}{target} |")
    lines += ["", "## Inference latency (ms; median / p90 / min) and peak memory", "",
              "eager computes the proposed queries only (the number in brackets), every_slot all of them "
              "(what cuda_graph and ONNX compute).", "",
              "| config | precision | mode | forward | peak MiB | predict (Predictor) | predict peak MiB | status |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, e in data.get("inference", {}).items():
        config, dtype, mode = key.split("/")
        f, p = e.get("forward"), e.get("predict")
        extra = f" (compile {e['compile_s']} s)" if "compile_s" in e else ""
        extra += f" ({e['proposed']} proposed)" if "proposed" in e else ""
        pred = f"{tri(p)} ({p['precision']})" if p else "-"
        lines.append(f"| {config} | {dtype} | {mode}{extra} | {tri(f)} | {fmt(e.get('peak_MiB'))} | {pred} | "
                     f"{fmt(e.get('predict_peak_MiB'))} | {e['status'][:160]} |")
    lines += ["", "## Stage breakdown (bf16, median ms per stage; hooks synchronise)", ""]
    for config, e in data.get("stages", {}).items():
        st = e.get("stage_ms_median")
        body = ", ".join(f"{k} {fmt(v)}" for k, v in st.items()) + f"; sum {fmt(e['sum_ms'])}" if st else e["status"]
        lines.append(f"- {config}: {body}")
    lines += ["", "## Training: full (bf16 autocast on CUDA), the trainer's step on random SemanticKITTI-shaped frames", "",
              "| batch | step median / p90 ms | steps/s | frames/s | peak MiB | epoch (3834 frames) 1 GPU / 8 GPUs ideal | status |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, e in data.get("training", {}).items():
        s = e.get("step")
        ep = e.get("semantickitti_epoch_min", {})
        step = f"{fmt(s['median_ms'])} / {fmt(s['p90_ms'])}" if s else "-"
        epoch = f"{ep['1_gpu']} / {ep['8_gpus_ideal']} min" if ep else "-"
        lines.append(f"| {key} | {step} | {fmt(e.get('steps_per_s'))} | {fmt(e.get('frames_per_s'))} | "
                     f"{fmt(e.get('peak_MiB'))} | {epoch} | {e['status'][:160]} |")
    lines += ["", "## Environment", "", "```", json.dumps(env, indent=1), "```", ""]
    return "\n".join(lines)


def plan(quick: bool, device: str) -> list[tuple]:
    """(section path, estimated seconds) in priority order: what matters most runs first."""
    steps = [(("correctness", c), 30) for c in CONFIGS]
    steps += [(("flops", c), 20) for c in CONFIGS]
    steps += [(("inference", f"{c}/{d}/eager"), 25) for c in ("full", "lite") for d in ("bf16", "fp32")]
    steps += [(("inference", f"{c}/bf16/every_slot"), 20) for c in ("full", "lite")]
    steps += [(("stages", c), 10) for c in ("full", "lite")]
    steps += [(("training", f"batch{b}"), 30) for b in (1, 2)]
    steps += [(("inference", f"{c}/bf16/{m}"), 20) for m in ("cudnn_benchmark", "cuda_graph") for c in ("full", "lite")]
    steps += [(("inference", f"{c}/fp32/cuda_graph"), 20) for c in ("full", "lite")]
    steps += [(("inference", "lite/fp32/onnxruntime"), 20)]
    steps += [(("inference", f"{c}/{d}/compile"), 60) for d in ("bf16", "fp32") for c in ("lite", "full")]
    return steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", ""), help="report folder (default: $OUT, else outputs/gpu_check)")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu for the dry run")
    ap.add_argument("--quick", action="store_true", help="tiny configs, few iterations (the CPU dry run)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget; later sections are skipped")
    ap.add_argument("--iters", type=int, default=0, help="timed iterations (default 30, --quick 2)")
    ap.add_argument("--warmup", type=int, default=0, help="warm-up iterations (default 5, --quick 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurements")
    ap.add_argument("--onnx", default="", help="an exported lite .onnx (cigocc export) to time in ONNX Runtime")
    ap.add_argument("--child-compile", nargs=2, metavar=("CONFIG", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    iters = args.iters or (1 if args.quick else 30)
    warmup = args.warmup or (1 if args.quick else 5)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_compile:
        config, dtype = args.child_compile
        print(json.dumps(compile_measure(config, dtype, args.device, args.quick, iters, warmup)))
        return 0
    t0 = time.monotonic()
    budget = Budget(args.budget_s)
    out = Path(args.out or REPO / "outputs" / "gpu_check")
    out.mkdir(parents=True, exist_ok=True)
    report = Report()
    report.data["run"] = {"command": "python bench/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv),
                          "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick,
                          "iters": iters, "warmup": warmup, "budget_s": args.budget_s}
    with report.section("env") as e:
        env_section(e, args.device)
    device_ok = args.device == "cpu" or torch.cuda.is_available()
    missing = [m for m in ("timm", "yaml") if optional(m) is None]
    for path, est in plan(args.quick, args.device):
        with report.section(*path) as e:
            if not device_ok:
                raise Skip(f"device {args.device!r} asked for but torch sees no CUDA device")
            if missing:
                raise Skip(f"{', '.join(missing)} not installed (PyYAML: copy its pure-python yaml/ folder "
                           "into the repository root; no pip needed)")
            if budget.left() < est * (0.2 if args.quick else 1.0):
                raise Skip(f"time budget ({budget.left():.0f} s left, about {est} s needed)")
            kind = path[0]
            if kind == "correctness":
                correctness_section(e, path[1], args.device, args.quick)
            elif kind == "inference":
                config, dtype, mode = path[1].split("/")
                if mode == "compile" and args.no_compile:
                    raise Skip("--no-compile")
                if mode == "onnxruntime":
                    onnxruntime_section(e, args.onnx, args.device, iters, warmup)
                else:
                    latency_section(e, config, dtype, mode, args.device, args.quick, iters, warmup, budget,
                                    compile_timeout=budget.left() - 10)
            elif kind == "flops":
                flops_section(e, path[1], args.device, args.quick)
            elif kind == "stages":
                stages_section(e, path[1], args.device, args.quick, min(iters, 10))
            elif kind == "training":
                training_section(e, int(path[1].removeprefix("batch")), args.device, args.quick,
                                 min(iters, 8), 0 if args.quick else min(warmup, 2))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    report.data["run"]["total_s"] = round(time.monotonic() - t0, 1)
    (out / "gpu_check.json").write_text(json.dumps(report.data, indent=1))
    (out / "gpu_check.md").write_text(markdown(report.data))
    print(f"[gpu_check] wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'} in {report.data['run']['total_s']} s")
    return 0


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as _tmp:  # inductor's caches stay out of the checkout
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(_tmp, "inductor"))
        sys.exit(main())
