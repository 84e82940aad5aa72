"""Benchmark of the CIGOcc configs: parameters, a FLOPs estimate, forward and end-to-end latency
(median after warm-up) and peak memory, on CPU and, when there is one, on the GPU.

    scripts/in-env.sh python bench/model_bench.py                       # lite + full, all devices
    scripts/in-env.sh python bench/model_bench.py --config lite --device cpu --iters 20

Each (config, device) runs in its own process so that peak memory is its own. "forward" is
model(batch, inference=True) on a random frame of the config's image size (what the node runs);
"predict" is Predictor.predict on a 376x1241 uint8 KITTI frame: crop, forward, exact full-grid argmax,
confidence, the copy back to numpy. FLOPs come from torch.utils.flop_counter (convolutions and
matrix products; grid_sample, scatter and interpolation are not counted). CPU peak memory is the
process's peak resident set (model, framework and all); CUDA peak is max_memory_allocated. On a shared machine the wall times depend on the other
load; the "*_cpu_ms" figures (CPU time of all this process's threads, so about threads x wall
when it has the cores to itself) show how much work a frame is.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


# KITTI odometry sequence 00 calibration (calib.txt): left colour camera P2 and velodyne -> cam0 Tr.
P2_SEQ00 = [718.856, 0.0, 607.1928, 45.38225, 0.0, 718.856, 185.2157, -0.1130887, 0.0, 0.0, 1.0, 0.003779761]
TR_SEQ00 = [4.276802385584e-04, -9.999672484946e-01, -8.084491683471e-03, -1.198459927713e-02,
            -7.210626507497e-03, 8.081198471645e-03, -9.999413164504e-01, -5.403984729748e-02,
            9.999738645903e-01, 4.859485810390e-04, -7.206933692422e-03, -2.921968648686e-01]


def load_frame() -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """A real KITTI frame (sequence 00, frame 0 of ../shared/kitti_samples or
    $CIGOCC_KITTI_SAMPLES) when present, else random pixels of the same size; K and T_cam_grid."""
    from cigocc_ros.geometry import camera_from_calib

    cam = camera_from_calib(np.array(P2_SEQ00).reshape(3, 4), np.array(TR_SEQ00).reshape(3, 4), (376, 1241))
    root = Path(os.environ.get("CIGOCC_KITTI_SAMPLES", REPO.parent / "shared" / "kitti_samples"))
    png = root / "sequences" / "00" / "image_2" / "000000.png"
    if png.is_file():
        import cv2

        return cv2.imread(str(png))[:, :, ::-1].copy(), cam.K, cam.T_cam_grid, str(png)
    frame = np.random.default_rng(0).integers(0, 256, (376, 1241, 3), dtype=np.uint8)
    return frame, cam.K, cam.T_cam_grid, "random 376x1241"


def attach_stage_timers(model) -> dict[str, list[float]]:
    """Forward hooks timing the network's top-level stages (wall ms per call; on CUDA they
    synchronise, which slows the whole a little)."""
    import torch

    times: dict[str, list[float]] = {}
    starts: dict[str, float] = {}

    def sync(t):
        if torch.is_tensor(t) and t.is_cuda:
            torch.cuda.synchronize()

    for name, mod in model.named_children():
        mods = list(mod) if isinstance(mod, torch.nn.ModuleList) and name == "self_attn" else [mod]
        for i, sub in enumerate(mods):
            key = f"{name}{i}" if len(mods) > 1 or name == "self_attn" else name

            def pre(_m, args, key=key):
                sync(args[0] if args else None)
                starts[key] = time.perf_counter()

            def post(_m, _args, out, key=key):
                sync(out if torch.is_tensor(out) else None)
                times.setdefault(key, []).append((time.perf_counter() - starts[key]) * 1000)

            sub.register_forward_pre_hook(pre)
            sub.register_forward_hook(post)
    return times


def measure(config: str, device: str, iters: int, warmup: int, overrides: list[str], threads: int,
            stages: bool = False) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cigocc_ros.config import load_experiment
    from cigocc_ros.geometry import crop_or_pad
    from cigocc_ros.inference import Predictor
    from cigocc_ros.model.cigocc import build_model

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_experiment(config, overrides)
    model = build_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    backbone = sum(p.numel() for p in model.encoder.body.parameters())
    predictor = Predictor(cfg, model, device)
    dev = predictor.device
    frame, K, T, source = load_frame()
    img, K2 = crop_or_pad(frame, K, cfg.model.image_size)
    batch = {"img": torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).to(dev),
             "K": torch.from_numpy(K2).float()[None].to(dev), "T_cam_grid": torch.from_numpy(T).float()[None].to(dev)}
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def forward():
        with torch.inference_mode(), amp:
            return model(batch, inference=True)

    with FlopCounterMode(display=False) as counter:
        forward()
    flops = counter.get_total_flops()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def timed(fn) -> tuple[list[float], list[float]]:
        """Wall times and CPU times (all threads of this process) in ms."""
        for _ in range(warmup):
            fn()
        sync()
        wall, cpu = [], []
        for _ in range(iters):
            t, c = time.perf_counter(), time.process_time()
            fn()
            sync()
            wall.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        return wall, cpu

    stage_ms = attach_stage_timers(model) if stages else None
    fwd, fwd_cpu = timed(forward)
    if stage_ms is not None:
        per_stage = {k: round(statistics.median(v[warmup:]), 1) for k, v in stage_ms.items() if len(v) > warmup}
    pred, pred_cpu = timed(lambda: predictor.predict(frame, K, T))
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    proposed = float(forward()["proposal"].sum())
    return {
        "config": config, "device": str(dev), "image_size": list(cfg.model.image_size),
        "params_M": round(params / 1e6, 2), "backbone_params_M": round(backbone / 1e6, 2),
        "gflops": round(flops / 1e9, 1), "forward_ms_median": round(statistics.median(fwd), 1),
        "forward_ms_min": round(min(fwd), 1), "predict_ms_median": round(statistics.median(pred), 1),
        "predict_ms_min": round(min(pred), 1),
        "forward_cpu_ms_median": round(statistics.median(fwd_cpu), 1),
        "predict_cpu_ms_median": round(statistics.median(pred_cpu), 1), "peak_mem_MiB": round(peak, 0), "iters": iters,
        "warmup": warmup, "frame": source, **({"stage_ms_median": per_stage} if stages else {}), "threads": torch.get_num_threads(), "proposed_voxels": proposed,
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", nargs="+", default=["lite", "full"])
    ap.add_argument("--device", nargs="+", default=None, help="cpu and/or cuda (default: cpu, plus cuda if present)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--stages", action="store_true", help="also time each top-level stage of the network")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.config[0], args.device[0], args.iters, args.warmup, args.set, args.threads,
                                 args.stages)))
        return 0
    devices = args.device
    if devices is None:
        import torch

        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"# machine: {machine()}; python {platform.python_version()}")
    for config in args.config:
        for device in devices:
            cmd = [sys.executable, __file__, "--child", "--config", config, "--device", device,
                   "--iters", str(args.iters), "--warmup", str(args.warmup), "--threads", str(args.threads),
                   *(["--stages"] if args.stages else []), "--set", *args.set]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode:
                print(f"{config} on {device} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
                return res.returncode
            print(res.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
