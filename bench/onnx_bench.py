"""torch vs ONNX Runtime on the CPU, side by side in one run: the network's forward and the whole
Predictor.predict of both backends on the same real KITTI frame, interleaved (torch, ORT, torch,
ORT...) so that a shared machine's load falls on both alike.

    scripts/in-env.sh python bench/onnx_bench.py                      # shipped lite weights
    scripts/in-env.sh python bench/onnx_bench.py --onnx lite.onnx --iters 20 --threads 2

Without --onnx the checkpoint is exported first (cigocc export, about 30 s). Both backends get
the same number of intra-op threads. "cpu ms" is the CPU time of all this process's threads
per call (about threads x wall when the cores are free): the work a frame costs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="", help="checkpoint (default: the shipped weights)")
    ap.add_argument("--onnx", default="", help="an exported .onnx of those weights (default: export now)")
    ap.add_argument("--iters", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch
    from model_bench import load_frame, machine

    from cigocc_ros.geometry import crop_or_pad
    from cigocc_ros.inference import OrtForward, Predictor, default_weights
    from cigocc_ros.model.checkpoint import load_checkpoint
    from cigocc_ros.onnx_export import compare_outputs, export_onnx

    torch.set_num_threads(args.threads)
    weights = Path(args.weights) if args.weights else default_weights()
    model, _ = load_checkpoint(weights)
    tmp = tempfile.TemporaryDirectory()
    onnx_path = Path(args.onnx) if args.onnx else export_onnx(model, Path(tmp.name) / "model.onnx", source=weights.name)
    cfg = model.cfg
    image, K, T, source = load_frame()
    img, K2 = crop_or_pad(image, K, cfg.model.image_size)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255)
    Kt, Tt = torch.from_numpy(K2).float()[None], torch.from_numpy(T).float()[None]
    cpu = torch.device("cpu")
    ort = OrtForward(onnx_path, cpu, threads=args.threads)
    preds = {"torch": Predictor(cfg, model, cpu), "onnxruntime": Predictor(cfg, ort, cpu)}

    def torch_forward():
        with torch.inference_mode():
            return model({"img": x, "K": Kt, "T_cam_grid": Tt}, inference=True)["ssc_logits_coarse"]

    forwards = {"torch": torch_forward, "onnxruntime": lambda: ort(x, Kt, Tt, None)["coarse"]}
    calls = {f"{b} forward": f for b, f in forwards.items()}
    calls.update({f"{b} predict": (lambda p=p: p.predict(image, K, T)) for b, p in preds.items()})
    wall: dict[str, list[float]] = {k: [] for k in calls}
    cpu_ms: dict[str, list[float]] = {k: [] for k in calls}
    for i in range(args.warmup + args.iters):
        for name, fn in calls.items():  # interleaved: the load of the moment hits every call
            t, c = time.perf_counter(), time.process_time()
            fn()
            if i >= args.warmup:
                wall[name].append((time.perf_counter() - t) * 1000)
                cpu_ms[name].append((time.process_time() - c) * 1000)
    parity = compare_outputs(torch_forward().numpy(), forwards["onnxruntime"]().numpy())
    a, b = preds["torch"].predict(image, K, T), preds["onnxruntime"].predict(image, K, T)
    parity["full_grid_label_agreement"] = float((a.labels == b.labels).mean())
    print(f"# {machine()}; torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, "
          f"{args.threads} threads each; {cfg.name} ({weights.name}), frame {source}; "
          f"{args.iters} iterations after {args.warmup} warm-up, interleaved")
    print("| call | wall median ms | wall min ms | cpu ms median |")
    print("| --- | --- | --- | --- |")
    for name in calls:
        print(f"| {name} | {statistics.median(wall[name]):.1f} | {min(wall[name]):.1f} | "
              f"{statistics.median(cpu_ms[name]):.1f} |")
    print("parity:", json.dumps({k: round(v, 7) for k, v in parity.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
