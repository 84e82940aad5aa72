"""Every `cigocc` command on a damaged input: one line `error: <file>: <problem>` on stderr, exit
status 2, no traceback (docs/bags.md, cigocc_ros/errors.py). The damaged files are made here
from files the test writes or ships: a PNG, a checkpoint and a scan cut short, a calibration
and a config overwritten with bytes, a bag file of random bytes."""
from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tiny_kitti import write_tiny_sequence

from cigocc_ros.cli.main import COMMANDS
from cigocc_ros.resources import shipped_weights_file

pytestmark = pytest.mark.integration

RANDOM = np.random.default_rng(25).integers(0, 256, 200_000, dtype=np.uint8).tobytes()


def cut(src: Path, dst: Path, keep: float | int) -> Path:
    """A copy of `src` cut to its first `keep` bytes (an int) or share of bytes (a float)."""
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    return dst


def sequence_copy(seq: Path, dst: Path) -> Path:
    shutil.copytree(seq, dst)
    return dst


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict:
    """{name: path} of the damaged inputs, and the folders the commands need beside them."""
    root = tmp_path_factory.mktemp("damaged")
    seq = write_tiny_sequence(root / "seq", frames=2, labelled=(0,), size=(48, 96))
    d = {"root": root, "seq": seq}
    d["png"] = cut(seq / "image_2" / "000000.png", root / "cut.png", 0.5)
    d["weights"] = cut(shipped_weights_file(), root / "cut.safetensors", 5000)
    d["config"] = root / "random.yaml"
    d["config"].write_bytes(RANDOM[:3000])
    d["bag"] = root / "random.mcap"
    d["bag"].write_bytes(RANDOM)
    # A sequence whose first scan is cut short (make-targets), one whose calib.txt is bytes
    # (lidar-report, make-masks), one with a cut image (kitti-to-bag), a dataset whose first
    # voxel label is cut (preview).
    d["scan_seq"] = sequence_copy(seq, root / "scans" / "sequences" / "00")
    d["scan"] = cut(seq / "velodyne" / "000000.bin", d["scan_seq"] / "velodyne" / "000000.bin", 4005)
    d["calib_seq"] = sequence_copy(seq, root / "calib" / "sequences" / "00")
    d["calib"] = d["calib_seq"] / "calib.txt"
    d["calib"].write_bytes(RANDOM[:2000])
    d["image_seq"] = sequence_copy(seq, root / "images" / "sequences" / "00")
    d["image"] = cut(seq / "image_0" / "000001.png", d["image_seq"] / "image_0" / "000001.png", 0.5)
    d["dataset"] = root / "dataset"
    labels_seq = sequence_copy(seq, d["dataset"] / "sequences" / "00")
    d["voxels"] = cut(seq / "voxels" / "000000.label", labels_seq / "voxels" / "000000.label", 0.5)
    d["file"] = root / "a-file"
    d["file"].write_text("not a folder\n")
    return d


# command -> (arguments, the damaged file the error line must name); {name} is a path of
# `damaged`, {out} a fresh output folder.
CASES = {
    "demo": (["--weights", "{weights}", "--out", "{out}"], "weights"),
    "train": (["--config", "{config}", "--out", "{out}"], "config"),
    "train-seg": (["--config", "{config}", "--out", "{out}"], "config"),
    "segment": (["{png}", "--out", "{out}"], "png"),
    "seg-report": (["--weights", "{weights}", "--kitti", "{dataset}", "--out", "{out}"], "weights"),
    "eval": (["{weights}", "--data", "{dataset}", "--out", "{out}/m.json"], "weights"),
    "make-targets": (["{scan_seq}", "--out", "{out}", "--frames", "0"], "scan"),
    "lidar-report": (["{calib_seq}", "--no-model", "--out", "{out}"], "calib"),
    "infer": (["{png}", "--calib", "{seq}/calib.txt", "--out", "{out}"], "png"),
    "export": (["{weights}", "--onnx", "{out}/m.onnx", "--no-check"], "weights"),
    "make-masks": (["{calib_seq}", "--sam-checkpoint", "{weights}"], "calib"),
    "kitti-to-bag": (["{image_seq}", "{out}/bag", "--camera", "gray", "--quiet"], "image"),
    "bag-play": (["{bag}"], "bag"),
    "bag-eval": (["{bag}", "--pace-timeout", "1", "--drain-timeout", "0"], "bag"),
    "bag-repair": (["{bag}", "{out}/repaired"], "bag"),
    "synth": (["--root", "{file}", "--sequences", "00", "--frames", "1"], "file"),
    "preview": (["--root", "{dataset}", "--sequence", "00", "--frame", "0", "--out", "{out}/p.png"], "voxels"),
}


def test_every_command_has_a_case():
    assert set(CASES) == set(COMMANDS)


@pytest.fixture(scope="module")
def ros_env_module() -> dict:
    """conftest's ros_env for the module-scoped runs: a ROS domain of its own, this host only
    (bag-play starts a DDS participant before it opens the bag)."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(random.Random(os.getpid()).randint(101, 200))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")])
    return env


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def results(damaged, ros_env_module, python_exe) -> dict:
    """Run every case (two at a time: each starts Python, most import torch)."""
    out = {}
    running = []
    for name, (args, _) in CASES.items():
        folder = damaged["root"] / f"out-{name}"
        argv = [a.format(out=folder, **{k: str(v) for k, v in damaged.items()}) for a in args]
        running.append((name, subprocess.Popen([python_exe, "-m", "cigocc_ros.cli", name, *argv], env=ros_env_module,
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        if len(running) >= 2 or name == list(CASES)[-1]:
            for n, proc in running:
                stdout, stderr = proc.communicate(timeout=240)
                out[n] = (proc.returncode, stdout, stderr)
            running = []
    return out


@pytest.mark.parametrize("command", list(CASES))
def test_a_damaged_input_is_one_error_line(command, damaged, results):
    rc, stdout, stderr = results[command]
    file = damaged[CASES[command][1]]
    assert "Traceback" not in stderr + stdout, stderr
    lines = _lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert str(file) in lines[0], lines[0]
    assert rc == 2, (rc, stdout, stderr)


def test_a_bug_keeps_its_traceback(monkeypatch, capsys):
    """main() turns only the project's errors and unreadable files into a line: any other
    exception (a bug) goes on with its traceback. A test-only command raises each kind."""
    import importlib
    import sys
    import types

    from cigocc_ros.data.semantic_kitti import DataFormatError

    cli = importlib.import_module("cigocc_ros.cli.main")  # (the package's `main` is the function)

    raised: list[BaseException] = []

    def run(args):
        raise raised[0]

    module = types.ModuleType("cigocc_ros.cli._raises")
    module.add_arguments, module.run = (lambda p: None), run
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "raises", ("_raises", "test only"))
    raised[:] = [DataFormatError("x.png: not a readable image")]
    assert cli.main(["raises"]) == 2 and capsys.readouterr().err == "error: x.png: not a readable image\n"
    raised[:] = [FileNotFoundError(2, "No such file or directory", "y.bin")]
    assert cli.main(["raises"]) == 2 and capsys.readouterr().err == "error: y.bin: No such file or directory\n"
    raised[:] = [ValueError("operands could not be broadcast together")]
    with pytest.raises(ValueError, match="broadcast"):
        cli.main(["raises"])
