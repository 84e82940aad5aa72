"""Checkpoints: one safetensors file holding the weights, with the ExperimentConfig (JSON) and
free-form run information (JSON) in its metadata. Files are never unpickled.

Loading into a model built from another config fails with a CheckpointError naming every key
that differs (config.diff) among the sections that shape the tensors (grid and model; a
different `model.pretrained_path` only changes initial weights and is allowed).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..config import ConfigError, ExperimentConfig, diff, from_dict, to_dict
from ..errors import CigoccError
from .cigocc import build_model

FORMAT = "cigocc_ros/checkpoint/1"
ARCHITECTURE_SECTIONS = ("grid", "model")
IGNORED_KEYS = ("model.pretrained_path",)
# `extra["kind"]` of a checkpoint written by the 2D training (model/segmenter.py): the encoder
# and the segmentation branch only.
SEGMENTER_KIND = "segmenter"


class CheckpointError(CigoccError, ValueError):
    """A checkpoint that cannot be read, or does not match the config it is loaded into."""


def save_checkpoint(path: str | Path, model: torch.nn.Module, cfg: ExperimentConfig, extra: dict | None = None) -> Path:
    """Write `model`'s weights with `cfg` and JSON-serialisable `extra` (step, metrics...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared or strided storage: give it contiguous copies.
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(to_dict(cfg)), "extra": json.dumps(extra or {})}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)  # readers never see a half-written file
    return path


def read_metadata(path: str | Path) -> tuple[ExperimentConfig, dict]:
    """(config, extra) stored in a checkpoint, without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({e})") from None
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{path}: no cigocc_ros config in the metadata (format {meta.get('format')!r})")
    try:
        cfg = from_dict(ExperimentConfig, json.loads(meta["config"]), f"{path} (metadata 'config')")
        extra = json.loads(meta.get("extra", "{}"))
    except (json.JSONDecodeError, ConfigError) as e:
        raise CheckpointError(f"{path}: unreadable metadata: {e}") from None
    return cfg, extra


def architecture_diff(a: ExperimentConfig, b: ExperimentConfig) -> list[str]:
    """Differences between two configs in the keys that shape the network."""
    out = []
    for section in ARCHITECTURE_SECTIONS:
        out += [d for d in diff(getattr(a, section), getattr(b, section), prefix=section)
                if not d.startswith(IGNORED_KEYS)]
    return out


def load_checkpoint(path: str | Path, cfg: ExperimentConfig | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Build the network from the checkpoint's config and load its weights -> (model, extra).

    With `cfg`, the checkpoint must have been written with the same architecture: otherwise a
    CheckpointError lists the differing keys. The model's `cfg` is the checkpoint's copy.
    """
    path = Path(path)
    stored, extra = read_metadata(path)
    if cfg is not None:
        differs = architecture_diff(cfg, stored)
        if differs:
            raise CheckpointError(f"{path} was written for another config; differing keys "
                                  f"(expected != checkpoint): {'; '.join(differs)}")
    model = build_model(stored)
    load_weights(model, path, map_location)
    return model, extra


def load_weights(model: torch.nn.Module, path: str | Path, map_location: Any = "cpu",
                 partial: str = "") -> list[str]:
    """Load a checkpoint's tensors into `model`; returns the names loaded.

    partial="" (default): strict, names and shapes must all match, and the stored config must
    have the model's architecture. partial="file": the file holds part of the model (a 2D
    segmenter checkpoint started into the full network): every tensor of the file must fit one
    of the model's, the model's others keep their values. partial="model": the model is part
    of the file (the segmenter taken out of a full checkpoint): every tensor of the model must
    be in the file. Partial loads check names and shapes, not the stored config (it may differ
    in parts neither side holds)."""
    path = Path(path)
    model_cfg = getattr(model, "cfg", None)
    if model_cfg is not None and not partial:
        stored, _ = read_metadata(path)
        differs = architecture_diff(model_cfg, stored)
        if differs:
            raise CheckpointError(f"{path} does not fit this model; differing keys "
                                  f"(model != checkpoint): {'; '.join(differs)}")
    elif partial:
        read_metadata(path)  # the file must be one of our checkpoints
    if partial not in ("", "file", "model"):
        raise ValueError(f"partial must be '', 'file' or 'model', got {partial!r}")
    state = load_file(str(path), device=str(map_location))
    if not partial:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: weights do not fit the model: {e}") from None
        return list(state)
    own = model.state_dict()
    wrong = [k for k in state if k in own and own[k].shape != state[k].shape]
    if wrong:
        raise CheckpointError(f"{path}: {len(wrong)} tensors have other shapes than the model's, e.g. "
                              f"{wrong[0]} {tuple(state[wrong[0]].shape)} != {tuple(own[wrong[0]].shape)}")
    lacking = [k for k in (state if partial == "file" else own) if k not in (own if partial == "file" else state)]
    if lacking:
        where = "the model" if partial == "file" else "the file"
        raise CheckpointError(f"{path}: {len(lacking)} tensors are not in {where}, e.g. {lacking[:3]}")
    common = {k: v for k, v in state.items() if k in own}
    model.load_state_dict(common, strict=False)
    return list(common)
