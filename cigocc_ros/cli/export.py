"""`cigocc export`: a checkpoint -> an ONNX file of the network's inference forward
(onnx_export.py), checked against torch on one frame with ONNX Runtime when it is installed.
`--cache` writes it where backend "auto" finds it (backend.py: the cache, by the weights' hash)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..backend import cached_export_path, file_sha256
from ..inference import default_weights
from ..model.checkpoint import load_checkpoint
from ..onnx_export import export_onnx, parity


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights", nargs="?", default="", help="checkpoint (.safetensors); default: shipped weights")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--onnx", help="output .onnx file")
    where.add_argument("--cache", action="store_true",
                       help="write it to the export cache, where backend 'auto' finds it (by the weights' sha256)")
    p.add_argument("--stereo", action="store_true", help="add the metric 'depth' input (stereo mode of the node)")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs torch check")


def run(args: argparse.Namespace) -> int:
    weights = Path(args.weights) if args.weights else default_weights()
    sha = file_sha256(weights)  # a missing file is one error line (cli/main.py)
    out = cached_export_path(sha, args.stereo) if args.cache else Path(args.onnx)
    if out.suffix != ".onnx":
        print(f"error: {out}: --onnx must name a .onnx file", file=sys.stderr)
        return 2
    model, _ = load_checkpoint(weights)  # a CheckpointError is one error line (cli/main.py)
    t = time.perf_counter()
    try:
        export_onnx(model, out, stereo=args.stereo, source=weights.name, weights_sha256=sha)
    except ImportError as e:  # the optional onnx packages
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {'stereo' if args.stereo else 'mono'}, "
          f"{time.perf_counter() - t:.0f} s)")
    if not args.no_check:
        try:
            r = parity(model, out, stereo=args.stereo)
        except ImportError as e:
            print(f"check skipped: {e}")
            return 0
        print(f"ONNX Runtime vs torch on a random frame: max |logit diff| {r['max_abs_logit_diff']:.2e} "
              f"(logits up to {r['max_abs_logit']:.1f}), argmax agreement {100 * r['label_agreement']:.3f} %")
    return 0
