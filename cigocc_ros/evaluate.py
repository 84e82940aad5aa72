"""`cigocc eval`: score a checkpoint on a split with the official SSC metric.

Writes metrics JSON (completion IoU / precision / recall, per-class IoU, mIoU over classes
1-19) and prints the papers' table; optionally writes SemanticKITTI submission files
(`<out>/sequences/XX/predictions/NNNNNN.label`, uint16 raw ids).

Beside the model it scores the controls of cigocc_ros/controls.py on the same frames (issue
16): the shuffled-image control (each frame with another frame's image, its own calibration),
flat ground, and the per-voxel prior of the training frames; the JSON holds them under
"controls" and the table prints them as rows below the model.
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


def evaluate_controls(dataset, cfg: ExperimentConfig, model: nn.Module | None = None,
                      device: torch.device | None = None, train_dataset=None,
                      prior_path: str | Path | None = None, progress: bool = False) -> dict[str, dict]:
    """SSCMetric summaries of the controls on `dataset`: 'shuffled image' (needs `model`, and
    two frames or more), 'flat ground', and 'voxel prior' (needs `train_dataset`; cached at
    prior_path). Keys absent when their input is."""
    from .controls import ShuffledImages, image_free_controls

    out = {}
    if model is not None and len(dataset) >= 2:
        out["shuffled image"] = evaluate_model(model, ShuffledImages(dataset), cfg, device, progress=progress)
    out.update(image_free_controls(train_dataset, dataset, cfg.grid, prior_path))
    return out


def default_prior_path(cfg: ExperimentConfig) -> Path:
    """Where `cigocc eval` caches the voxel prior of cfg's training frames: beside the data,
    named by what it was fitted on (another split or grid gets another file)."""
    import hashlib

    key = json.dumps([list(cfg.data.train_sequences), list(cfg.grid.size), cfg.grid.voxel_size,
                      list(cfg.grid.origin), cfg.data.legacy_voxel_shift])
    return Path(cfg.data.root) / ".cigocc-controls" / f"prior-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"


def training_split(cfg: ExperimentConfig):
    """The training split of cfg's data (for the voxel prior), or None with a note if absent."""
    from .data.dataset import SemanticKittiDataset
    from .data.semantic_kitti import DataFormatError

    try:
        return SemanticKittiDataset(cfg, "train", augment=False)
    except (FileNotFoundError, DataFormatError) as e:
        print(f"note: no training frames for the voxel prior control ({e})")
        return None


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
    p.add_argument("--no-controls", action="store_true", help="skip the controls (shuffled image, "
                   "flat ground, voxel prior of the training frames) printed beside the model")


def run(args: argparse.Namespace) -> int:
    from .config import load_experiment
    from .controls import control_checks
    from .data.dataset import SemanticKittiDataset
    from .metrics import format_rows
    from .model.checkpoint import load_checkpoint
    from .train import dataset_root, resolve_device

    if bool(args.checkpoint) == bool(args.predictions):
        raise SystemExit("give either a checkpoint or --predictions")
    if args.predictions:
        cfg, root = dataset_root(load_experiment(args.config), args.data)
        dataset = SemanticKittiDataset(cfg, args.split, augment=False)
        metrics = evaluate_predictions(args.predictions, dataset)
        default_out = Path(args.predictions) / f"{args.split}.metrics.json"
        model = device = None
    else:
        device = resolve_device(args.device)
        model, _ = load_checkpoint(args.checkpoint, map_location=device)
        cfg, root = dataset_root(model.cfg, args.data)
        dataset = SemanticKittiDataset(cfg, args.split, augment=False)
        metrics = evaluate_model(model.to(device), dataset, cfg, device,
                                 submission_dir=args.submission or None, progress=True)
        default_out = Path(args.checkpoint).with_suffix(f".{args.split}.metrics.json")
    controls = {}
    if not args.no_controls:
        controls = evaluate_controls(dataset, cfg, model, device, training_split(cfg),
                                     default_prior_path(cfg), progress=bool(model))
    out = Path(args.out) if args.out else default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"source": str(args.checkpoint or args.predictions), "data": root,
                               "split": args.split, "frames": len(dataset), **metrics,
                               "controls": controls}, indent=2))
    print(format_rows([("CIGOcc", metrics), *controls.items()]))
    for line in control_checks(metrics, controls):
        print(line)
    print(f"metrics written to {out}")
    return 0
