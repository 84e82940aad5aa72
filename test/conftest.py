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


@pytest.fixture(scope="session")
def camvid() -> Path:
    """The real CamVid frames (../shared/camvid, or $CIGOCC_CAMVID)."""
    path = Path(os.environ.get("CIGOCC_CAMVID", REPO.parent / "shared" / "camvid"))
    if not (path / "test" / "labels").is_dir():
        pytest.fail(f"CamVid not found at {path}: set CIGOCC_CAMVID")
    return path


@pytest.fixture(scope="session")
def tiny_camvid(camvid, tmp_path_factory) -> Path:
    """A few real CamVid frames per split, copied (a 2D training test reads them all)."""
    import shutil

    root = tmp_path_factory.mktemp("camvid")
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for sub in ("images", "labels"):
            (root / split / sub).mkdir(parents=True)
        for img in sorted((camvid / split / "images").iterdir())[:n]:
            shutil.copy(img, root / split / "images" / img.name)
            shutil.copy(camvid / split / "labels" / f"{img.stem}.png", root / split / "labels")
    return root


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
