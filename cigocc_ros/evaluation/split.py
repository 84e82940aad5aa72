"""Scoring a model, a checkpoint or submission files on a split with the official SSC metric
(completion IoU / precision / recall, per-class IoU, mIoU over classes 1-19); optionally
writing SemanticKITTI submission files (`<dir>/sequences/XX/predictions/NNNNNN.label`,
uint16 raw ids). `cigocc eval` (cigocc_ros/cli/eval.py) is the command around it.

Beside the model it scores the controls of evaluation/controls.py on the same frames (issue
16): the shuffled-image control (each frame with another frame's image, its own calibration),
flat ground, and the per-voxel prior of the training frames (cached beside the data).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..config import ExperimentConfig, load_experiment
from ..data import semantic_kitti as sk
from ..data.dataset import SemanticKittiDataset, collate, dataset_root
from ..device import autocast_for, resolve_device, to_device
from ..model.checkpoint import load_checkpoint
from .controls import ShuffledImages, image_free_controls
from .ssc_metric import SSCMetric


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


def evaluate_controls(dataset, cfg: ExperimentConfig, model: nn.Module | None = None,
                      device: torch.device | None = None, train_dataset=None,
                      prior_path: str | Path | None = None, progress: bool = False) -> dict[str, dict]:
    """SSCMetric summaries of the controls on `dataset`: 'shuffled image' (needs `model`, and
    two frames or more), 'flat ground', and 'voxel prior' (needs `train_dataset`; cached at
    prior_path). Keys are absent when their input is."""
    out = {}
    if model is not None and len(dataset) >= 2:
        out["shuffled image"] = evaluate_model(model, ShuffledImages(dataset), cfg, device, progress=progress)
    out.update(image_free_controls(train_dataset, dataset, cfg.grid, prior_path))
    return out


def default_prior_path(cfg: ExperimentConfig) -> Path:
    """Where the voxel prior of cfg's training frames is cached: beside the data, named by
    what it was fitted on (another split or grid gets another file)."""
    key = json.dumps([list(cfg.data.train_sequences), list(cfg.grid.size), cfg.grid.voxel_size,
                      list(cfg.grid.origin), cfg.data.legacy_voxel_shift])
    return Path(cfg.data.root) / ".cigocc-controls" / f"prior-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"


def training_split(cfg: ExperimentConfig) -> SemanticKittiDataset | None:
    """The training split of cfg's data (for the voxel prior), or None with a note if absent."""
    try:
        return SemanticKittiDataset(cfg, "train", augment=False)
    except (FileNotFoundError, sk.DataFormatError) as e:
        print(f"note: no training frames for the voxel prior control ({e})")
        return None


def sequence_controls(checkpoint: str | Path, root: str | Path, sequence: str, before_frame: int,
                      device: str = "auto", train_root: str | Path | None = None) -> dict[str, dict]:
    """The controls of a checkpoint on the labelled frames of one sequence under `root` before
    frame `before_frame` (what `cigocc demo` scores), with the checkpoint's config: shuffled
    image, flat ground, and the voxel prior of the default split's training sequences under
    `train_root` when given."""
    from ..data.synthetic import DEFAULT_SPLIT

    dev = resolve_device(device)
    model, _ = load_checkpoint(checkpoint, map_location=dev)
    cfg = dataclasses.replace(model.cfg, data=dataclasses.replace(
        model.cfg.data, root=str(root), val_sequences=(sequence,), train_sequences=DEFAULT_SPLIT["train"]))
    held_out = SemanticKittiDataset(cfg, "val", augment=False)
    held_out.samples = [s for s in held_out.samples if int(s[1]) < before_frame]
    train = prior = None
    if train_root is not None:
        cfg_train = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(train_root)))
        train, prior = training_split(cfg_train), default_prior_path(cfg_train)
    return evaluate_controls(held_out, cfg, model.to(dev), dev, train, prior)


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
    controls: dict = field(default_factory=dict)  # control name -> SSCMetric.summary()


def evaluate_checkpoint(checkpoint: str | Path, split: str = "val", data: str = "", device: str = "auto",
                        submission_dir: str | Path | None = None, progress: bool = True,
                        sequences: tuple[str, ...] | None = None, controls: bool = True,
                        depth_input: str = "auto") -> EvalResult:
    """Score a checkpoint on `split` of `data` (default: its data.root, else the default
    synthetic dataset; `sequences` replaces the split's sequences), and with `controls` its
    controls on the same frames; `depth_input` "mono" / "stereo" overrides the checkpoint's
    data.stereo (the StereoSGBM depth of image_2/image_3 as the external depth input)."""
    if depth_input not in ("auto", "mono", "stereo"):
        raise ValueError(f"depth_input must be auto, mono or stereo, got {depth_input!r}")
    dev = resolve_device(device)
    model, _ = load_checkpoint(checkpoint, map_location=dev)
    model = model.to(dev)
    cfg, root = dataset_root(model.cfg, data)
    cfg = with_split_sequences(cfg, split, sequences)
    if depth_input != "auto":
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, stereo=depth_input == "stereo"))
    dataset = SemanticKittiDataset(cfg, split, augment=False)
    metrics = evaluate_model(model, dataset, cfg, dev, submission_dir=submission_dir, progress=progress)
    result = EvalResult(metrics, root, len(dataset))
    if controls:
        result.controls = evaluate_controls(dataset, cfg, model, dev, training_split(cfg), default_prior_path(cfg),
                                            progress=progress)
    return result


def evaluate_submission(pred_root: str | Path, config: str = "lite", split: str = "val",
                        data: str = "", sequences: tuple[str, ...] | None = None,
                        controls: bool = True) -> EvalResult:
    """Score submission files under `pred_root` against `split` of the dataset of `config`
    (`sequences` replaces the split's sequences), and with `controls` the image-free controls
    on the same frames."""
    cfg, root = dataset_root(load_experiment(config), data)
    cfg = with_split_sequences(cfg, split, sequences)
    dataset = SemanticKittiDataset(cfg, split, augment=False)
    result = EvalResult(evaluate_predictions(pred_root, dataset), root, len(dataset))
    if controls:
        result.controls = evaluate_controls(dataset, cfg, None, None, training_split(cfg), default_prior_path(cfg))
    return result
