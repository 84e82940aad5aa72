"""The 2D half of CIGOcc on its own: the image encoder + the segmentation branch.

`ImageSegmenter` holds the very modules CIGOcc builds (`encoder`, `seg_head`, same names and
shapes from the same config), so its weights load into the full network and back
(checkpoint.load_weights with `partial`): `cigocc train-seg` trains them on real labelled pixels
and `cigocc train --init` starts the 3D training from them (docs/training.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ExperimentConfig
from .backbone import ImageEncoder
from .segmentation import SegmentationHead

# The state-dict prefixes of the modules shared with CIGOcc: its image side (the 3D training's
# train.image_lr, the feature cache's key).
SEGMENTER_PREFIXES = ("encoder.", "seg_head.")


def pad_to_stride(img: Tensor, stride: int) -> tuple[Tensor, tuple[int, int]]:
    """Zero-pad (B, C, H, W) on the bottom / right to multiples of `stride` -> (padded, (H, W))."""
    H, W = img.shape[-2:]
    return F.pad(img, (0, -W % stride, 0, -H % stride)), (H, W)


class ImageSegmenter(nn.Module):
    """forward(img (B, 3, H, W) RGB in [0, 1]) -> logits (B, n_cls, h, w) at the fusion stride
    (model.feat_stride); `full_logits` upsamples them (bilinear) to the input's (H, W)."""

    def __init__(self, cfg: ExperimentConfig):
        super().__init__()
        m = cfg.model
        if not m.use_segmentation:
            raise ValueError("model.use_segmentation is false: this config has no segmentation branch")
        self.encoder = ImageEncoder(m.backbone, m.backbone_out_indices, m.embed_dims, m.pretrained_path)
        if m.feat_stride not in self.encoder.strides:
            raise ValueError(f"model.feat_stride={m.feat_stride} is not one of the backbone strides "
                             f"{self.encoder.strides}")
        self.fusion_level = self.encoder.strides.index(m.feat_stride)
        self.seg_head = SegmentationHead(m.embed_dims, m.seg_channels, m.num_classes)
        self.max_stride = max(self.encoder.strides)

    def forward(self, img: Tensor) -> Tensor:
        return self.seg_head(self.encoder(img)[self.fusion_level])[1]

    def full_logits(self, img: Tensor) -> Tensor:
        """(B, n_cls, H, W) logits of an image of any size (padded to the coarsest stride inside)."""
        padded, (H, W) = pad_to_stride(img, self.max_stride)
        logits = self(padded)
        s = padded.shape[-1] // logits.shape[-1]
        up = F.interpolate(logits, scale_factor=s, mode="bilinear", align_corners=False)
        return up[..., :H, :W]

    @torch.inference_mode()
    def labels(self, img: Tensor) -> Tensor:
        """(B, H, W) uint8 argmax labels."""
        return self.full_logits(img).argmax(1).to(torch.uint8)
