"""Argument types and groups shared by several commands (not a command itself)."""
from __future__ import annotations

import argparse

from ..config import DEVICE_HELP, check_device_name

__all__ = ["DEVICE_HELP", "device_name"]


def device_name(value: str) -> str:
    """argparse type of `--device`: the names cigocc_ros.device.resolve_device accepts."""
    error = check_device_name(value)
    if error:
        raise argparse.ArgumentTypeError(error)
    return value
