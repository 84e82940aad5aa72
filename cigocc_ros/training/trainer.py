"""Training CIGOcc on a SemanticKITTI-layout dataset (`cigocc train`: cigocc_ros/cli/train.py).

One process, or many under `torchrun` (DistributedDataParallel; NCCL on GPUs, gloo on CPUs).
The run folder holds:
  last.safetensors / best.safetensors   model checkpoints (cigocc_ros.model.checkpoint format)
  last.state.safetensors                optimizer, scheduler, RNG and step, for --resume
  metrics.jsonl                         one line per validation
  log.jsonl                             the loss terms, lr and steps/s every train.log_every steps
  tb/                                   TensorBoard scalars

Determinism: the sample order and every sample's augmentation are functions of
(train.seed, step), not of process state, so `--resume` continues with exactly the batches
and the loss curve of an uninterrupted run.
"""
from __future__ import annotations

import gc
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ..config import ConfigError, ExperimentConfig, OptimConfig, TrainConfig, to_dict
from ..data.dataset import collate, dataset_root
from ..data.mixed import training_sets
from ..device import autocast_for, resolve_device, to_device
from ..evaluation.split import evaluate_model
from ..model.checkpoint import SEGMENTER_KIND, architecture_diff, load_weights, read_metadata, save_checkpoint
from ..model.cigocc import EVIDENCE_PREFIX, build_model
from ..model.losses import compute_losses
from ..model.segmenter import SEGMENTER_PREFIXES
from .feature_cache import FeatureCache
from .state import load_state, save_state


# --------------------------------------------------------------------------------------------
# Distributed helpers
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op when alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def leave_process_group(*trainers: Trainer) -> None:
    """End the distributed part of a run, in the order torch needs (no-op when alone).

    1. Drop each trainer's DistributedDataParallel wrapper: its reducer holds the process group
       (and gloo's worker threads) and must go while the group still exists. Destroyed the other
       way round, the group outlives its destruction inside the wrapper and is torn down later,
       at garbage collection or interpreter exit: "terminate called without an active exception"
       (a gloo abort seen once in test_train.py's DDP test).
    2. Wait for every rank (the main one may still be writing the last checkpoint).
    3. Destroy the group.
    """
    for trainer in trainers:
        trainer.ddp = trainer.model
    gc.collect()  # the wrapper sits in reference cycles (its hooks): free it now, not at exit
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# Deterministic sampling
# --------------------------------------------------------------------------------------------
def sample_indices(n: int, step: int, batch_size: int, world: int, rank: int, seed: int) -> list[int]:
    """Dataset indices of this rank's share of global batch `step`.

    Epoch e is a permutation drawn from (seed, e); global batch `step` takes the next
    batch_size * world indices (wrapping into the next epoch), and rank r takes every
    world-th of them. Pure function of its arguments: resume needs no sampler state.
    """
    per_step = batch_size * world
    out = []
    for k in range(step * per_step, (step + 1) * per_step):
        epoch, pos = divmod(k, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out.append(int(perm[pos]))
    return out[rank::world]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class SeededSamples:
    """Fetches samples with their augmentation seeded from (seed, step, index)."""

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def get(self, index: int, step: int) -> dict:
        seed_everything(int(np.random.SeedSequence([self.seed, step, index]).generate_state(1)[0]))
        return self.dataset[index]


# --------------------------------------------------------------------------------------------
# Optimisation
# --------------------------------------------------------------------------------------------
def lr_scales(t: TrainConfig) -> dict[str, float]:
    """{parameter name prefix: factor on t.lr}: the image side (image_lr) and the stereo-evidence
    term (evidence_lr)."""
    scale = {p: t.image_lr for p in SEGMENTER_PREFIXES} if 0 < t.image_lr != 1 else {}
    if t.evidence_lr != 1:
        scale[EVIDENCE_PREFIX] = t.evidence_lr
    return scale


def make_optimizer(model: nn.Module, t: OptimConfig, lr_scale: dict[str, float] | None = None) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters of `model` with `t.lr` / `t.weight_decay`; a
    parameter whose name starts with a prefix of `lr_scale` gets t.lr times that factor."""
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = next((f for prefix, f in (lr_scale or {}).items() if name.startswith(prefix)), 1.0)
        # Norm scales, biases and learned embeddings are not weight-decayed (AdamW practice).
        decay = not (p.ndim <= 1 or "embed" in name)
        groups.setdefault((scale, decay), []).append(p)
    return torch.optim.AdamW([{"params": ps, "lr": t.lr * scale, "weight_decay": t.weight_decay if decay else 0.0}
                              for (scale, decay), ps in groups.items()], lr=t.lr)


def make_scheduler(opt: torch.optim.Optimizer, t: OptimConfig) -> torch.optim.lr_scheduler.LRScheduler:
    if t.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=max(t.steps, 2), pct_start=t.warmup_pct,
            anneal_strategy="cos", cycle_momentum=False)
    if t.schedule == "cosine":
        warm = max(1, int(t.warmup_pct * t.steps))

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, t.steps - warm))))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    raise ValueError(f"train.schedule must be onecycle or cosine, got {t.schedule!r}")


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
class Trainer:
    """Owns the model, optimiser and run folder of one training run."""

    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, train_set, val_set=None,
                 device: str = "auto", dist_info: DistInfo | None = None, log=print):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = dist_info or DistInfo()
        self.device = resolve_device(device, self.dist.local_rank)
        self.log = log if self.dist.main else (lambda *a, **k: None)
        seed_everything(cfg.train.seed)  # identical initial weights on every rank
        self.model = build_model(cfg).to(self.device)
        self.ddp = self.model
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        t = cfg.train
        if t.feature_cache and t.image_lr != 0:
            raise ConfigError(f"train.feature_cache={t.feature_cache} caches image features: it needs a frozen "
                              f"image side, train.image_lr: 0 (got {t.image_lr})")
        self.frozen = [m for m in (self.model.encoder, self.model.seg_head) if m is not None] if t.image_lr == 0 else []
        for m in self.frozen:
            m.requires_grad_(False)
        self.opt = make_optimizer(self.model, t, lr_scales(t))
        self.sched = make_scheduler(self.opt, t)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and cfg.train.amp == "fp16")
        self.train_samples = SeededSamples(train_set, cfg.train.seed)  # FeatureCache once fit() starts
        self.val_set = val_set
        self.step = 0
        self.best_miou = -1.0
        self.writer = None
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "best_miou": self.best_miou, "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
                "config": to_dict(self.cfg)}

    def resume(self, run_dir: str | Path) -> None:
        run_dir = Path(run_dir)
        state = load_state(run_dir / "last.state.safetensors")
        if state["config"] != to_dict(self.cfg):
            raise ValueError(f"{run_dir}: the run was started with another config; resume with "
                             "the same --config and --set overrides")
        load_weights(self.model, run_dir / "last.safetensors", map_location=self.device)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.best_miou = float(state["best_miou"])
        self.log(f"resumed {run_dir} at step {self.step}")

    def save(self, name: str = "last", metrics: dict | None = None) -> None:
        if not self.dist.main:
            return
        extra = {"step": self.step, **({"metrics": metrics} if metrics else {})}
        save_checkpoint(self.run_dir / f"{name}.safetensors", self.model, self.cfg, extra=extra)
        if name == "last":
            save_state(self.run_dir / "last.state.safetensors", self.state_dict())

    # -- steps ---------------------------------------------------------------------------
    def _batch(self, step: int) -> dict:
        idx = sample_indices(len(self.train_samples.dataset), step, self.cfg.train.batch_size,
                             self.dist.world, self.dist.rank, self.cfg.train.seed)
        return to_device(collate([self.train_samples.get(i, step) for i in idx]), self.device)

    def train_step(self, batch: dict) -> dict[str, float]:
        self.ddp.train()
        for m in self.frozen:  # a frozen image side keeps its BatchNorm statistics
            m.eval()
        self.opt.zero_grad(set_to_none=True)
        with autocast_for(self.device, self.cfg.train.amp):
            out = self.ddp(batch)
        losses = compute_losses({k: v.float() for k, v in out.items()}, batch, self.cfg)
        self.scaler.scale(losses["total"]).backward()
        self.scaler.unscale_(self.opt)
        gnorm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        logs = {k: float(v.detach()) for k, v in losses.items()}
        logs["grad_norm"] = float(gnorm)
        logs["lr"] = self.sched.get_last_lr()[0]
        return logs

    def fit(self, steps: int | None = None, stop_at: int | None = None) -> list[dict]:
        """Train until cfg.train.steps (or `stop_at`, to simulate an interruption)."""
        total = steps or self.cfg.train.steps
        end = min(total, stop_at) if stop_at is not None else total
        if self.dist.main and self.writer is None:
            # Imported here: tensorboard's import costs seconds and only the main rank writes.
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.run_dir / "tb"))
        t = self.cfg.train
        if t.feature_cache and not isinstance(self.train_samples, FeatureCache):
            # Built here, after --init / --resume have set the frozen weights it depends on.
            self.train_samples = FeatureCache(self.train_samples.dataset, self.model, self.cfg, t.feature_cache,
                                              t.cache_dir, self.device, self.log)
            self.train_samples.build()
        history = []
        bar = tqdm(total=end, initial=self.step, disable=not self.dist.main, desc="train", dynamic_ncols=True)
        t0, start = time.perf_counter(), self.step
        while self.step < end:
            logs = self.train_step(self._batch(self.step))
            self.step += 1
            history.append({"step": self.step, **logs})
            bar.update(1)
            bar.set_postfix(loss=f"{logs['total']:.3f}")
            if self.writer and (self.step % self.cfg.train.log_every == 0 or self.step == end):
                rate = (self.step - start) / (time.perf_counter() - t0)
                for k, v in logs.items():
                    self.writer.add_scalar(f"train/{k}", v, self.step)
                self.writer.add_scalar("train/steps_per_s", rate, self.step)
                # The training log kept with the weights (scripts/ship_weights.py copies it).
                with open(self.run_dir / "log.jsonl", "a") as f:
                    f.write(json.dumps({"step": self.step, **logs, "steps_per_s": rate}) + "\n")
            if self.val_set is not None and (self.step % self.cfg.train.val_every == 0 or self.step == total):
                self.validate()
            if self.step % self.cfg.train.ckpt_every == 0 or self.step == end:
                self.save("last")
        bar.close()
        if self.writer:
            self.writer.flush()
        self.log(f"trained {len(history)} steps in {time.perf_counter() - t0:.1f} s")
        return history

    def validate(self) -> dict | None:
        if not self.dist.main:
            return None
        metrics = evaluate_model(self.model, self.val_set, self.cfg, self.device)
        self.log(f"step {self.step}: val IoU {metrics['iou']:.2f} mIoU {metrics['miou']:.2f}")
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, **metrics}) + "\n")
        if self.writer:
            self.writer.add_scalar("val/iou", metrics["iou"], self.step)
            self.writer.add_scalar("val/miou", metrics["miou"], self.step)
        if metrics["miou"] > self.best_miou:
            self.best_miou = metrics["miou"]
            self.save("best", metrics)
        return metrics


def train(cfg: ExperimentConfig, run_dir: str | Path, data: str = "", device: str = "auto",
          resume: bool = False, validate: bool = True, init: str | Path = "") -> Trainer:
    """A whole run: the dataset (`data`, else cfg.data.root, else the default synthetic one;
    plus real frames with data.real_root, data/mixed.py), the process group under torchrun,
    `--resume` from `run_dir` or weights from `init` (fine-tuning), and training to cfg.train.steps."""
    cfg, _ = dataset_root(cfg, data)
    info = init_distributed(resolve_device(device, int(os.environ.get("LOCAL_RANK", "0"))))
    train_set, val_set = training_sets(cfg, with_val=validate)
    trainer = Trainer(cfg, run_dir, train_set, val_set, device=device, dist_info=info)
    if resume:
        trainer.resume(run_dir)
    elif init:
        # A 2D checkpoint of `cigocc train-seg` holds the encoder and segmentation branch only; a
        # 3D one of another architecture (a term added since, e.g. model.stereo_free_space) loads
        # as a part: each of its tensors must fit, the model's others keep their initial values.
        stored, extra = read_metadata(init)
        differs = architecture_diff(cfg, stored)
        part = "file" if extra.get("kind") == SEGMENTER_KIND or differs else ""
        loaded = load_weights(trainer.model, init, map_location=trainer.device, partial=part)
        fresh = sorted(set(trainer.model.state_dict()) - set(loaded))
        trainer.log(f"initialised from {init}" + (f" ({len(loaded)} tensors; config differs in {'; '.join(differs)};"
                                                  f" {len(fresh)} keep their initial values, e.g. {fresh[:3]})"
                                                  if part else ""))
    trainer.fit()
    if info.world > 1:
        leave_process_group(trainer)
    return trainer
