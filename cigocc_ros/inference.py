"""Inference API used by the ROS node: one RGB frame -> semantic occupancy of the grid.

`Predictor.predict(image_rgb (H, W, 3) uint8, K (3, 3), T_cam_grid (4, 4), depth=None)` fits the
frame to the model's input size (geometry.crop_or_pad: bottom crop / pad, K updated), runs the
network under torch.inference_mode (bf16 autocast on CUDA) and returns labels and confidence
as (X, Y, Z) uint8 arrays in the grid frame (x forward, y left, z up).

Labels are the argmax of the network's full-grid logits, i.e. of the head's native logits
(coarse, or coarse in x, y and full in z for the "columns" head) trilinearly upsampled
(align_corners=False). On CPU that upsampling of every class to the full grid would cost more
than the rest of the head, so postprocess.py computes the same argmax while interpolating only
where the native argmax changes between neighbours. Confidence is the head's top class
probability at its own resolution, trilinearly interpolated (255 = 1.0).

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
from torch import Tensor

from . import resources
from .backend import CHOICES, choose
from .config import ExperimentConfig
from .device import DeviceError, resolve_device
from .geometry import camera_from_calib, crop_or_pad, uncrop
from .postprocess import native_argmax_confidence, upsampled_argmax, upsampled_confidence


@dataclass
class Prediction:
    labels: np.ndarray  # (X, Y, Z) uint8 class ids 0..19 (0 = empty)
    confidence: np.ndarray  # (X, Y, Z) uint8, top class probability * 255
    inference_ms: float  # wall time of predict(), preprocessing to the final copy
    # (H, W) uint8 per-pixel training labels of the input image (the segmentation branch; 0 =
    # nothing there or a pixel the model did not see), when predict(segmentation=True).
    segmentation: np.ndarray | None = None


class TorchForward:
    """The network's inference forward in torch: (img (1, 3, H, W), K (1, 3, 3), T (1, 4, 4),
    depth (1, 1, H, W) or None, its confidence (1, 1, H, W) or None) on `device` -> {"coarse":
    logits (1, n_cls, X', Y', Z'), and with a segmentation branch "seg": (1, n_cls, h, w)}."""

    backend = "torch"
    takes_depth = True

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model = model.to(device).eval()
        self.device = device
        self.has_segmentation = getattr(model, "seg_head", None) is not None

    def __call__(self, img: Tensor, K: Tensor, T: Tensor, depth: Tensor | None,
                 depth_conf: Tensor | None = None) -> Tensor:
        batch = {"img": img, "K": K, "T_cam_grid": T}
        if depth is not None:
            batch["depth"], batch["depth_conf"] = depth, depth_conf
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            out = self.model(batch, inference=True)
        return {"coarse": out["ssc_logits_coarse"], **({"seg": out["seg_logits"]} if "seg_logits" in out else {})}


def onnx_config(meta: dict[str, str], path: str | Path) -> ExperimentConfig:
    """The ExperimentConfig that onnx_export.export_onnx stored in an ONNX file's metadata."""
    import json

    from .config import ConfigError, from_dict
    from .model.checkpoint import CheckpointError

    if "config" not in meta:
        raise CheckpointError(f"{path}: no cigocc_ros config in the ONNX metadata (export it with `cigocc export`)")
    try:
        return from_dict(ExperimentConfig, json.loads(meta["config"]), f"{path} (ONNX metadata)")
    except (json.JSONDecodeError, ConfigError) as e:
        raise CheckpointError(f"{path}: unreadable ONNX metadata: {e}") from None


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
            raise DeviceError(f"device={device} with backend 'onnxruntime' needs onnxruntime-gpu "
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
        from .model.checkpoint import CheckpointError

        raise CheckpointError(f"{path}: ONNX Runtime cannot load it: {type(e).__name__}: {e}") from None


class OrtForward:
    """The same forward from an exported ONNX file, run by ONNX Runtime (CPU, or the CUDA
    execution provider for a cuda device). Inputs and outputs as TorchForward (float32 tensors
    on `device`). `threads` = ONNX Runtime's intra-op threads (0: its default)."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, device: torch.device, threads: int = 0):
        self.device = device
        self.session = _ort_session(path, device, threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.takes_depth = "depth" in self.inputs
        names = {o.name for o in self.session.get_outputs()}
        # An export of a network with a segmentation branch carries its logits too (older: not).
        self.outputs = ["ssc_logits_coarse"] + (["seg_logits"] if "seg_logits" in names else [])
        self.has_segmentation = len(self.outputs) == 2
        self.cfg = onnx_config(self.session.get_modelmeta().custom_metadata_map, path)

    def __call__(self, img: Tensor, K: Tensor, T: Tensor, depth: Tensor | None,
                 depth_conf: Tensor | None = None) -> Tensor:
        feeds = {"img": img, "K": K, "T_cam_grid": T}
        if self.takes_depth:  # a stereo export; 0 = no depth value, the model's own convention
            feeds["depth"] = depth if depth is not None else torch.zeros_like(img[:, :1])
            if "depth_conf" in self.inputs:  # without a matcher's confidence: 1 wherever there is a depth
                feeds["depth_conf"] = depth_conf if depth_conf is not None else (feeds["depth"] > 0).float()
        elif depth is not None:
            raise ValueError("this ONNX file was exported without a depth input; export it with "
                             "`cigocc export ... --stereo` to feed stereo depth")
        arrays = {k: np.ascontiguousarray(v.detach().cpu().float().numpy()) for k, v in feeds.items()}
        got = self.session.run(self.outputs, arrays)
        return {key: torch.from_numpy(a).to(self.device) for key, a in zip(("coarse", "seg")[:len(got)], got, strict=True)}


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
        self.backend_reason = "as configured"  # Predictor.load with backend "auto": why this one
        self.image_size = tuple(cfg.model.image_size)
        self.grid_size = tuple(cfg.grid.size)
        H, W = self.image_size
        pin = self.device.type == "cuda"
        self._host_img = torch.empty((H, W, 3), dtype=torch.uint8, pin_memory=pin)
        self._host_depth = torch.empty((2, 1, H, W), dtype=torch.float32, pin_memory=pin)  # depth | confidence
        self._host_KT = torch.empty(25, dtype=torch.float32, pin_memory=pin)  # K (9) | T (16)
        self._img = torch.empty((1, 3, H, W), dtype=torch.float32, device=self.device)

    @property
    def has_segmentation(self) -> bool:
        """Whether predict(segmentation=True) can give per-pixel labels (a segmentation branch)."""
        return self.forward.has_segmentation

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
    def load(cls, path: str | Path, device: str | torch.device = "auto", backend: str = "torch",
             stereo: bool = False) -> Predictor:
        """A checkpoint (.safetensors) for backend 'torch', an exported .onnx for 'onnxruntime'
        (CheckpointError for a file of the other kind); 'auto': onnxruntime on an export of the
        checkpoint when one is present (one with the depth inputs for `stereo`), else torch
        (backend.py; `backend_reason` says which and why)."""
        from .model.checkpoint import CheckpointError

        if backend not in CHOICES:
            raise ValueError(f"backend must be one of {CHOICES}, got {backend!r}")
        if backend == "auto":
            choice = choose(path, backend, str(resolve_device(device)), stereo)
            predictor = cls.load(choice.path, device, choice.backend)
            predictor.backend_reason = choice.reason
            return predictor
        suffix = Path(path).suffix
        if backend == "onnxruntime":
            if suffix != ".onnx":
                raise CheckpointError(f"{path}: backend 'onnxruntime' runs an exported .onnx file; "
                                      f"write one with: cigocc export {path} --onnx model.onnx")
            return cls.from_onnx(path, device)
        if suffix == ".onnx":
            raise CheckpointError(f"{path} is an ONNX file: run it with backend 'onnxruntime'")
        return cls.from_checkpoint(path, device)

    def _check(self, image_rgb: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray, depth: np.ndarray | None,
               depth_conf: np.ndarray | None) -> None:
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
        if depth_conf is not None and (depth is None or np.shape(depth_conf) != np.shape(depth)):
            raise ValueError(f"depth_conf must come with a depth map of its shape, got {np.shape(depth_conf)}")

    @torch.inference_mode()
    def predict(self, image_rgb: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray,
                depth: np.ndarray | None = None, depth_conf: np.ndarray | None = None,
                segmentation: bool = False) -> Prediction:
        """One frame -> Prediction (labels, confidence) over the grid (X, Y, Z). `depth` (H, W)
        metric (0 = none), e.g. stereo, with the matcher's confidence `depth_conf` (H, W) in
        [0, 1] (None: 1 wherever there is a depth); `segmentation` adds the segmentation
        branch's per-pixel labels of the image (what the network computed anyway)."""
        t0 = time.perf_counter()
        self._check(image_rgb, K, T_cam_grid, depth, depth_conf)
        img, K2 = crop_or_pad(image_rgb, K, self.image_size)
        self._host_img.numpy()[...] = img
        self._host_KT.numpy()[:9] = np.asarray(K2, dtype=np.float32).ravel()
        self._host_KT.numpy()[9:] = np.asarray(T_cam_grid, dtype=np.float32).ravel()
        nb = self.device.type == "cuda"
        img_dev = self._host_img.to(self.device, non_blocking=nb)
        self._img.copy_(img_dev.permute(2, 0, 1).unsqueeze(0)).mul_(1.0 / 255.0)
        KT = self._host_KT.to(self.device, non_blocking=nb)
        depth_dev = conf_dev = None
        if depth is not None:
            if not self.takes_depth:
                raise ValueError("this model takes no depth map (an ONNX file exported without --stereo)")
            d, _ = crop_or_pad(np.asarray(depth, dtype=np.float32), K, self.image_size)
            host = self._host_depth.numpy()
            host[0, 0] = np.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0)
            if depth_conf is not None:
                host[1, 0] = np.clip(np.nan_to_num(crop_or_pad(np.asarray(depth_conf, np.float32), K, self.image_size)[0]),
                                     0.0, 1.0)
            else:
                np.greater(host[0, 0], 0.0, out=host[1, 0], casting="unsafe")
            both = self._host_depth.to(self.device, non_blocking=nb)
            depth_dev, conf_dev = both[:1], both[1:]
        out = self.forward(self._img, KT[:9].view(1, 3, 3), KT[9:].view(1, 4, 4), depth_dev, conf_dev)
        coarse = out["coarse"].float()
        # The head's native resolution -> the grid's, per axis (sub-voxel heads: 1 in z).
        scale = tuple(g // c for g, c in zip(self.grid_size, coarse.shape[-3:], strict=True))
        both = torch.empty((2, *self.grid_size), dtype=torch.uint8, device=self.device)  # labels | confidence
        if self.device.type == "cpu":  # argmax and softmax in one pass over the logits (postprocess.py)
            native, conf = native_argmax_confidence(coarse)
            both[0] = upsampled_argmax(coarse, scale, native)[0]
        else:
            both[0] = upsampled_argmax(coarse, scale)[0]
            conf = coarse.softmax(1).amax(1, keepdim=True)
        upsampled_confidence(conf, self.grid_size, both[1:])
        both = both.cpu().numpy()
        seg = None
        if segmentation:
            if "seg" not in out:
                raise ValueError("this model has no segmentation branch (model.use_segmentation: false)")
            seg = uncrop(self.segmentation_labels(out["seg"]), image_rgb.shape[:2])
        return Prediction(both[0], both[1], (time.perf_counter() - t0) * 1000.0, seg)

    def segmentation_labels(self, seg_logits: Tensor) -> np.ndarray:
        """(1, n_cls, h, w) logits of the stride-s fusion level -> (H, W) uint8 labels of the model's
        input: the argmax of their bilinear upsampling (align_corners=False, as `cigocc segment`),
        computed by upsampled_argmax (only where neighbouring cells disagree)."""
        s = self.cfg.model.feat_stride
        up = upsampled_argmax(seg_logits.float().unsqueeze(-1), (s, s, 1))[0, ..., 0]
        H, W = self.image_size
        return up[:H, :W].cpu().numpy()

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
        depth = conf = None
        if right_files is not None:
            if stereo is None:
                from .stereo import StereoDepth

                stereo = StereoDepth(cam.K[0, 0], stereo_baseline(calib[p_key], calib[right_key]))
            res = stereo.match(image, sk.read_image(right_files[i]))
            depth, conf = res.depth, res.confidence
        yield f, image, predictor.predict(image, cam.K, cam.T_cam_grid, depth=depth, depth_conf=conf)
