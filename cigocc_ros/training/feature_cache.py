"""Cached image features: cheap 3D training steps when the image side is frozen (issue 22).

With `train.image_lr: 0` the encoder and segmentation branch do not change during a 3D
training (they come from `cigocc train-seg`), so what they compute from a training sample
never changes either. `FeatureCache` computes it once per sample variant and keeps it, with the
sample's stereo depth and confidence, LiDAR depth and voxel targets; a training step then starts
at the depth branch and the lift, and never runs the 2D backbone or the stereo matcher.

Variants: augmentation happens before the encoder, so a cached sample is frozen with its
augmentation. Each training frame gets `train.feature_cache` variants, variant v of a frame
drawn by the dataset's own augmentation seeded from (seed, frame, v) (flip, photometric,
rescale, crop shift, stereo drop: all of data's settings); step s takes for sample i the variant
hash(seed, s, i) mod the count. What the cache rules out is fresh augmentation at every step: a
run sees `feature_cache` versions of each frame, not a new one each epoch.

Storage: in memory, and in `folder` (one safetensors file per frame and variant, features fp16,
labels uint8) under a key of everything the cached tensors depend on (the frozen weights, the
data settings that shape a sample, the grid), so a later sitting, a resumed run or a run with
another mix of the same frames reuses them, and a change of any of those starts a new folder.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ..config import ExperimentConfig, ssc_train_factors, target_key, to_dict
from ..model.cigocc import FEATURE_KEYS
from ..model.segmenter import SEGMENTER_PREFIXES

FORMAT = 1
LABEL_KEYS_DROPPED = ("teacher",)  # the frozen segmentation branch has nothing to distil


# Data settings that choose or weigh frames, not what a frame's variant holds: a run that
# changes only these reuses the cached variants.
MIXING_KEYS = ("train_sequences", "val_sequences", "test_sequences", "real_train_sequences", "real_val_sequences",
               "real_share", "cache", "num_workers")


def cache_key(model: torch.nn.Module, cfg: ExperimentConfig, variants: int) -> str:
    """16 hex digits of everything a cached variant depends on: the frozen weights, the data
    settings that shape a sample (augmentation, stereo, targets; not the mix), the grid, the
    input size, the loss's target resolution, the seed and the number of variants."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if name.startswith(SEGMENTER_PREFIXES):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    data = {k: v for k, v in to_dict(cfg.data).items() if k not in MIXING_KEYS}
    h.update(json.dumps({"format": FORMAT, "data": data, "grid": to_dict(cfg.grid),
                         "image_size": list(cfg.model.image_size), "ssc": list(ssc_train_factors(cfg)),
                         "seed": cfg.train.seed, "variants": variants}).encode())
    return h.hexdigest()[:16]


class FeatureCache:
    """Training samples with image features in place of the image (module docstring); used by
    the Trainer like SeededSamples: `get(index, step)`, `dataset` (for its length). Variants
    belong to frames, not to dataset indices: a real frame repeated by the mix (data/mixed.py)
    shares its variants, and another mix reuses them."""

    def __init__(self, dataset, model: torch.nn.Module, cfg: ExperimentConfig, variants: int,
                 folder: str | Path | None = None, device: torch.device | str = "cpu", log=print):
        if variants < 1:
            raise ValueError(f"train.feature_cache must be >= 1 variants, got {variants}")
        self.dataset = dataset
        self.model = model
        self.cfg = cfg
        self.variants = variants
        self.device = torch.device(device)
        self.seed = cfg.train.seed
        keep = {target_key(ssc_train_factors(cfg)), "target_2"}
        self.drop = set(LABEL_KEYS_DROPPED) | ({"target"} - keep)
        source = getattr(dataset, "source", None)
        # "<root digest>_<sequence>_<frame>" of every index, and one index of every frame.
        self.frame_of = [f"{_digest(source(i) if source else str(getattr(dataset, 'root', '')))}_"
                         f"{'_'.join(dataset.frame_info(i))}" for i in range(len(dataset))]
        self.index_of = {f: i for i, f in reversed(list(enumerate(self.frame_of)))}
        self.key = cache_key(model, cfg, variants)
        self.folder = Path(folder) / self.key if folder else None
        self._mem: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
        self.log = log

    def variant(self, index: int, step: int) -> int:
        return int(np.random.SeedSequence([self.seed, step, index, 7]).generate_state(1)[0]) % self.variants

    def get(self, index: int, step: int) -> dict[str, torch.Tensor]:
        return self._expand(self.load(self.frame_of[index], self.variant(index, step)), index)

    def item(self, frame: str, variant: int) -> dict[str, torch.Tensor]:
        """One variant of a frame as a training sample (the dataset's item types, no image)."""
        return self._expand(self.load(frame, variant), self.index_of[frame])

    def build(self) -> None:
        """Compute (or read from the folder) every variant of every frame, with a progress bar."""
        todo = [(f, v) for f in self.index_of for v in range(self.variants)]
        for f, v in tqdm(todo, desc=f"feature cache {self.key}", dynamic_ncols=True):
            self.load(f, v)
        self.log(f"feature cache {self.folder or 'in memory'}: {len(todo)} variants of {len(self.index_of)} frames "
                 f"({sum(t.numel() * t.element_size() for d in self._mem.values() for t in d.values()) / 2**20:.0f} MiB)")

    def load(self, frame: str, variant: int) -> dict[str, torch.Tensor]:
        """The stored tensors of one variant of a frame (computed once, then memory or disk)."""
        key = (frame, variant)
        if key not in self._mem:
            path = self.folder / f"{frame}_{variant}.safetensors" if self.folder else None
            if path is not None and path.is_file():
                stored = load_file(str(path))
            else:
                stored = self._compute(frame, variant)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".tmp")
                    save_file(stored, str(tmp))
                    tmp.replace(path)
            self._mem[key] = stored
        return self._mem[key]

    def sample(self, frame: str, variant: int) -> dict[str, torch.Tensor]:
        """The dataset's sample behind a variant, with its image. The dataset's augmentation
        draws from torch's RNG: seeding it per (seed, frame, variant) makes the variant
        reproducible in any sitting and under any mix."""
        torch.manual_seed(int(np.random.SeedSequence([self.seed, zlib.crc32(frame.encode()), variant, 11])
                              .generate_state(1)[0]))
        return self.dataset[self.index_of[frame]]

    @torch.no_grad()
    def _compute(self, frame: str, variant: int) -> dict[str, torch.Tensor]:
        item = self.sample(frame, variant)
        was_training = self.model.training
        self.model.eval()
        feats = self.model.image_features(item["img"].unsqueeze(0).to(self.device))
        self.model.train(was_training)
        out: dict[str, torch.Tensor] = {f"feats_{i}": f[0].half().cpu() for i, f in enumerate(feats["feats"])}
        out.update({k: feats[k][0].half().cpu() for k in FEATURE_KEYS if k in feats})
        for k, v in item.items():
            if k in self.drop or k in ("img", "index"):
                continue
            if k.startswith("target"):
                out[k] = v.to(torch.uint8)  # labels 0..19 and 255
            elif k in ("depth", "depth_conf", "depth_target"):
                out[k] = v.half()
            else:
                out[k] = v
        return out

    @staticmethod
    def _expand(stored: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
        """A stored variant as the dataset's item types (labels int64, maps float32)."""
        item = {k: (v.long() if k.startswith("target") else v.float()) for k, v in stored.items()}
        item["index"] = torch.tensor(index, dtype=torch.int64)
        return item


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]
