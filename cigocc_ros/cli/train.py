"""`cigocc train`: optimise CIGOcc on a SemanticKITTI-layout dataset (cigocc_ros.training.trainer;
docs/training.md for the run folder and `--resume`)."""
from __future__ import annotations

import argparse

from ..config import load_experiment
from ..training.trainer import train
from .args import DEVICE_HELP, device_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="lite", help="config name (cigocc_ros/experiments/<name>.yaml) or path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=500 (repeatable)")
    p.add_argument("--data", default="", help="dataset root (sequences/XX/...); default: data.root, "
                   "else the default synthetic dataset (generated on first use)")
    p.add_argument("--out", default="runs/train", help="run folder")
    p.add_argument("--overlay", dest="overlays", action="append", default=[], metavar="YAML",
                   help="a YAML of config sections merged over --config before --set (e.g. "
                   "real: the real-frame fine-tune's data section; a config name or a path; repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--init", default="", metavar="CKPT", help="start from these weights (fine-tune; "
                   "the checkpoint must fit the config's model section)")
    p.add_argument("--device", default="auto", type=device_name, help=DEVICE_HELP)
    p.add_argument("--no-val", action="store_true", help="skip periodic validation")


def run(args: argparse.Namespace) -> int:
    # A bad config, or --init / --resume weights that do not fit (ConfigError, CheckpointError),
    # is one error line of cli/main.py.
    cfg = load_experiment(args.config, args.overrides, args.overlays)
    train(cfg, args.out, data=args.data, device=args.device, resume=args.resume, validate=not args.no_val,
          init=args.init)
    return 0
