"""The one place that turns a device name into a torch device, plus the two helpers every
torch caller needs with it (autocast, moving a batch).

Names: "cpu", "cuda" (the current process's GPU: `local_rank` under torchrun), "cuda:N", or
"auto" (cuda when torch sees a GPU, else cpu). The node parameter `device`, every command's
`--device` and the training / inference code accept exactly these (config.check_device_name
validates a name without importing torch, for parameters and arguments).
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

from .config import check_device_name
from .errors import CigoccError


class DeviceError(CigoccError, RuntimeError):
    """A device that this machine does not have (no CUDA, fewer GPUs, no onnxruntime-gpu)."""


def resolve_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """auto | cpu | cuda | cuda:N -> torch.device.

    "cuda" means cuda:`local_rank` (the GPU torchrun gave this process); "cuda:N" is taken as
    given. ValueError for an unknown name, DeviceError for a GPU torch cannot see.
    """
    name = str(name)
    error = check_device_name(name)
    if error:
        raise ValueError(error)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} was asked for but torch sees no CUDA device")
    dev = torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    if dev.index >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return dev


def autocast_for(device: torch.device, amp: str):
    """Mixed precision context for `amp` (none | bf16 | fp16) on CUDA; a no-op on the CPU."""
    if device.type != "cuda" or amp == "none":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def to_device(batch: dict, device: torch.device) -> dict:
    """A batch dict with its tensors on `device` (other values untouched)."""
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
