"""FLOPs of the lite and full configs' inference forward (torch.utils.flop_counter), by stage,
and how they depend on the number of proposed queries (issue 23).

    scripts/in-env.sh python bench/flops.py                          # lite and full, seconds
    scripts/in-env.sh python bench/flops.py --config full --set model.unet_block=separable
    scripts/in-env.sh python bench/flops.py --real                   # + one real forward each

The counts are made on fake tensors (torch._subclasses.FakeTensorMode): the forward runs its
operators for their shapes only, so counting the full config takes seconds and no arithmetic;
the counter's totals equal a real forward's (checked in test/test_flops.py). FLOPs are 2 per
multiply-add of the convolutions and matrix products; grid_sample, scatter, softmax, norms and
interpolation are not counted (torch's counter has no formula for them).

Inference cross-attends only the proposed queries, a prefix of the top max_queries slots
(CIGOcc.voxel_queries), so its FLOPs depend on the frame: printed are every slot (what an ONNX
export and a CUDA-graph capture compute: `static_shapes`), no proposal, and the cost of 1,000
proposed queries; "before issue 23" adds back Q_d projected for every voxel. `--real` adds one
real CPU forward on the KITTI frame of bench/model_bench.py (shipped weights for lite, random
for full: a full forward takes 10-25 s on a 2-core CPU) with its number of proposed queries.
The lite model's input is its 370x1220 crop, full's 384x1280; the camera is KITTI's.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

CGFORMER_GFLOPS = 314.0  # the full config's target (issue 23)
STAGES = ("encoder", "seg_head", "depth_head", "depth_gate", "context", "unet", "aux_head", "query_proj",
          "cross_attn", "self_attn", "head", "evidence")


def frame_batch(cfg):
    """The model's input for KITTI 00/000000 (cropped or padded to the config's image size)."""
    import torch
    from model_bench import load_frame

    from cigocc_ros.geometry import crop_or_pad

    frame, K, T, source = load_frame()
    img, K2 = crop_or_pad(frame, K, cfg.model.image_size)
    batch = {"img": torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255),
             "K": torch.from_numpy(K2).float()[None], "T_cam_grid": torch.from_numpy(T).float()[None]}
    return batch, source


def count(model, batch: dict, slots: int | None = None, fake: bool = True) -> tuple[int, dict[str, int]]:
    """(total FLOPs, FLOPs per top-level stage) of model(batch, inference=True). With `slots`
    the fixed-shape path computing that many query slots (static_shapes, max_queries = slots),
    which is inference with `slots` proposed queries; None: the model's own path."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    m = model.cfg.model
    keep = (model.static_shapes, m.max_queries)
    if slots is not None:
        model.static_shapes, m.max_queries = True, slots
    try:
        counter = FlopCounterMode(display=False)
        if fake:
            with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.inference_mode(), counter:
                model({k: mode.from_tensor(v) for k, v in batch.items()}, inference=True)
        else:
            with torch.inference_mode(), counter:
                model(batch, inference=True)
    finally:
        model.static_shapes, m.max_queries = keep
    per = counter.get_flop_counts()
    root = type(model).__name__
    def stage(s: str) -> int:  # a module, or the members of a ModuleList (which is never called)
        if f"{root}.{s}" in per:
            return sum(per[f"{root}.{s}"].values())
        return sum(sum(v.values()) for k, v in per.items() if re.fullmatch(rf"{root}\.{s}\.\d+", k))

    stages = {s: stage(s) for s in STAGES}
    return counter.get_total_flops(), {s: f for s, f in stages.items() if f}


def measure(config: str, overrides: list[str], real: bool) -> dict:
    import torch

    from cigocc_ros.config import load_experiment
    from cigocc_ros.model.cigocc import build_model

    torch.manual_seed(0)
    cfg = load_experiment(config, overrides)
    model = build_model(cfg).eval()
    weights = "random (seed 0)"
    if real and config == "lite" and not overrides:
        from cigocc_ros.inference import default_weights
        from cigocc_ros.model.checkpoint import load_weights

        load_weights(model, default_weights())
        weights = default_weights().name
    batch, source = frame_batch(cfg)
    n_q = min(cfg.model.max_queries, model.voxel_xyz.shape[0])
    every, stages = count(model, batch, n_q)
    none, _ = count(model, batch, 1)
    half, _ = count(model, batch, max(n_q // 2, 2))
    per_query = (every - half) / (n_q - max(n_q // 2, 2))
    C, N = cfg.model.unet_channels, model.voxel_xyz.shape[0]
    res = {"config": config, "overrides": overrides, "image_size": list(cfg.model.image_size),
           "params_M": sum(p.numel() for p in model.parameters()) / 1e6, "max_queries": n_q,
           "every_slot": every, "no_proposal": none, "per_1000_queries": 1000 * per_query,
           # Before: Q_d (a 1x1x1 convolution) over every voxel, then gathered for the slots.
           "before_issue23": every + 2 * C * C * (N - n_q), "stages_every_slot": stages, "frame": source}
    if real:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        total, _ = count(model, batch, fake=False)
        with torch.inference_mode():
            proposed = int(model(batch, inference=True)["proposal"].sum())
        res["real"] = {"weights": weights, "flops": total, "proposed": proposed}
    return res


def g(flops: float) -> str:
    return f"{flops / 1e9:.2f}" if flops < 1e10 else f"{flops / 1e9:.1f}"


def report(res: dict) -> str:
    name = res["config"] + (f" ({' '.join(res['overrides'])})" if res["overrides"] else "")
    lines = [f"## {name}: {res['params_M']:.2f} M parameters, image {res['image_size'][0]}x{res['image_size'][1]}, "
             f"max_queries {res['max_queries']}", "",
             "| GFLOPs per frame | |", "| --- | --- |",
             f"| before issue 23 (every slot, Q_d for every voxel) | {g(res['before_issue23'])} |",
             f"| every query slot (ONNX export, CUDA graph; inference when all {res['max_queries']} are proposed) "
             f"| {g(res['every_slot'])} |",
             f"| inference, no proposed query | {g(res['no_proposal'])} |",
             f"| each 1,000 proposed queries add | {g(res['per_1000_queries'])} |"]
    if "real" in res:
        r = res["real"]
        lines.append(f"| inference on {Path(res['frame']).name} ({r['weights']}): {r['proposed']} proposed "
                     f"| {g(r['flops'])} |")
    lines += ["", "By stage (every slot), GFLOPs: " + ", ".join(
        f"{k} {g(v)}" for k, v in sorted(res["stages_every_slot"].items(), key=lambda kv: -kv[1]))]
    if res["config"] == "full":
        worst = res.get("real", {}).get("flops", res["every_slot"])
        gap = worst / 1e9 - CGFORMER_GFLOPS
        lines.append(f"Target <= {CGFORMER_GFLOPS:.0f} GFLOPs (CGFormer): "
                     + (f"met ({-gap:.1f} below)" if gap <= 0 else f"missed by {gap:.1f} GFLOPs "
                        f"({'this frame' if 'real' in res else 'every slot'}; with no proposed query by "
                        f"{res['no_proposal'] / 1e9 - CGFORMER_GFLOPS:.1f})"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", nargs="+", default=["lite", "full"])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (every config)")
    ap.add_argument("--real", action="store_true", help="also one real CPU forward on the KITTI frame")
    args = ap.parse_args(argv)
    import torch
    from model_bench import machine

    print(f"# bench/flops.py {' '.join(sys.argv[1:] if argv is None else argv)}; {machine()}; torch {torch.__version__}")
    for config in args.config:
        print(report(measure(config, args.set, args.real)), end="\n\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
