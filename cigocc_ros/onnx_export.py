"""Export of the network's inference forward to ONNX (read back by inference.OrtForward).

The graph is `model(batch, inference=True)` with positional inputs: "img" (1, 3, H, W) float32
RGB in [0, 1] at the config's image size, "K" (1, 3, 3), "T_cam_grid" (1, 4, 4) and, in a
stereo export, "depth" (1, 1, H, W) metric (0 = no value) and "depth_conf" (1, 1, H, W), the
matcher's confidence in [0, 1]. Its outputs are the inference
outputs by name (today "ssc_logits_coarse" (1, n_cls, X', Y', Z'), "proposal" and "seg_logits"); the
Predictor's crop, argmax and confidence stay outside, shared by both backends. The file's
metadata holds the ExperimentConfig (JSON), as a checkpoint's does.

Everything is exported, geometry included. Two operators have no ONNX translation in the
torch exporter and get one here (nothing leaves the graph):
- `aten.linalg_inv_ex` (K^-1 for the pixel rays, T^-1 for the lift): ONNX has no matrix inverse,
  so it is decomposed before translation into the closed-form adjugate / determinant
  (`small_inverse`, exact for the 3x3 and 4x4 matrices the model inverts).
- `aten.grid_sampler_3d` (the 3D deformable self-attention): ONNX GridSample takes N-D inputs
  from opset 20 on; the exporter only maps the 2D sampler, so the 3D one maps to the same op.
The lift's `index_add_` becomes ScatterND with reduction "add" (opset >= 16).
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .backend import SHA_KEY
from .config import ExperimentConfig, to_dict

FORMAT = "cigocc_ros/onnx/1"
OPSET = 20  # GridSample on 5D (volume) inputs
INPUTS_MONO = ("img", "K", "T_cam_grid")
INPUTS_STEREO = (*INPUTS_MONO, "depth", "depth_conf")


def small_inverse(A: Tensor) -> Tensor:
    """Inverse of (..., n, n) matrices, n <= 4, as adjugate / determinant (Laplace expansion
    with memoised minors): only products and sums, so it exports to plain ONNX arithmetic.
    No pivoting or singularity check, like `torch.linalg.inv_ex` (callers pass calibrations)."""
    n = A.shape[-1]
    if A.shape[-2] != n or not 1 <= n <= 4:
        raise ValueError(f"small_inverse: square matrices of size <= 4 only, got {tuple(A.shape)}")
    e = [[A[..., i, j] for j in range(n)] for i in range(n)]
    memo: dict[tuple, Tensor] = {}

    def det(rows: tuple[int, ...], cols: tuple[int, ...]) -> Tensor:
        if (rows, cols) not in memo:
            if len(rows) == 1:
                memo[rows, cols] = e[rows[0]][cols[0]]
            else:  # expansion along the first remaining row
                terms = [e[rows[0]][c] * det(rows[1:], cols[:k] + cols[k + 1:]) for k, c in enumerate(cols)]
                total = terms[0]
                for k, t in enumerate(terms[1:], 1):
                    total = total - t if k % 2 else total + t
                memo[rows, cols] = total
        return memo[rows, cols]

    full = tuple(range(n))
    d = det(full, full)
    if n == 1:
        return (1.0 / d)[..., None, None]
    # inverse[i][j] = (-1)^(i+j) * minor(row j, column i) / det
    rows = [torch.stack([det(tuple(r for r in full if r != j), tuple(c for c in full if c != i))
                         * (1.0 if (i + j) % 2 == 0 else -1.0) for j in range(n)], -1) for i in range(n)]
    return torch.stack(rows, -2) / d[..., None, None]


def _inv_ex(A: Tensor, check_errors: bool = False) -> tuple[Tensor, Tensor]:
    """Decomposition of aten.linalg_inv_ex (returns (inverse, info = 0))."""
    return small_inverse(A), torch.zeros(A.shape[:-2], dtype=torch.int32, device=A.device)


def _grid_sampler_3d(input, grid, interpolation_mode: int, padding_mode: int, align_corners: bool):
    """ONNX translation of aten.grid_sampler_3d: GridSample-20 (N-D; modes linear|nearest|cubic)."""
    from onnxscript import opset20 as op

    return op.GridSample(input, grid, align_corners=align_corners,
                         mode=("linear", "nearest", "cubic")[interpolation_mode],
                         padding_mode=("zeros", "border", "reflection")[padding_mode])


class InferenceGraph(nn.Module):
    """`model(batch, inference=True)` with positional tensor inputs and a tuple of outputs in
    `output_names` order: what torch.export traces."""

    def __init__(self, model: nn.Module, output_names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.output_names = tuple(output_names)

    def forward(self, img: Tensor, K: Tensor, T_cam_grid: Tensor, depth: Tensor | None = None,
                depth_conf: Tensor | None = None) -> tuple[Tensor, ...]:
        batch = {"img": img, "K": K, "T_cam_grid": T_cam_grid}
        if depth is not None:
            batch["depth"], batch["depth_conf"] = depth, depth_conf
        out = self.model(batch, inference=True)
        return tuple(out[n] for n in self.output_names)


def example_inputs(cfg: ExperimentConfig, stereo: bool, seed: int = 0) -> dict[str, Tensor]:
    """A random frame at the config's image size with a KITTI-like camera 1.7 m above the grid
    origin, looking along +x (velodyne x forward -> optical z); stereo adds a depth map with
    values on every 4th row (like LiDAR / sparse stereo) and its confidence."""
    H, W = cfg.model.image_size
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[[0.59 * W, 0.0, W / 2], [0.0, 0.59 * W, H / 2], [0.0, 0.0, 1.0]]])
    T = torch.tensor([[[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.08], [1.0, 0.0, 0.0, -0.27], [0.0, 0.0, 0.0, 1.0]]])
    inputs = {"img": torch.rand(1, 3, H, W, generator=g), "K": K, "T_cam_grid": T}
    if stereo:
        depth = torch.zeros(1, 1, H, W)
        depth[..., ::4, :] = 2.0 + 50.0 * torch.rand(1, 1, (H + 3) // 4, W, generator=g)
        inputs["depth"] = depth
        inputs["depth_conf"] = (depth > 0).float() * torch.rand(1, 1, H, W, generator=g)
    return inputs


def export_onnx(model: nn.Module, path: str | Path, stereo: bool = False, source: str = "",
                weights_sha256: str = "") -> Path:
    """Write `model`'s inference forward (eval mode, fp32, CPU) to `path` -> path. `source` names
    the checkpoint and `weights_sha256` is its file's sha256 (what backend "auto" matches).

    Raises ImportError naming the missing package when onnx / onnxscript are not installed."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (the torch exporter's translation library)
    except ImportError as e:
        raise ImportError(f"ONNX export needs the onnx and onnxscript packages ({e}); "
                          "pip install -r requirements.txt") from None
    from torch.export import default_decompositions
    from torch.export import export as torch_export

    cfg: ExperimentConfig = model.cfg
    model = model.to("cpu").float().eval()
    inputs = example_inputs(cfg, stereo)
    with torch.inference_mode():
        names = tuple(sorted(model({k: v for k, v in inputs.items()}, inference=True)))
    graph = InferenceGraph(model, names)
    args = tuple(inputs[k] for k in (INPUTS_STEREO if stereo else INPUTS_MONO))
    static = model.static_shapes
    model.static_shapes = True  # every query slot: ONNX needs shapes the data does not decide
    try:
        with torch.no_grad():
            program = torch_export(graph, args)
    finally:
        model.static_shapes = static
    table = default_decompositions()
    table[torch.ops.aten.linalg_inv_ex.default] = _inv_ex
    program = program.run_decompositions(table)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress steps
        onnx_program = torch.onnx.export(
            program, args, opset_version=OPSET, verbose=False,
            input_names=list(INPUTS_STEREO if stereo else INPUTS_MONO), output_names=list(names),
            custom_translation_table={torch.ops.aten.grid_sampler_3d.default: _grid_sampler_3d})
    proto = onnx_program.model_proto
    meta = {"format": FORMAT, "config": json.dumps(to_dict(cfg)), "outputs": json.dumps(names),
            "source": str(source), "torch": torch.__version__}
    if weights_sha256:
        meta[SHA_KEY] = weights_sha256
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


def compare_outputs(torch_logits: np.ndarray, onnx_logits: np.ndarray) -> dict:
    """Max |difference| of two (1, n_cls, ...) logit arrays and the share of voxels whose argmax
    agrees (the parity figures of docs/benchmarks.md)."""
    diff = float(np.abs(torch_logits.astype(np.float64) - onnx_logits).max())
    agree = float((torch_logits.argmax(1) == onnx_logits.argmax(1)).mean())
    scale = float(np.abs(torch_logits).max())
    return {"max_abs_logit_diff": diff, "max_abs_logit": scale, "label_agreement": agree}


def parity(model: nn.Module, path: str | Path, stereo: bool = False, inputs: dict[str, Tensor] | None = None) -> dict:
    """Run the same frame (default: example_inputs) through `model` (CPU, fp32) and the ONNX
    file (ONNX Runtime, CPU) -> compare_outputs of the coarse logits."""
    from .inference import OrtForward

    cfg: ExperimentConfig = model.cfg
    inputs = inputs if inputs is not None else example_inputs(cfg, stereo)
    model = model.to("cpu").float().eval()
    with torch.inference_mode():
        ref = model(dict(inputs), inference=True)["ssc_logits_coarse"]
    ort = OrtForward(path, torch.device("cpu"))
    got = ort(inputs["img"], inputs["K"], inputs["T_cam_grid"], inputs.get("depth"), inputs.get("depth_conf"))
    return compare_outputs(ref.numpy(), got["coarse"].numpy())
