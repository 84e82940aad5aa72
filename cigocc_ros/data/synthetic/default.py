"""The default synthetic dataset: which sequences (seeds, split, length), where it lives
(versioned by FORMAT_VERSION), and generating it once for every process that asks.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .. import semantic_kitti as sk
from .sequence import LABEL_EVERY
from .writer import write_sequence

# The default dataset: sequence -> seed, the split, the number of frames.
DEFAULT_SEEDS = {"00": 1000, "01": 1001, "02": 1002, "03": 1003, "04": 1004, "05": 1005, "08": 1008}
DEFAULT_SPLIT = {"train": ("00", "01", "02", "03", "04", "05"), "val": ("08",)}
DEFAULT_FRAMES = 50
_MANIFEST = "synthetic.json"
FORMAT_VERSION = 5


def default_root() -> Path:
    """Where the default dataset lives: $CIGOCC_SYNTHETIC_ROOT, else synthetic-v<format> in
    $CIGOCC_DATA_DIR (the project environment, .venv/cigocc-env.sh, sets it to the checkout's
    git-ignored data/), else in ~/.cache/cigocc. The environment decides, not where this code
    happens to be installed. The format version in the name lets a new generator write beside
    data an older run may still be reading."""
    env = os.environ.get("CIGOCC_SYNTHETIC_ROOT")
    if env:
        return Path(env)
    base = os.environ.get("CIGOCC_DATA_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "cigocc") / f"synthetic-v{FORMAT_VERSION}"


def _manifest(seeds: dict[str, int], num_frames: int) -> dict:
    return {"format": FORMAT_VERSION, "frames": num_frames, "seeds": seeds,
            "split": {k: list(v) for k, v in DEFAULT_SPLIT.items()}}


def dataset_complete(root: str | os.PathLike, seeds: dict[str, int] = DEFAULT_SEEDS,
                     num_frames: int = DEFAULT_FRAMES) -> bool:
    """True if `root` holds these sequences, written completely by this generator version."""
    root = Path(root)
    try:
        manifest = json.loads((root / _MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest != _manifest(seeds, num_frames):
        return False
    for seq in seeds:
        p = sk.SequencePaths(root, seq)
        if len(p.frames("voxels", ".label")) != len(range(0, num_frames, LABEL_EVERY)):
            return False
        if len(p.frames("image_2", ".png")) != num_frames or len(p.frames("velodyne", ".bin")) != num_frames:
            return False
    return True


def default_dataset(root: str | os.PathLike | None = None, seeds: dict[str, int] = DEFAULT_SEEDS,
                    num_frames: int = DEFAULT_FRAMES, workers: int = 1, log=None) -> Path:
    """Generate the default synthetic dataset into `root` (default: `default_root()`), or reuse
    it when it is already complete. Split: DEFAULT_SPLIT. Returns the root.

    Processes asking at once take turns on a lock file beside the folder, so one generates and
    the others reuse its result. The data are written to a sibling folder first and moved into
    place once complete, so an interrupted run leaves no half dataset that looks finished."""
    import fcntl

    root = Path(root) if root is not None else default_root()
    if dataset_complete(root, seeds, num_frames):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dataset_complete(root, seeds, num_frames):  # another process made it meanwhile
            return root
        work = root.parent / f".{root.name}.partial-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        jobs = [(str(work), seq, seed, num_frames) for seq, seed in seeds.items()]
        try:
            if workers > 1:
                import multiprocessing as mp

                with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
                    for path in pool.starmap(write_sequence, jobs):
                        if log:
                            log(f"wrote {path}")
            else:
                for job in jobs:
                    write_sequence(*job, log=log)
            (work / _MANIFEST).write_text(json.dumps(_manifest(seeds, num_frames), indent=2) + "\n")
            if root.exists():
                shutil.rmtree(root)
            work.rename(root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return root
