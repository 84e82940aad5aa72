"""Which backend and how many threads for the node's default: torch and ONNX Runtime, 1 and 2
intra-op threads each, on a quiet machine and under a fixed synthetic load, side by side.

    scripts/in-env.sh python bench/backend_bench.py                       # shipped lite weights
    scripts/in-env.sh python bench/backend_bench.py --onnx lite.onnx --iters 10 --busy 2

The two situations a user's vehicle computer may be in: "quiet" (nothing else runs: the
cores other processes kept busy meanwhile, from /proc/stat, are printed beside it and a warning
when they exceed a quarter of a core) and "loaded" (`--busy` processes spinning a pure-Python loop,
by default one per core, as the planner and drivers of a busy vehicle computer would). In each,
every variant runs `Predictor.predict` on the same real KITTI frame (the node's work per frame:
crop, forward, labels, confidence), interleaved call by call so that whatever else happens falls
on all alike. The row "median of the two" is the mean of the two situations' medians; the lowest
one is the default this benchmark recommends (docs/benchmarks.md quotes the run behind
config/cigocc.yaml's choice). Without --onnx the checkpoint is exported first (about 30 s).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SPIN = "while True: pass"


def busy_processes(n: int) -> list[subprocess.Popen]:
    """n processes each spinning one core at this process's priority."""
    return [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]


def machine_busy_s() -> float:
    """CPU seconds all processes have spent since boot (/proc/stat; 0 where there is none)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def run_situation(variants: dict, frame, iters: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    """{variant: {"wall": [ms], "cpu": [ms]}} of `iters` interleaved rounds after `warmup`."""
    import torch

    image, K, T = frame
    times = {name: {"wall": [], "cpu": []} for name in variants}
    for i in range(warmup + iters):
        for name, (pred, threads) in variants.items():
            torch.set_num_threads(threads)  # torch's pool; an ORT session has its own, fixed at creation
            t, c = time.perf_counter(), time.process_time()
            pred.predict(image, K, T)
            if i >= warmup:
                times[name]["wall"].append((time.perf_counter() - t) * 1000)
                times[name]["cpu"].append((time.process_time() - c) * 1000)
    return times


def p95(values: list[float]) -> float:
    import numpy as np

    return float(np.percentile(values, 95))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="", help="checkpoint (default: the shipped weights)")
    ap.add_argument("--onnx", default="", help="an export of those weights (default: export now)")
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="spinning processes of the loaded situation")
    args = ap.parse_args(argv)

    import torch
    from model_bench import load_frame, machine

    from cigocc_ros.backend import file_sha256
    from cigocc_ros.inference import OrtForward, Predictor, default_weights
    from cigocc_ros.model.checkpoint import load_checkpoint
    from cigocc_ros.onnx_export import export_onnx

    weights = Path(args.weights) if args.weights else default_weights()
    model, _ = load_checkpoint(weights)
    tmp = tempfile.TemporaryDirectory()
    onnx_path = Path(args.onnx) if args.onnx else export_onnx(
        model, Path(tmp.name) / "model.onnx", source=weights.name, weights_sha256=file_sha256(weights))
    cpu = torch.device("cpu")
    variants = {}
    for t in args.threads:
        variants[f"torch, {t} thread{'s' * (t > 1)}"] = (Predictor(model.cfg, model, cpu), t)
        variants[f"onnxruntime, {t} thread{'s' * (t > 1)}"] = (Predictor(model.cfg, OrtForward(onnx_path, cpu, t), cpu), t)
    image, K, T, source = load_frame()
    results, loads = {}, {}
    for situation in ("quiet", "loaded"):
        procs = busy_processes(args.busy) if situation == "loaded" else []
        try:
            time.sleep(2.0 if procs else 0.0)  # the spinning processes are running
            busy, own, t = machine_busy_s(), own_cpu_s(), time.perf_counter()
            results[situation] = run_situation(variants, (image, K, T), args.iters, args.warmup)
            # Cores that other processes (the spinning ones included) kept busy meanwhile.
            loads[situation] = (machine_busy_s() - busy - (own_cpu_s() - own)) / (time.perf_counter() - t)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    import onnxruntime

    print(f"# bench/backend_bench.py {' '.join(sys.argv[1:] if argv is None else argv)}; {machine()}; "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; {model.cfg.name} "
          f"({weights.name}); frame {source}; Predictor.predict, {args.iters} interleaved rounds after "
          f"{args.warmup} warm-up per situation; other processes kept {loads['quiet']:.2f} cores busy during "
          f"'quiet' and {loads['loaded']:.2f} during 'loaded' ({args.busy} spinning processes)")
    if loads["quiet"] > 0.25:
        print(f"WARNING: other processes kept {loads['quiet']:.2f} cores busy during 'quiet': its figures are not "
              "those of a quiet machine")
    print(summary(results))
    return 0


def summary(results: dict[str, dict[str, dict[str, list[float]]]]) -> str:
    """The table of run_situation's results for "quiet" and "loaded", and the recommendation:
    the variant with the lowest mean of its two wall-time medians."""
    lines = ["| backend, threads | quiet: wall median / p95 ms | quiet: cpu ms median | loaded: wall median / p95 ms "
             "| loaded: cpu ms median | mean of the two medians, ms |", "| --- | --- | --- | --- | --- | --- |"]
    score = {}
    for name in results["quiet"]:
        q, lo = results["quiet"][name], results["loaded"][name]
        score[name] = statistics.fmean([statistics.median(q["wall"]), statistics.median(lo["wall"])])
        lines.append(f"| {name} | {statistics.median(q['wall']):.0f} / {p95(q['wall']):.0f} "
                     f"| {statistics.median(q['cpu']):.0f} | {statistics.median(lo['wall']):.0f} / {p95(lo['wall']):.0f} "
                     f"| {statistics.median(lo['cpu']):.0f} | {score[name]:.0f} |")
    best = min(score, key=score.get)
    lines.append(f"fastest on the median of the two situations: {best} ({score[best]:.0f} ms)")
    # The node's parameter: "auto" runs ONNX Runtime when an export of the weights is present.
    lines.append("node default this recommends: backend " + ("auto" if best.startswith("onnxruntime") else "torch"))
    return "\n".join(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
