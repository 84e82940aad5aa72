"""Resumable training state (optimizer, scheduler, RNG, step) in safetensors + JSON metadata.

`torch.save` would pickle, and this project never unpickles a file: tensors go into the
safetensors body, everything else (param-group hyper-parameters, scheduler counters, the step)
into its JSON metadata. Writes are atomic (temporary file, then rename), so a run killed while
saving leaves the previous state intact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

_META_KEY = "cigocc_train_state"


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list with a reference, collecting the tensors."""
    if isinstance(obj, torch.Tensor):
        key = prefix.rstrip(".")
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        # JSON keys are strings: remember int keys (optimizer state is keyed by param index).
        return {"__dict__": [[k, _split(v, f"{prefix}{k}.", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_split(v, f"{prefix}{i}.", tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return {"__float__": repr(obj)}
    return obj


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _join(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [_join(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
        if "__float__" in obj:
            return float(obj["__float__"])
    return obj


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write a nested dict of tensors and JSON-able values atomically to `path`."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, "", tensors)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(skeleton)})
    os.replace(tmp, path)


def load_state(path: str | Path) -> dict[str, Any]:
    """Inverse of save_state; errors name the file."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise FileNotFoundError(f"training state not found: {path}") from None
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{path}: not a readable safetensors training state ({e})") from None
    if _META_KEY not in meta:
        raise ValueError(f"{path}: safetensors file without cigocc training-state metadata")
    return _join(json.loads(meta[_META_KEY]), tensors)
