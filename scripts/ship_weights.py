"""Ship a training run's weights: copy its checkpoint to weights/cigocc_lite.safetensors, score
it on the held-out synthetic sequence with the official metric, and write the card
weights/README.md (data, steps, time, metrics, the command that reproduces it).

    scripts/in-env.sh python scripts/ship_weights.py runs/lite_ship --command "<the train command>"
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

from cigocc_ros.resources import SHIPPED_WEIGHTS  # noqa: E402
from cigocc_ros.model.checkpoint import read_metadata  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", help="training run folder (last.safetensors, the train log)")
    ap.add_argument("--log", default="", help="the run's console log (default: <run>.log)")
    ap.add_argument("--command", required=True, help="the command that produced the run")
    ap.add_argument("--machine", default="2-core x86-64 CPU, no GPU (the project's development machine), "
                    "shared with other work during the run")
    args = ap.parse_args()
    run = Path(args.run)
    ckpt = run / "last.safetensors"
    cfg, extra = read_metadata(ckpt)
    dst = REPO / "weights" / SHIPPED_WEIGHTS
    shutil.copyfile(ckpt, dst)

    metrics_path = REPO / "weights" / "cigocc_lite.val.metrics.json"
    from cigocc_ros.data.synthetic import FORMAT_VERSION, default_dataset

    held_out = default_dataset()
    subprocess.run([sys.executable, "-m", "cigocc_ros.cli", "eval", str(dst), "--split", "val",
                    "--data", str(held_out), "--out", str(metrics_path)], check=True)
    try:
        trained_format = json.loads((Path(cfg.data.root) / "synthetic.json").read_text())["format"]
    except (OSError, ValueError, KeyError):
        trained_format = "unknown"
    m = json.loads(metrics_path.read_text())
    log = Path(args.log or f"{run}.log").read_text(errors="replace")
    found = re.findall(r"trained (\d+) steps in ([\d.]+) s", log)
    steps, seconds = (int(found[-1][0]), float(found[-1][1])) if found else (extra.get("step", 0), float("nan"))
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] \
        if (run / "metrics.jsonl").is_file() else []

    per_class = ", ".join(f"{k} {v:.1f}" for k, v in m["per_class"].items())
    card = f"""# Shipped weights: `{SHIPPED_WEIGHTS}`

The `lite` CIGOcc model (config stored inside the file; `cigocc_ros.model.checkpoint`), the
default of `cigocc_node`, `cigocc infer` and `cigocc demo`.

| | |
|---|---|
| data | the default synthetic SemanticKITTI dataset (`cigocc synth --default`; train sequences {', '.join(cfg.data.train_sequences)}, 10 labelled frames each; docs/synthetic.md), generator format {trained_format} |
| steps | {steps} (batch {cfg.train.batch_size}, AdamW lr {cfg.train.lr:g}, {cfg.train.schedule}, seed {cfg.train.seed}) |
| loss | {', '.join(f'{k} {v:g}' for k, v in cfg.loss.__dict__.items())} |
| time | {seconds / 60:.1f} min on {args.machine} |
| held-out metrics | sequence {', '.join(cfg.data.val_sequences)} of generator format {FORMAT_VERSION} (10 labelled frames), official metric: **IoU {m['iou']:.2f}, mIoU {m['miou']:.2f}** (precision {m['precision']:.2f}, recall {m['recall']:.2f}) |
| per-class IoU | {per_class} |
| validation during training (format {trained_format}) | {'; '.join(f"step {h['step']}: IoU {h['iou']:.2f} mIoU {h['miou']:.2f}" for h in history) or 'none'} |

Reproduce (from a fresh clone, after `make setup`):

```bash
{args.command}
scripts/in-env.sh python scripts/ship_weights.py {run} --command "..."
```

These weights are a working default for the demo and the tests, trained in a CPU budget on
synthetic streets; they are not a SemanticKITTI model. For real roads train the `full` config on
SemanticKITTI on a GPU (docs/training.md).
"""
    (REPO / "weights" / "README.md").write_text(card)
    print(card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
