"""2D inference: an RGB image -> one SemanticKITTI training label per pixel, from the encoder and
segmentation branch of a checkpoint (a `cigocc train-seg` checkpoint or a full model's).

Used by `cigocc segment`, the 2D report (evaluation/segmentation.py) and the stereo +
segmentation control (evaluation/controls.py). Labels: 0 = nothing there (sky, or unlabelled), 1-19 as in
cigocc_ros/semantic-kitti.yaml's learning map.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import resources
from .device import resolve_device
from .model.segmenter import ImageSegmenter


class SegmentationPredictor:
    """`labels(image_rgb (H, W, 3) uint8, scale=1.0)` -> (H, W) uint8 labels. The network runs
    on the image rescaled by `scale` (any size: padded inside); its logits are resized back to
    (H, W) before the argmax."""

    def __init__(self, model: ImageSegmenter, device: str | torch.device = "auto"):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()

    @classmethod
    def load(cls, weights: str | Path = "", device: str | torch.device = "auto") -> SegmentationPredictor:
        """From a checkpoint ("" = the shipped weights). Raises CheckpointError for a file that is
        not a checkpoint or has no segmentation branch."""
        from .model.checkpoint import CheckpointError, load_weights, read_metadata

        path = Path(weights) if weights else resources.shipped_weights_file()
        cfg, _ = read_metadata(path)
        try:
            model = ImageSegmenter(cfg)
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None
        load_weights(model, path, partial="model")
        return cls(model, device)

    @torch.inference_mode()
    def logits(self, image_rgb: np.ndarray, scale: float = 1.0) -> torch.Tensor:
        """(n_cls, H, W) float32 logits at the image's own size."""
        if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 \
                or image_rgb.shape[2] != 3:
            raise ValueError(f"image must be an (H, W, 3) uint8 array, got "
                             f"{getattr(image_rgb, 'shape', None)} {getattr(image_rgb, 'dtype', None)}")
        H, W = image_rgb.shape[:2]
        img = torch.from_numpy(image_rgb).to(self.device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        if scale != 1.0:
            size = (max(1, round(H * scale)), max(1, round(W * scale)))
            img = F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
        logits = self.model.full_logits(img)
        if logits.shape[-2:] != (H, W):
            logits = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False)
        return logits[0].float()

    def labels(self, image_rgb: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """(H, W) uint8 labels (module docstring)."""
        return self.logits(image_rgb, scale).argmax(0).to(torch.uint8).cpu().numpy()
