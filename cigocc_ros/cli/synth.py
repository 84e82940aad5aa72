"""`cigocc synth`: write synthetic SemanticKITTI sequences (or the default dataset) to disk with
the generator in cigocc_ros.data.synthetic. `cigocc preview` (cli/preview.py) draws a frame."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..data import synthetic as syn


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default="", help="output folder (gets sequences/XX/); "
                   "default with --default: synthetic-v<format> in $CIGOCC_DATA_DIR (the project environment: data/), "
                   "else in ~/.cache/cigocc; $CIGOCC_SYNTHETIC_ROOT names the folder itself")
    p.add_argument("--default", action="store_true",
                   help="write the default dataset (fixed seeds and split), or reuse it if complete")
    p.add_argument("--sequences", nargs="+", default=[], metavar="XX", help="sequence numbers to write")
    p.add_argument("--seeds", nargs="+", type=int, default=[], metavar="SEED",
                   help="one seed per sequence (default: 1000 + the sequence number)")
    p.add_argument("--frames", type=int, default=0, help="frames per sequence (default 50)")
    p.add_argument("--workers", type=int, default=1, help="sequences written in parallel")


def run(args: argparse.Namespace) -> int:
    frames = args.frames or syn.DEFAULT_FRAMES
    if frames < 1:
        print(f"--frames must be >= 1, got {frames}", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        print(msg, flush=True)

    t0 = time.perf_counter()
    if args.default:
        if args.sequences or args.seeds:
            print("--default writes the fixed default sequences; drop --sequences / --seeds", file=sys.stderr)
            return 2
        root = Path(args.root) if args.root else syn.default_root()
        done = syn.dataset_complete(root, syn.DEFAULT_SEEDS, frames)
        syn.default_dataset(root, num_frames=frames, workers=args.workers, log=log)
        what = "reused" if done else "wrote"
        print(f"{what} the default synthetic dataset at {root} "
              f"(train {' '.join(syn.DEFAULT_SPLIT['train'])}, val {' '.join(syn.DEFAULT_SPLIT['val'])}) "
              f"in {time.perf_counter() - t0:.1f} s")
        return 0
    if not args.root or not args.sequences:
        print("give --root and --sequences (or --default)", file=sys.stderr)
        return 2
    bad = [s for s in args.sequences if not (s.isdigit() and len(s) == 2)]
    if bad:
        print(f"sequence numbers are two digits (00..99), got {bad[0]!r}", file=sys.stderr)
        return 2
    seeds = args.seeds or [1000 + int(s) for s in args.sequences]
    if len(seeds) != len(args.sequences):
        print(f"{len(seeds)} seeds for {len(args.sequences)} sequences", file=sys.stderr)
        return 2
    n = 0
    for seq, seed in zip(args.sequences, seeds, strict=True):
        path = syn.write_sequence(args.root, seq, seed, frames)
        n += frames
        print(f"wrote {path} (seed {seed}, {frames} frames)", flush=True)
    dt = time.perf_counter() - t0
    print(f"{n} frames in {dt:.1f} s ({dt / max(n, 1):.2f} s a frame, written)")
    return 0
