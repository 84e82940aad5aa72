"""Shared pytest fixtures: paths, and an isolated DDS domain for tests that start processes."""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helpers (tiny_data)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def kitti_samples() -> Path:
    """The real KITTI sample frames (../shared/kitti_samples, or $CIGOCC_KITTI_SAMPLES)."""
    path = Path(os.environ.get("CIGOCC_KITTI_SAMPLES", REPO.parent / "shared" / "kitti_samples"))
    if not (path / "sequences" / "00" / "calib.txt").is_file():
        pytest.fail(f"real KITTI samples not found at {path}: set CIGOCC_KITTI_SAMPLES")
    return path


@pytest.fixture()
def ros_env(monkeypatch) -> dict:
    """Environment for child processes on a fresh, random ROS_DOMAIN_ID (parallel runs never
    cross) restricted to this host; also applied to this process."""
    domain = str(random.Random(os.getpid() ^ id(monkeypatch)).randint(1, 100))
    monkeypatch.setenv("ROS_DOMAIN_ID", domain)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A tiny SemanticKITTI-layout dataset (test/tiny_data.py), written once per session."""
    from tiny_data import write_tiny_dataset

    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_kitti"))
