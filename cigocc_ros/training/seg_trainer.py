"""The 2D training (`cigocc train-seg`): the image encoder + segmentation branch on real labelled
pixels (CamVid and the KITTI frames' LiDAR labels; data/pixel_dataset.py), with the label-set
cross-entropy (model/losses.set_cross_entropy). Settings: ExperimentConfig.seg2d.

The run folder, like `cigocc train`'s:
  last.safetensors / best.safetensors   segmenter checkpoints (extra kind "segmenter"): the
                                        `--init` of `cigocc train` and the weights of `cigocc segment`
  last.state.safetensors                optimiser, scheduler and step, for --resume
  metrics.jsonl, log.jsonl              validation figures; the training loss every log_every steps
  tb/                                   TensorBoard scalars
The sample order and every sample's augmentation are functions of (seed, step), so a resumed
run continues with exactly the batches of an uninterrupted one. `best` is chosen on CamVid's
val split (never its test split, nor a held-out KITTI drive).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..config import ConfigError, ExperimentConfig, to_dict
from ..data.pixel_dataset import LABEL_SETS, PixelTrainSet
from ..device import autocast_for, resolve_device
from ..evaluation.segmentation import camvid_confusion, kitti_point_confusion, summary
from ..model.checkpoint import SEGMENTER_KIND, load_weights, save_checkpoint
from ..model.losses import set_cross_entropy
from ..model.segmenter import ImageSegmenter
from ..segmentation_inference import SegmentationPredictor
from .state import load_state, save_state
from .trainer import SeededSamples, make_optimizer, make_scheduler, sample_indices, seed_everything


def loss_labels(target: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, H, W) int64 label rows (255 = none) -> (B, H/stride, W/stride): the smallest row of
    each block, so a block keeps a sparse LiDAR label if any of its pixels has one (a max-pool
    would let "none" win). The loss at stride 2 costs a fourteenth of the full-resolution one on
    this CPU and sees the same stride-8 logits."""
    if stride == 1:
        return target
    return (-nn.functional.max_pool2d(-target.unsqueeze(1).float(), stride)).squeeze(1).long()


class SegTrainer:
    """Owns the segmenter, optimiser and run folder of one 2D training run."""

    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, device: str = "auto", log=print):
        self.cfg = cfg
        self.s = cfg.seg2d
        self.t = self.s.train
        self.run_dir = Path(run_dir)
        self.device = resolve_device(device)
        self.log = log
        seed_everything(self.t.seed)
        # channels_last: this CPU's convolutions run 1.6x faster on it (fp32, measured here).
        self.model = ImageSegmenter(cfg).to(self.device, memory_format=torch.channels_last)
        self.data = PixelTrainSet(self.s, log)
        self.samples = SeededSamples(self.data, self.t.seed)
        self.sets = torch.from_numpy(LABEL_SETS).to(self.device)
        self.weights = torch.from_numpy(self.data.weights).to(self.device)
        self.opt = make_optimizer(self.model, self.t)
        self.sched = make_scheduler(self.opt, self.t)
        self.step = 0
        self.best = -1.0
        self.writer = None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))

    # -- state ---------------------------------------------------------------------------
    def resume(self) -> None:
        state = load_state(self.run_dir / "last.state.safetensors")
        if state["config"] != to_dict(self.cfg):
            raise ConfigError(f"{self.run_dir}: the run was started with another config; resume with "
                             "the same --config and --set overrides")
        load_weights(self.model, self.run_dir / "last.safetensors", map_location=self.device)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.step, self.best = int(state["step"]), float(state["best"])
        self.log(f"resumed {self.run_dir} at step {self.step}")

    def save(self, name: str, metrics: dict | None = None) -> None:
        extra = {"kind": SEGMENTER_KIND, "step": self.step, **({"metrics": metrics} if metrics else {})}
        save_checkpoint(self.run_dir / f"{name}.safetensors", self.model, self.cfg, extra=extra)
        if name == "last":
            save_state(self.run_dir / "last.state.safetensors",
                       {"step": self.step, "best": self.best, "optimizer": self.opt.state_dict(),
                        "scheduler": self.sched.state_dict(), "config": to_dict(self.cfg)})

    # -- steps ---------------------------------------------------------------------------
    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = sample_indices(len(self.data), step, self.t.batch_size, 1, 0, self.t.seed)
        items = [self.samples.get(i, step) for i in idx]
        img = torch.stack([it["img"] for it in items]).to(self.device, memory_format=torch.channels_last)
        return img, torch.stack([it["target"] for it in items]).to(self.device)

    def train_step(self, img: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        with autocast_for(self.device, self.t.amp):
            logits = self.model(img)
        target = loss_labels(target, self.s.loss_stride)
        up = nn.functional.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
        loss = set_cross_entropy(up, target, self.sets, self.weights)
        loss.backward()
        gnorm = nn.utils.clip_grad_norm_(self.model.parameters(), self.t.grad_clip)
        self.opt.step()
        self.sched.step()
        return {"loss": float(loss.detach()), "grad_norm": float(gnorm), "lr": self.sched.get_last_lr()[0]}

    def fit(self, stop_at: int | None = None) -> list[dict]:
        """Train to seg2d.train.steps (or `stop_at`, to simulate an interruption)."""
        end = min(self.t.steps, stop_at) if stop_at is not None else self.t.steps
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter  # costs seconds to import

            self.writer = SummaryWriter(str(self.run_dir / "tb"))
        history = []
        bar = tqdm(total=end, initial=self.step, desc="train-seg", dynamic_ncols=True)
        t0, n0 = time.perf_counter(), self.step
        while self.step < end:
            logs = self.train_step(*self.batch(self.step))
            self.step += 1
            history.append({"step": self.step, **logs})
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.3f}")
            if self.step % self.t.log_every == 0 or self.step == end:
                rate = (self.step - n0) * self.t.batch_size / (time.perf_counter() - t0)
                for k, v in logs.items():
                    self.writer.add_scalar(f"train/{k}", v, self.step)
                self.writer.add_scalar("train/images_per_s", rate, self.step)
                with open(self.run_dir / "log.jsonl", "a") as f:
                    f.write(json.dumps({"step": self.step, **logs, "images_per_s": rate}) + "\n")
            if self.step % self.t.val_every == 0 or self.step == self.t.steps:
                self.validate()
            if self.step % self.t.ckpt_every == 0 or self.step == end:
                self.save("last")
        bar.close()
        self.writer.flush()
        self.log(f"trained {len(history)} steps in {time.perf_counter() - t0:.1f} s")
        return history

    def validate(self) -> dict:
        """CamVid val (mIoU picks `best`) and the KITTI validation drives, if any."""
        pred = SegmentationPredictor(self.model, self.device)
        camvid = (camvid_confusion(lambda im: pred.labels(im, self.s.camvid_eval_scale), self.s.camvid_root, "val")
                  if self.s.camvid_root else None)
        kitti = (kitti_point_confusion(pred.labels, self.s.kitti_root, self.s.kitti_val_sequences)[0]
                 if self.s.kitti_root and self.s.kitti_val_sequences else None)
        metrics = summary(camvid, kitti)
        score = metrics["camvid"]["miou"] if camvid else metrics["kitti"]["street_accuracy"] if kitti else -1.0
        line = [f"step {self.step}:"]
        if camvid:
            line.append(f"CamVid val mIoU {metrics['camvid']['miou']:.1f}")
            self.writer.add_scalar("val/camvid_miou", metrics["camvid"]["miou"], self.step)
        if kitti:
            line.append(f"KITTI {','.join(self.s.kitti_val_sequences)} street acc. {metrics['kitti']['street_accuracy']:.1f}")
            self.writer.add_scalar("val/kitti_street_accuracy", metrics["kitti"]["street_accuracy"], self.step)
        self.log(" ".join(line))
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, **metrics}) + "\n")
        if score > self.best:
            self.best = score
            self.save("best", metrics)
        return metrics


def train_segmenter(cfg: ExperimentConfig, run_dir: str | Path, device: str = "auto", resume: bool = False) -> SegTrainer:
    """A whole 2D run: `--resume` from run_dir, then training to seg2d.train.steps."""
    trainer = SegTrainer(cfg, run_dir, device)
    if resume:
        trainer.resume()
    trainer.fit()
    return trainer

