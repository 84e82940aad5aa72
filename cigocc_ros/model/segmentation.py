"""Segmentation branch: a light head on the fusion-level image features, taught offline by
SAM / Grounded-SAM masks (the BCE distillation loss). Its features and class probabilities are
the "segmentation" level of the stage-1 fusion; no SAM runs at inference.
"""
from __future__ import annotations

from torch import Tensor, nn

from .backbone import conv_bn_relu


class SegmentationHead(nn.Module):
    """(B, E, h, w) image features -> (features (B, S, h, w), logits (B, num_classes, h, w))."""

    def __init__(self, in_channels: int, channels: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(in_channels, channels), conv_bn_relu(channels, channels))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.body(x)
        return feat, self.classifier(feat)
