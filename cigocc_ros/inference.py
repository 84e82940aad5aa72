"""Inference API used by the ROS node: one RGB frame -> semantic occupancy of the grid.

`Predictor.predict(image_rgb (H, W, 3) uint8, K (3, 3), T_cam_grid (4, 4), depth=None)` fits the
frame to the model's input size (geometry.crop_or_pad: bottom crop / pad, K updated), runs the
network under torch.inference_mode (bf16 autocast on CUDA) and returns labels and confidence
as (X, Y, Z) uint8 arrays in the grid frame (x forward, y left, z up).

Labels are the argmax of the network's full-grid logits, i.e. of the head's coarse logits
trilinearly upsampled (align_corners=False). On CPU that upsampling of every class to the full
grid is the single most expensive step, so `upsampled_argmax` computes the same argmax while
interpolating only where the coarse argmax changes between neighbours: where all 8 coarse
corners of a fine voxel agree on a class, that class is also the argmax of any convex
combination of their logits. Confidence is the head's top class probability at its own
resolution, trilinearly interpolated (255 = 1.0).

Two backends run the network's forward between that shared pre- and post-processing:
`TorchForward` (the nn.Module) and `OrtForward` (an ONNX file written by onnx_export.py, run by
ONNX Runtime, an optional dependency: a clear ImportError when it is missing).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import resources
from .config import ExperimentConfig
from .device import resolve_device
from .geometry import camera_from_calib, crop_or_pad


@dataclass
class Prediction:
    labels: np.ndarray  # (X, Y, Z) uint8 class ids 0..19 (0 = empty)
    confidence: np.ndarray  # (X, Y, Z) uint8, top class probability * 255
    inference_ms: float  # wall time of predict(), preprocessing to the final copy


def _corner_weights(scale: int, device: torch.device) -> Tensor:
    """(8, scale**3) trilinear weights of the 8 corners of a dual cell (corner order a, b, c in
    {0, 1}, c fastest) for its scale**3 fine voxels (x-major), align_corners=False."""
    f = (torch.arange(scale, dtype=torch.float32, device=device) + 0.5) / scale  # (s,)
    w1 = torch.stack([1 - f, f])  # (2, s): weight of corner 0 / 1 along one axis
    w = w1[:, None, None, :, None, None] * w1[None, :, None, None, :, None] * w1[None, None, :, None, None, :]
    return w.reshape(8, scale ** 3)


def upsampled_argmax(logits: Tensor, scale: int) -> Tensor:
    """argmax over classes of F.interpolate(logits, scale_factor=scale, mode="trilinear",
    align_corners=False), without building the upsampled logits where it is not needed.

    logits (B, n_cls <= 256, x, y, z) -> (B, x*scale, y*scale, z*scale) uint8. For an even `scale`
    each fine voxel lies in the "dual cell" spanned by 8 neighbouring coarse centres (edges
    replicated, which is what align_corners=False does there); cells whose corners agree take
    that class, the others are interpolated exactly.
    """
    B, n_cls, x, y, z = logits.shape
    if n_cls > 256:
        raise ValueError(f"upsampled_argmax: {n_cls} classes do not fit uint8 labels")
    if scale == 1:
        return logits.argmax(1).to(torch.uint8)
    if scale % 2 or logits.device.type != "cpu":
        # GPUs upsample everything faster than they gather; odd scales lack the dual-cell layout.
        up = F.interpolate(logits.float(), scale_factor=scale, mode="trilinear", align_corners=False)
        return up.argmax(1).to(torch.uint8)
    s, h = scale, scale // 2
    weights = _corner_weights(s, logits.device)
    out = []
    for b in range(B):
        pad = F.pad(logits[b:b + 1].float(), (1, 1, 1, 1, 1, 1), mode="replicate")[0]  # (n, x+2, y+2, z+2)
        arg = pad.max(0).indices.to(torch.uint8)  # uint8 blocks: 8x less memory traffic than int64
        corners = torch.stack([arg[a:a + x + 1, c:c + y + 1, e:e + z + 1]
                               for a in (0, 1) for c in (0, 1) for e in (0, 1)])  # (8, x+1, y+1, z+1)
        agree = (corners == corners[:1]).all(0)
        blocks = corners[0].unsqueeze(-1).expand(-1, -1, -1, s ** 3).clone()  # (x+1, y+1, z+1, s^3)
        cells = (~agree).flatten().nonzero().squeeze(1)  # flat (x+1, y+1, z+1) index of each cell
        if cells.numel():
            # Channels-last rows and a flat gather: the class axis stays contiguous for argmax.
            rows = pad.permute(1, 2, 3, 0).reshape(-1, n_cls)
            ci, rem = cells // ((y + 1) * (z + 1)), cells % ((y + 1) * (z + 1))
            cj, ck = rem // (z + 1), rem % (z + 1)
            base = (ci * (y + 2) + cj) * (z + 2) + ck  # corner (0, 0, 0) in the padded volume
            offs = torch.tensor([(a * (y + 2) + c) * (z + 2) + e for a in (0, 1) for c in (0, 1) for e in (0, 1)],
                                device=logits.device)
            vals = rows[base.unsqueeze(1) + offs]  # (M, 8, n_cls)
            fine_logits = torch.matmul(weights.t(), vals)  # (M, s^3, n_cls), contiguous
            blocks.view(-1, s ** 3)[cells] = fine_logits.max(-1).indices.to(torch.uint8)
        fine = blocks.view(x + 1, y + 1, z + 1, s, s, s).permute(0, 3, 1, 4, 2, 5)
        fine = fine.reshape((x + 1) * s, (y + 1) * s, (z + 1) * s)
        out.append(fine[h:h + x * s, h:h + y * s, h:h + z * s])
    return torch.stack(out)


BACKENDS = ("torch", "onnxruntime")


class TorchForward:
    """The network's inference forward in torch: (img (1, 3, H, W), K (1, 3, 3), T (1, 4, 4),
    depth (1, 1, H, W) or None) on `device` -> coarse logits (1, n_cls, X', Y', Z')."""

    backend = "torch"
    takes_depth = True

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model = model.to(device).eval()
        self.device = device

    def __call__(self, img: Tensor, K: Tensor, T: Tensor, depth: Tensor | None) -> Tensor:
        batch = {"img": img, "K": K, "T_cam_grid": T}
        if depth is not None:
            batch["depth"] = depth
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            return self.model(batch, inference=True)["ssc_logits_coarse"]


def onnx_config(meta: dict[str, str], path: str | Path) -> ExperimentConfig:
    """The ExperimentConfig that onnx_export.export_onnx stored in an ONNX file's metadata."""
    import json

    from .config import ConfigError, from_dict

    if "config" not in meta:
        raise ValueError(f"{path}: no cigocc_ros config in the ONNX metadata (export it with `cigocc export`)")
    try:
        return from_dict(ExperimentConfig, json.loads(meta["config"]), f"{path} (ONNX metadata)")
    except (json.JSONDecodeError, ConfigError) as e:
        raise ValueError(f"{path}: unreadable ONNX metadata: {e}") from None


def _ort_session(path: str | Path, device: torch.device, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("backend 'onnxruntime' needs the onnxruntime package (pip install onnxruntime, "
                          "or onnxruntime-gpu for CUDA); the 'torch' backend runs without it") from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(f"device={device} with backend 'onnxruntime' needs onnxruntime-gpu "
                               f"(available providers: {ort.get_available_providers()})")
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), *providers]
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # ONNX Runtime's workers spin for a while after each run by default: CPU taken from the
    # node's other threads (and from torch in a side-by-side benchmark) for no gain at 2-10 Hz.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise ValueError(f"{path}: ONNX Runtime cannot load it: {type(e).__name__}: {e}") from None


class OrtForward:
    """The same forward from an exported ONNX file, run by ONNX Runtime (CPU, or the CUDA
    execution provider for a cuda device). Inputs as TorchForward; returns the logits as a
    float32 tensor on `device`. `threads` = ONNX Runtime's intra-op threads (0: its default)."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, device: torch.device, threads: int = 0):
        self.device = device
        self.session = _ort_session(path, device, threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.takes_depth = "depth" in self.inputs
        self.cfg = onnx_config(self.session.get_modelmeta().custom_metadata_map, path)

    def __call__(self, img: Tensor, K: Tensor, T: Tensor, depth: Tensor | None) -> Tensor:
        feeds = {"img": img, "K": K, "T_cam_grid": T}
        if self.takes_depth:  # a stereo export; 0 = no depth value, the model's own convention
            feeds["depth"] = depth if depth is not None else torch.zeros_like(img[:, :1])
        elif depth is not None:
            raise ValueError("this ONNX file was exported without a depth input; export it with "
                             "`cigocc export ... --stereo` to feed stereo depth")
        arrays = {k: np.ascontiguousarray(v.detach().cpu().float().numpy()) for k, v in feeds.items()}
        (logits,) = self.session.run(["ssc_logits_coarse"], arrays)
        return torch.from_numpy(logits).to(self.device)


class Predictor:
    """Runs a CIGOcc model on single frames; `cfg` is the ExperimentConfig the model was built
    (or trained) with, `model` the nn.Module or an OrtForward. Per-frame buffers are allocated
    once; the only device -> host transfer is the final (2, X, Y, Z) uint8 copy."""

    def __init__(self, cfg: ExperimentConfig, model: torch.nn.Module | OrtForward, device: str | torch.device = "auto"):
        self.cfg = cfg
        self.device = resolve_device(device)
        if isinstance(model, OrtForward):
            self.forward, self.model = model, None
            if model.device != self.device:
                raise ValueError(f"OrtForward runs on {model.device}, the Predictor on {self.device}")
        else:
            self.forward = TorchForward(model, self.device)
            self.model = self.forward.model
        self.backend = self.forward.backend
        self.image_size = tuple(cfg.model.image_size)
        self.grid_size = tuple(cfg.grid.size)
        H, W = self.image_size
        pin = self.device.type == "cuda"
        self._host_img = torch.empty((H, W, 3), dtype=torch.uint8, pin_memory=pin)
        self._host_depth = torch.empty((1, 1, H, W), dtype=torch.float32, pin_memory=pin)
        self._host_KT = torch.empty(25, dtype=torch.float32, pin_memory=pin)  # K (9) | T (16)
        self._img = torch.empty((1, 3, H, W), dtype=torch.float32, device=self.device)

    @property
    def takes_depth(self) -> bool:
        """Whether predict() accepts a depth map (an ONNX file exported without one does not)."""
        return self.forward.takes_depth

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto") -> Predictor:
        # Checkpoints need safetensors; a Predictor around a model built in memory does not.
        from .model.checkpoint import load_checkpoint

        model, _ = load_checkpoint(path)
        return cls(model.cfg, model, device)

    @classmethod
    def from_onnx(cls, path: str | Path, device: str | torch.device = "auto", threads: int = 0) -> Predictor:
        dev = resolve_device(device)
        forward = OrtForward(path, dev, threads)
        return cls(forward.cfg, forward, dev)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto", backend: str = "torch") -> Predictor:
        """A checkpoint (.safetensors) for backend 'torch', an exported .onnx for 'onnxruntime'."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        suffix = Path(path).suffix
        if backend == "onnxruntime":
            if suffix != ".onnx":
                raise ValueError(f"backend 'onnxruntime' runs an exported .onnx file, got {path}; "
                                 f"write one with: cigocc export {path} --onnx model.onnx")
            return cls.from_onnx(path, device)
        if suffix == ".onnx":
            raise ValueError(f"{path} is an ONNX file: run it with backend 'onnxruntime'")
        return cls.from_checkpoint(path, device)

    def _check(self, image_rgb: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray, depth: np.ndarray | None) -> None:
        if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 \
                or image_rgb.shape[2] != 3:
            raise ValueError(f"image_rgb must be an (H, W, 3) uint8 array, got "
                             f"{getattr(image_rgb, 'shape', None)} {getattr(image_rgb, 'dtype', type(image_rgb))}")
        if np.shape(K) != (3, 3) or not np.all(np.isfinite(K)):
            raise ValueError(f"K must be a finite (3, 3) matrix, got shape {np.shape(K)}")
        if np.shape(T_cam_grid) != (4, 4) or not np.all(np.isfinite(T_cam_grid)):
            raise ValueError(f"T_cam_grid must be a finite (4, 4) matrix, got shape {np.shape(T_cam_grid)}")
        if depth is not None and np.shape(depth)[:2] != image_rgb.shape[:2]:
            raise ValueError(f"depth must be (H, W) like the image {image_rgb.shape[:2]}, got {np.shape(depth)}")

    @torch.inference_mode()
    def predict(self, image_rgb: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray,
                depth: np.ndarray | None = None) -> Prediction:
        """One frame -> Prediction (labels, confidence) over the grid (X, Y, Z)."""
        t0 = time.perf_counter()
        self._check(image_rgb, K, T_cam_grid, depth)
        img, K2 = crop_or_pad(image_rgb, K, self.image_size)
        self._host_img.numpy()[...] = img
        self._host_KT.numpy()[:9] = np.asarray(K2, dtype=np.float32).ravel()
        self._host_KT.numpy()[9:] = np.asarray(T_cam_grid, dtype=np.float32).ravel()
        nb = self.device.type == "cuda"
        img_dev = self._host_img.to(self.device, non_blocking=nb)
        self._img.copy_(img_dev.permute(2, 0, 1).unsqueeze(0)).mul_(1.0 / 255.0)
        KT = self._host_KT.to(self.device, non_blocking=nb)
        depth_dev = None
        if depth is not None:
            if not self.takes_depth:
                raise ValueError("this model takes no depth map (an ONNX file exported without --stereo)")
            d, _ = crop_or_pad(np.asarray(depth, dtype=np.float32), K, self.image_size)
            self._host_depth.numpy()[0, 0] = np.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0)
            depth_dev = self._host_depth.to(self.device, non_blocking=nb)
        coarse = self.forward(self._img, KT[:9].view(1, 3, 3), KT[9:].view(1, 4, 4), depth_dev).float()
        scale = self.grid_size[0] // coarse.shape[2]  # the head's resolution -> the grid's
        labels = upsampled_argmax(coarse, scale)[0]  # uint8
        conf = coarse.softmax(1).amax(1, keepdim=True)
        if scale > 1:
            conf = F.interpolate(conf, scale_factor=scale, mode="trilinear", align_corners=False)
        conf = (conf[0, 0] * 255.0).round_().clamp_(0, 255)
        both = torch.stack([labels, conf.to(torch.uint8)]).cpu().numpy()
        return Prediction(both[0], both[1], (time.perf_counter() - t0) * 1000.0)

    def warmup(self, runs: int = 2) -> None:
        """Run a few black frames so that kernel selection and allocations happen up front."""
        H, W = self.image_size
        K = np.array([[W, 0, W / 2], [0, W, H / 2], [0, 0, 1]], dtype=np.float64)
        T = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
        for _ in range(runs):
            self.predict(np.zeros((H, W, 3), np.uint8), K, T)


def default_weights() -> Path:
    """The shipped weights file ($CIGOCC_WEIGHTS, else weights/ in the share folders that
    cigocc_ros.resources searches). Raises resources.ResourceNotFound naming where it looked."""
    return resources.shipped_weights_file()


def predict_images(predictor: Predictor, files: list[Path], calib: dict[str, np.ndarray], p_key: str = "P2",
                   right_files: list[Path] | None = None, right_key: str = "P3"):
    """Yield (file, image (H, W, 3) uint8 RGB, Prediction) for KITTI image files of the camera
    whose calib.txt projection is `p_key` (grayscale images are repeated to three channels).
    With `right_files` (one per file, projection `right_key`), each pair's StereoSGBM depth
    (default parameters, cigocc_ros/stereo.py) is the network's external depth: the node's
    stereo mode."""
    # Reading files and stereo matching need OpenCV; the Predictor itself needs only torch and
    # numpy (bench/ runs it on machines without OpenCV), so they are imported here.
    from .data import semantic_kitti as sk
    from .geometry import stereo_baseline

    stereo = None
    for i, f in enumerate(files):
        image = sk.read_image(f)
        if image.ndim == 2:  # grayscale KITTI: the network takes three channels
            image = np.repeat(image[..., None], 3, axis=2)
        cam = camera_from_calib(calib[p_key], calib["Tr"], image.shape[:2])
        depth = None
        if right_files is not None:
            if stereo is None:
                from .stereo import StereoDepth

                stereo = StereoDepth(cam.K[0, 0], stereo_baseline(calib[p_key], calib[right_key]))
            depth = stereo(image, sk.read_image(right_files[i]))
        yield f, image, predictor.predict(image, cam.K, cam.T_cam_grid, depth=depth)
