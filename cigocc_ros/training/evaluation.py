"""Scoring a model, a checkpoint or submission files on a split with the official SSC metric
(completion IoU / precision / recall, per-class IoU, mIoU over classes 1-19); optionally
writing SemanticKITTI submission files (`<dir>/sequences/XX/predictions/NNNNNN.label`,
uint16 raw ids). `cigocc eval` (cigocc_ros/cli/eval.py) is the command around it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..config import ExperimentConfig, load_experiment
from ..data import semantic_kitti as sk
from ..data.dataset import SemanticKittiDataset, collate, dataset_root
from ..device import autocast_for, resolve_device, to_device
from ..metrics import SSCMetric
from ..model.checkpoint import load_checkpoint


@torch.inference_mode()
def predict_labels(model: nn.Module, batch: dict) -> torch.Tensor:
    """(B, X, Y, Z) uint8 argmax labels of the full-resolution SSC logits."""
    return model(batch)["ssc_logits"].argmax(1).to(torch.uint8)


def evaluate_model(model: nn.Module, dataset, cfg: ExperimentConfig, device: torch.device,
                   submission_dir: str | Path | None = None, progress: bool = False) -> dict:
    """Run `model` over every sample of `dataset` and return SSCMetric's summary dict."""
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
            seq, frame = dataset.frame_info(i)
            sk.write_prediction(sk.SequencePaths(submission_dir, seq).prediction(frame), pred_np)
    model.train(was_training)
    return metric.summary()


def evaluate_predictions(pred_root: str | Path, dataset) -> dict:
    """Score submission-format files `pred_root/sequences/XX/predictions/NNNNNN.label` (uint16
    raw ids) against the dataset's targets; a missing prediction file is an error."""
    metric = SSCMetric()
    size = tuple(dataset.cfg.grid.size)
    for i in range(len(dataset)):
        seq, frame = dataset.frame_info(i)
        path = sk.SequencePaths(pred_root, seq).prediction(frame)
        if not path.is_file():
            raise FileNotFoundError(f"no prediction for sequence {seq} frame {frame}: {path}")
        metric.add(sk.remap_labels(sk.read_voxel_labels(path, size)), dataset[i]["target"].numpy())
    return metric.summary()


def with_split_sequences(cfg: ExperimentConfig, split: str, sequences: tuple[str, ...] | list[str] | None
                         ) -> ExperimentConfig:
    """cfg whose `split` reads `sequences` instead (e.g. the real held-out 07 of a make-targets
    folder); unchanged when sequences is empty."""
    if not sequences:
        return cfg
    key = {"train": "train_sequences", "val": "val_sequences", "test": "test_sequences"}[split]
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **{key: tuple(sequences)}))


@dataclass
class EvalResult:
    metrics: dict  # SSCMetric.summary()
    data_root: str  # the dataset folder scored
    frames: int  # samples of the split


def evaluate_checkpoint(checkpoint: str | Path, split: str = "val", data: str = "", device: str = "auto",
                        submission_dir: str | Path | None = None, progress: bool = True,
                        sequences: tuple[str, ...] | None = None) -> EvalResult:
    """Score a checkpoint on `split` of `data` (default: its data.root, else the default
    synthetic dataset); `sequences` replaces the split's sequences."""
    dev = resolve_device(device)
    model, _ = load_checkpoint(checkpoint, map_location=dev)
    cfg, root = dataset_root(model.cfg, data)
    cfg = with_split_sequences(cfg, split, sequences)
    dataset = SemanticKittiDataset(cfg, split, augment=False)
    metrics = evaluate_model(model.to(dev), dataset, cfg, dev, submission_dir=submission_dir, progress=progress)
    return EvalResult(metrics, root, len(dataset))


def evaluate_submission(pred_root: str | Path, config: str = "lite", split: str = "val",
                        data: str = "", sequences: tuple[str, ...] | None = None) -> EvalResult:
    """Score submission files under `pred_root` against `split` of the dataset of `config`
    (`sequences` replaces the split's sequences)."""
    cfg, root = dataset_root(load_experiment(config), data)
    cfg = with_split_sequences(cfg, split, sequences)
    dataset = SemanticKittiDataset(cfg, split, augment=False)
    return EvalResult(evaluate_predictions(pred_root, dataset), root, len(dataset))
