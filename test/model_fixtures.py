"""Tiny configurations and batches for the model tests (fast on a 2-core CPU)."""
from __future__ import annotations

import torch

from cigocc_ros.config import ExperimentConfig, load_experiment

# A 32x32x8 grid of 1.6 m voxels spans the SemanticKITTI volume; 64x192 images.
TINY = ["model.image_size=[64, 192]", "grid.size=[32, 32, 8]", "grid.voxel_size=1.6",
        "model.coarse_downsample=2", "model.max_queries=64", "model.depth_bins=28"]


def tiny_config(name: str = "lite", *extra: str) -> ExperimentConfig:
    return load_experiment(name, TINY + list(extra))


def camera(B: int, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """KITTI-like intrinsics scaled to (H, W) and the velodyne -> camera extrinsics
    (camera x right = -y, y down = -z, z forward = x, mounted 0.08 m lower, 0.27 m behind)."""
    f = 707.0 * W / 1220
    K = torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    T = torch.tensor([[0, -1.0, 0, 0], [0, 0, -1, -0.08], [1, 0, 0, -0.27], [0, 0, 0, 1]])
    return K.expand(B, 3, 3).clone(), T.expand(B, 4, 4).clone()


def make_batch(cfg: ExperimentConfig, B: int = 1, targets: bool = False, depth: bool = False, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    H, W = cfg.model.image_size
    K, T = camera(B, H, W)
    batch = {"img": torch.rand(B, 3, H, W, generator=g), "K": K, "T_cam_grid": T}
    if depth:
        d = torch.rand(B, 1, H, W, generator=g) * 50 + 3
        batch["depth"] = torch.where(torch.rand(B, 1, H, W, generator=g) < 0.3, d, torch.zeros_like(d))
    if targets:
        X, Y, Z = cfg.grid.size
        tgt = torch.randint(0, 20, (B, X, Y, Z), generator=g)
        tgt[torch.rand(B, X, Y, Z, generator=g) < 0.6] = 0
        tgt[torch.rand(B, X, Y, Z, generator=g) < 0.1] = 255
        batch["target"] = tgt
        batch["target_2"] = tgt[:, ::2, ::2, ::2].clone()
        teacher = torch.randint(0, 20, (B, H, W), generator=g)
        teacher[torch.rand(B, H, W, generator=g) < 0.3] = 255
        batch["teacher"] = teacher
        dt = torch.rand(B, H, W, generator=g) * 50 + 3
        batch["depth_target"] = torch.where(torch.rand(B, H, W, generator=g) < 0.2, dt, torch.zeros_like(dt))
    return batch


def tiny_checkpoint(path, name: str = "lite", seed: int = 0):
    """Write a randomly initialised tiny model (tiny_config) as a checkpoint at `path`."""
    from cigocc_ros.model.checkpoint import save_checkpoint
    from cigocc_ros.model.cigocc import build_model

    torch.manual_seed(seed)
    cfg = tiny_config(name)
    save_checkpoint(path, build_model(cfg), cfg)
    return path
