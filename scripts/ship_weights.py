"""Ship trained weights: copy the last checkpoint of the final run to
weights/cigocc_lite.safetensors, score it, and write the card weights/README.md.

Scores (every command is written on the card):
- the held-out synthetic sequence with the official metric, mono with the controls beside it
  (`cigocc eval`: shuffled image, flat ground, voxel prior of the training frames) and the
  issue-16 checks, and stereo (`cigocc eval --input stereo`);
- stage 2's proposal recall by distance on the same frames (bench/proposal_recall.py);
- the held-out real sequence against its labelled scans, mono and stereo beside the two trivial
  predictors (`cigocc lidar-report`), for these weights and for the weights they replace;
- the claims (scripts/claims.py --write): real 07 and the demo's held-out synthetic frames with
  the controls, into weights/claims.json, rendered as the card's claims block; the test suite
  (test/test_claims.py) measures them again. The voxel prior they use, fitted on the training
  split of --data, must be current: `scripts/claims.py --write-prior <data>` before this script.

    scripts/in-env.sh python scripts/ship_weights.py runs/syn runs/mixed \\
        --command "<command of runs/syn>" --command "<command of runs/mixed>"

Each run folder needs last.safetensors (the last run's is shipped), config.json and its
console log <run>.log (the "trained N steps in S s" line).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cigocc_ros.evaluation.ssc_metric import format_rows  # noqa: E402
from cigocc_ros.model.checkpoint import read_metadata  # noqa: E402
from cigocc_ros.resources import SHIPPED_WEIGHTS  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from claims import render as render_claims  # noqa: E402

WEIGHTS = REPO / "weights"
REAL_VAL = REPO.parent / "shared" / "kitti_samples" / "sequences" / "07"


def sh(cmd: list[str], log: list[str]) -> None:
    """Run a command from the repository root, recording it for the card."""
    log.append(" ".join(cmd))
    print("+", log[-1], flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def run_summary(run: Path) -> dict:
    """Data, steps, lr and training time of one run folder."""
    cfg = json.loads((run / "config.json").read_text())
    log = Path(f"{run}.log").read_text(errors="replace") if Path(f"{run}.log").is_file() else ""
    found = re.findall(r"trained (\d+) steps in ([\d.]+) s", log)
    steps, seconds = (int(found[-1][0]), float(found[-1][1])) if found else (None, None)
    d = cfg["data"]
    try:
        fmt = json.loads((Path(d["root"]) / "synthetic.json").read_text())["format"]
    except (OSError, ValueError, KeyError):
        fmt = "?"
    present = [q for q in d["train_sequences"] if (Path(d["root"]) / "sequences" / q).is_dir()]  # others skipped
    data = f"{d['root']} (synthetic format {fmt}; train {', '.join(present)})"
    if d.get("real_root"):
        data += (f" + real frames {d['real_root']} (train {', '.join(d['real_train_sequences'])}; "
                 f"{', '.join(d['real_val_sequences'])} held out), real share {d['real_share']}")
    extras = [f"stereo input with drop {d.get('stereo_drop', 0)}" if d.get("stereo") else "mono input"]
    t = cfg["train"]
    return {"run": str(run), "data": data, "steps": steps, "seconds": seconds, "lr": t["lr"],
            "schedule": t["schedule"], "seed": t["seed"], "batch": t["batch_size"],
            "ssc_scale": cfg["loss"]["ssc_scale"], "extras": ", ".join(extras)}


def lidar_table(report_json: Path) -> dict:
    """{predictor: summary} of a lidar-report run."""
    return {r["name"]: r for r in json.loads(report_json.read_text())["reports"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="training run folders in order (the last one is shipped)")
    ap.add_argument("--command", action="append", required=True, help="the command of each run, in order")
    ap.add_argument("--data", required=True, help="synthetic dataset with the held-out sequence (val split)")
    ap.add_argument("--previous", default="", help="the weights being replaced (scored on the real sequence)")
    ap.add_argument("--ship", default="", help="the checkpoint to ship (default: the last run's last.safetensors; "
                    "e.g. its scripts/calibrate_empty.py output)")
    ap.add_argument("--seg-weights", default="", help="segmentation branch of the stereo + segmentation control "
                    "for every real report (default: each report's own weights'; give one so both reports share it)")
    ap.add_argument("--notes", default="", help="a Markdown file appended to the card (reading, targets missed)")
    ap.add_argument("--machine", default="2-core x86-64 CPU, no GPU (the project's development machine), "
                    "shared with other engineers' work during the runs (load average 8-11)")
    args = ap.parse_args()
    if len(args.command) != len(args.runs):
        raise SystemExit("give one --command per run")
    runs = [Path(r) for r in args.runs]
    dst = WEIGHTS / SHIPPED_WEIGHTS
    if args.previous:
        prev = WEIGHTS / "previous.safetensors"
        shutil.copyfile(args.previous, prev)
    shutil.copyfile(args.ship or runs[-1] / "last.safetensors", dst)
    cfg, extra = read_metadata(dst)
    cmds: list[str] = []
    py = sys.executable
    w = str(dst.relative_to(REPO))
    mono, stereo = WEIGHTS / "cigocc_lite.val.metrics.json", WEIGHTS / "cigocc_lite.val.stereo.metrics.json"
    sh([py, "-m", "cigocc_ros.cli", "eval", w, "--data", args.data, "--split", "val", "--input", "mono",
        "--out", str(mono.relative_to(REPO))], cmds)
    sh([py, "-m", "cigocc_ros.cli", "eval", w, "--data", args.data, "--split", "val", "--input", "stereo",
        "--no-controls", "--out", str(stereo.relative_to(REPO))], cmds)
    recall = WEIGHTS / "cigocc_lite.proposals.json"
    sh([py, "bench/proposal_recall.py", w, "--data", args.data, "--out", str(recall.relative_to(REPO))], cmds)
    real_md = {}
    for name, weights in (("shipped", w), *((("previous", "weights/previous.safetensors"),) if args.previous else ())):
        out = REPO / "outputs" / f"real-report-{name}"
        seg = ["--seg-weights", args.seg_weights] if args.seg_weights else []
        sh([py, "-m", "cigocc_ros.cli", "lidar-report", str(REAL_VAL), "--stereo", "--weights", weights, *seg,
            "--out", str(out.relative_to(REPO))], cmds)
        shutil.copyfile(out / "report.json", WEIGHTS / f"cigocc_lite.real-report{'' if name == 'shipped' else '.previous'}.json")
        real_md[name] = (out / "report.md").read_text()
    if args.previous:
        (WEIGHTS / "previous.safetensors").unlink()
    # The card's headline figures and orderings: measured into weights/claims.json, which
    # test/test_claims.py measures again (the voxel prior file: claims.py --write-prior).
    sh([py, "scripts/claims.py", "--write"], cmds)
    claims_block = render_claims(json.loads((WEIGHTS / "claims.json").read_text()))

    m = json.loads(mono.read_text())
    s = json.loads(stereo.read_text())
    from cigocc_ros.evaluation.controls import control_checks

    rows = format_rows([("CIGOcc (mono)", m), ("CIGOcc (stereo)", s), *m["controls"].items()])
    checks = control_checks(m, m["controls"])
    checks.append(f"stereo mIoU {s['miou']:.2f} / IoU {s['iou']:.2f} vs mono {m['miou']:.2f} / {m['iou']:.2f}: "
                  f"{'stereo better' if s['miou'] > m['miou'] and s['iou'] > m['iou'] else 'stereo NOT better on both'}")
    rec = json.loads(recall.read_text())["results"]
    score = cfg.model.proposal_score
    rec_rows = "\n".join(f"| {band} | {v['recall']:.2f} | {v['occupied']} |" for band, v in rec[score].items()
                         if isinstance(v, dict))
    far = [v["recall"] for band, v in rec[score].items() if isinstance(v, dict) and band.startswith(">")][0]
    phases = [run_summary(r) for r in runs]
    phase_rows = "\n".join(
        f"| {i + 1} | {p['data']}; {p['extras']} | {p['steps']} (batch {p['batch']}, AdamW lr {p['lr']:g}, "
        f"{p['schedule']}, seed {p['seed']}, ssc_scale {p['ssc_scale']}) | "
        f"{(p['seconds'] or float('nan')) / 60:.0f} min |" for i, p in enumerate(phases))
    card = f"""# Shipped weights: `{SHIPPED_WEIGHTS}`

The `lite` CIGOcc model (config stored inside the file; `cigocc_ros.model.checkpoint`), the
default of `cigocc_node`, `cigocc infer` and `cigocc demo`: the sub-voxel head (2x2x4),
stage-1 occupancy proposals and the learned stereo blend (docs/architecture.md). One set of
weights serves mono and stereo input.

## Training ({args.machine})

| phase | data | steps | time |
|---|---|---|---|
{phase_rows}

Each phase starts from the previous one's last weights (`--init`). Commands:

```bash
{chr(10).join(args.command)}
```

## Held-out synthetic sequence ({', '.join(cfg.data.val_sequences) or '08'} of `{args.data}`, {m['frames']} labelled frames)

Official metric; the controls on the same frames below the model (`cigocc eval`):

{rows}

{chr(10).join('- ' + c for c in checks)}

Stage-2 proposal recall of occupied in-view coarse voxels (`{score}` score,
bench/proposal_recall.py, same frames, mono):

| distance | recall | occupied in view |
|---|---:|---:|
{rec_rows}

Far-range target (>= 0.5 beyond 30 m): {'met' if far >= 0.5 else 'MISSED'} ({far:.2f}).

## Claims: the figures the tests hold these weights to

{claims_block}

## Held-out real sequence 07 (5 frames of ../shared/kitti_samples, never trained on)

Against the labelled LiDAR scans (`cigocc lidar-report`, docs/real-frames.md), in percent
(the model and control rows are those of the claims above; here also the segmentation control
and the IoU per frame):

{real_md['shipped']}
{('The weights these replace, same command:' + chr(10) + chr(10) + real_md['previous']) if 'previous' in real_md else ''}

{Path(args.notes).read_text() if args.notes else ''}
## Commands that produced the figures

```bash
{chr(10).join('scripts/in-env.sh ' + c.replace(py, 'python') for c in cmds)}
```

These weights are trained in a CPU budget (minutes, not the paper's 25k GPU steps); they are
a working default for the demo, the tests and the node, not a SemanticKITTI model. For real
roads train the `full` config on SemanticKITTI on a GPU (docs/training.md).
"""
    (WEIGHTS / "README.md").write_text(card)
    print(card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
