"""`cigocc eval`: score a checkpoint on a split with the official SSC metric.

Writes metrics JSON (completion IoU / precision / recall, per-class IoU, mIoU over classes
1-19) and prints the papers' table; optionally writes SemanticKITTI submission files
(`<out>/sequences/XX/predictions/NNNNNN.label`, uint16 raw ids).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from .config import ExperimentConfig


@torch.inference_mode()
def predict_labels(model: nn.Module, batch: dict) -> torch.Tensor:
    """(B, X, Y, Z) uint8 argmax labels of the full-resolution SSC logits."""
    return model(batch)["ssc_logits"].argmax(1).to(torch.uint8)


def evaluate_model(model: nn.Module, dataset, cfg: ExperimentConfig, device: torch.device,
                   submission_dir: str | Path | None = None, progress: bool = False) -> dict:
    """Run `model` over every sample of `dataset` and return SSCMetric's summary dict."""
    from tqdm import tqdm

    from .data.dataset import collate
    from .metrics import SSCMetric
    from .train import autocast_for, to_device

    was_training = model.training
    model.eval()
    metric = SSCMetric(cfg.model.num_classes)
    for i in tqdm(range(len(dataset)), desc="eval", disable=not progress, dynamic_ncols=True):
        sample = dataset[i]
        batch = to_device(collate([sample]), device)
        with autocast_for(device, cfg.train.amp):
            pred = predict_labels(model, batch)
        pred_np = pred[0].cpu().numpy()
        metric.add(pred_np, sample["target"].numpy())
        if submission_dir is not None:
            from .data.semantic_kitti import write_prediction

            seq, frame = dataset.frame_info(i)
            write_prediction(Path(submission_dir) / "sequences" / seq / "predictions" / f"{frame}.label", pred_np)
    model.train(was_training)
    return metric.summary()


def evaluate_predictions(pred_root: str | Path, dataset) -> dict:
    """Score submission-format files `pred_root/sequences/XX/predictions/NNNNNN.label` (uint16
    raw ids) against the dataset's targets; a missing prediction file is an error."""
    from .data.semantic_kitti import read_voxel_labels, remap_labels
    from .metrics import SSCMetric

    metric = SSCMetric()
    size = tuple(dataset.cfg.grid.size)
    for i in range(len(dataset)):
        seq, frame = dataset.frame_info(i)
        path = Path(pred_root) / "sequences" / seq / "predictions" / f"{frame}.label"
        if not path.is_file():
            raise FileNotFoundError(f"no prediction for sequence {seq} frame {frame}: {path}")
        metric.add(remap_labels(read_voxel_labels(path, size)), dataset[i]["target"].numpy())
    return metric.summary()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", default="", help="model checkpoint (.safetensors)")
    p.add_argument("--predictions", default="", help="score these submission files "
                   "(<dir>/sequences/XX/predictions/NNNNNN.label) instead of running a model")
    p.add_argument("--config", default="lite", help="config for --predictions (grid, data)")
    p.add_argument("--data", default="", help="dataset root; default: the checkpoint's data.root, "
                   "else the default synthetic dataset")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--out", default="", help="metrics JSON path (default: next to the checkpoint)")
    p.add_argument("--submission", default="", help="also write submission .label files here")


def run(args: argparse.Namespace) -> int:
    from .config import load_experiment
    from .data.dataset import SemanticKittiDataset
    from .metrics import format_table
    from .model.checkpoint import load_checkpoint
    from .train import dataset_root, resolve_device

    if bool(args.checkpoint) == bool(args.predictions):
        raise SystemExit("give either a checkpoint or --predictions")
    if args.predictions:
        cfg, root = dataset_root(load_experiment(args.config), args.data)
        dataset = SemanticKittiDataset(cfg, args.split, augment=False)
        metrics = evaluate_predictions(args.predictions, dataset)
        default_out = Path(args.predictions) / f"{args.split}.metrics.json"
    else:
        device = resolve_device(args.device)
        model, _ = load_checkpoint(args.checkpoint, map_location=device)
        cfg, root = dataset_root(model.cfg, args.data)
        dataset = SemanticKittiDataset(cfg, args.split, augment=False)
        metrics = evaluate_model(model.to(device), dataset, cfg, device,
                                 submission_dir=args.submission or None, progress=True)
        default_out = Path(args.checkpoint).with_suffix(f".{args.split}.metrics.json")
    out = Path(args.out) if args.out else default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"source": str(args.checkpoint or args.predictions), "data": root,
                               "split": args.split, "frames": len(dataset), **metrics}, indent=2))
    print(format_table(metrics, "CIGOcc"))
    print(f"metrics written to {out}")
    return 0
