"""Which runtime runs the network's forward: torch on a checkpoint, or ONNX Runtime on an export
of exactly that checkpoint.

`backend`: "torch" runs a checkpoint (.safetensors), "onnxruntime" an exported .onnx file, and
"auto" decides per start: onnxruntime only when an export matching the weights is present and
ONNX Runtime is installed, else torch. An export matches when its metadata carries the sha256
of the weights file it was exported from (onnx_export.export_onnx writes it), and it is looked
for in two places:
- beside the weights: `<weights without .safetensors>.onnx` (or `.stereo.onnx`), as shipped;
- in the export cache: `<cache>/onnx/<sha256[:16]>.onnx` (or `.stereo.onnx`), which
  `cigocc export WEIGHTS --cache [--stereo]` fills; <cache> is $CIGOCC_CACHE, else
  $XDG_CACHE_HOME/cigocc_ros, else ~/.cache/cigocc_ros.
A stereo node needs a stereo export (it has the depth inputs); a mono node prefers a mono one
and takes a stereo one (fed no depth it is the mono network). On a GPU "auto" is torch: ONNX
Runtime's CUDA provider is an optional package and has not been measured here.
The measurement behind the default (docs/benchmarks.md, bench/backend_bench.py) is why "auto"
never exports on its own: an export takes half a minute and a stale one must never run.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("torch", "onnxruntime")
CHOICES = (*BACKENDS, "auto")
SHA_KEY = "weights_sha256"  # ONNX metadata: sha256 of the checkpoint the file was exported from


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """$CIGOCC_CACHE, else $XDG_CACHE_HOME/cigocc_ros, else ~/.cache/cigocc_ros."""
    if os.environ.get("CIGOCC_CACHE"):
        return Path(os.environ["CIGOCC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cigocc_ros"


def _suffix(stereo: bool) -> str:
    return ".stereo.onnx" if stereo else ".onnx"


def cached_export_path(sha256: str, stereo: bool = False) -> Path:
    """Where `cigocc export --cache` writes the export of the weights with this sha256."""
    return cache_dir() / "onnx" / f"{sha256[:16]}{_suffix(stereo)}"


def export_candidates(weights: Path, sha256: str, stereo: bool) -> list[Path]:
    """Files that may hold an export of `weights`, best first: beside it, then in the cache;
    for a mono node the mono export before the stereo one."""
    kinds = [True] if stereo else [False, True]
    stem = weights.with_suffix("") if weights.suffix == ".safetensors" else weights
    paths = [Path(f"{stem}{_suffix(k)}") for k in kinds] + [cached_export_path(sha256, k) for k in kinds]
    return [p for p in paths if p.is_file()]


@dataclass(frozen=True)
class Choice:
    """The runtime to use, the file it runs, and why (one line for a log)."""

    backend: str
    path: Path
    reason: str


def choose(weights: str | Path, backend: str, device: str = "cpu", stereo: bool = False) -> Choice:
    """Resolve `backend` (torch | onnxruntime | auto) for `weights` on `device`. "torch" and
    "onnxruntime" are taken as given (the file's kind is checked when it is loaded)."""
    weights = Path(weights)
    if backend not in CHOICES:
        raise ValueError(f"backend must be one of {CHOICES}, got {backend!r}")
    if backend != "auto":
        return Choice(backend, weights, "as configured")
    if weights.suffix == ".onnx":
        return Choice("onnxruntime", weights, "the weights are an ONNX file")
    if not device.startswith("cpu"):
        return Choice("torch", weights, f"device {device}: ONNX Runtime is chosen on the CPU only")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return Choice("torch", weights, "onnxruntime is not installed")
    sha = file_sha256(weights)
    for path in export_candidates(weights, sha, stereo):
        found = export_sha256(path)
        if found == sha:
            return Choice("onnxruntime", path, f"export of these weights at {path}")
    return Choice("torch", weights, f"no export of these weights (sha256 {sha[:16]}) beside them or in "
                                    f"{cache_dir() / 'onnx'}: `cigocc export {weights} --cache"
                                    f"{' --stereo' if stereo else ''}` makes one")


def export_sha256(path: Path) -> str | None:
    """The weights' sha256 an ONNX file was exported from (its metadata), None when it has none
    or cannot be read (ONNX Runtime reads the metadata; the onnx package is not needed)."""
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # metadata only
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session.get_modelmeta().custom_metadata_map.get(SHA_KEY)
    except Exception:  # onnxruntime raises its own types for unreadable files: not a match
        return None
