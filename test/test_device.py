"""The one device rule (cigocc_ros.device): the same names for the node parameter, every
command's --device and the library."""
from __future__ import annotations

import argparse

import pytest
import torch

from cigocc_ros.cli.args import device_name
from cigocc_ros.config import NodeConfig, check_device_name
from cigocc_ros.device import autocast_for, resolve_device, to_device


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_accepted_names(name):
    assert check_device_name(name) is None
    assert device_name(name) == name


@pytest.mark.parametrize("name", ["tpu", "CUDA", "cuda:", "cuda:x", "cpu:0", "", "gpu"])
def test_refused_names_say_what_is_accepted(name):
    assert "auto | cpu | cuda | cuda:N" in check_device_name(name)
    with pytest.raises(ValueError, match="cuda:N"):
        resolve_device(name)
    with pytest.raises(argparse.ArgumentTypeError):
        device_name(name)


def test_resolve_on_this_machine():
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:1"):
            with pytest.raises(RuntimeError, match="no CUDA device"):
                resolve_device(name)
    else:
        assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
        n = torch.cuda.device_count()
        with pytest.raises(RuntimeError, match="CUDA device"):
            resolve_device(f"cuda:{n}")


def test_node_parameter_takes_the_same_names():
    from cigocc_ros.ros.params import validate

    assert validate(NodeConfig(device="cuda:1")) == []
    assert any("cuda:N" in e for e in validate(NodeConfig(device="tpu")))


def test_to_device_and_cpu_autocast():
    batch = to_device({"x": torch.ones(2), "name": "a"}, torch.device("cpu"))
    assert batch["name"] == "a" and batch["x"].device.type == "cpu"
    with autocast_for(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32  # no autocast on the CPU
