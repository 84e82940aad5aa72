"""Training state survives a safetensors round trip exactly, and bad files are named."""
from __future__ import annotations

import pytest
import torch

from cigocc_ros.training.state import load_state, save_state


def _trained_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=10)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).square().mean().backward()
        opt.step()
        sched.step()
    return model, opt, sched


def test_optimizer_and_scheduler_round_trip(tmp_path):
    model, opt, sched = _trained_optimizer()
    path = tmp_path / "state.safetensors"
    save_state(path, {"step": 3, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                      "best": float("-inf")})
    back = load_state(path)
    assert back["step"] == 3 and back["best"] == float("-inf")
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-2)
    opt2.load_state_dict(back["optimizer"])
    for k, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            torch.testing.assert_close(opt2.state_dict()["state"][k][name], v)
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    sched2 = torch.optim.lr_scheduler.OneCycleLR(opt2, max_lr=1e-2, total_steps=10)
    sched2.load_state_dict(back["scheduler"])
    assert sched2.state_dict() == sched.state_dict()
    assert not list(tmp_path.glob("*.tmp")), "atomic write left a temporary file"


def test_corrupt_and_foreign_files_are_named(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_state(bad)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_state(tmp_path / "missing.safetensors")
