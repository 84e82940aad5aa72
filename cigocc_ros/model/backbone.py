"""Image extractor: a timm backbone (features_only) and an FPN neck to multi-level features.

Input images are RGB in [0, 1]; the ImageNet normalisation happens here so every caller feeds
the same thing. Nothing is downloaded: weights come only from a local safetensors file.
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def load_backbone_weights(body: nn.Module, path: str | Path) -> None:
    """Copy a local safetensors file (a timm classification or features_only state dict) into
    `body`; keys the features-only body lacks (the classifier) are dropped. Raises when the
    file is missing, is not safetensors, or matches nothing."""
    # Only this optional start needs safetensors: the network itself is torch + timm alone
    # (bench/gpu_check.py runs it on a machine that may lack safetensors).
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.pretrained_path: no such file {path}")
    if path.suffix != ".safetensors":
        raise ValueError(f"model.pretrained_path: {path} must be a .safetensors file (pickles are never loaded)")
    state = load_file(str(path))
    own = body.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"model.pretrained_path: {path} has no tensor matching the backbone's names/shapes")
    missing = [k for k in own if k not in usable and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"model.pretrained_path: {path} lacks {len(missing)} backbone tensors, e.g. {missing[:3]}")
    body.load_state_dict(usable, strict=False)


class ImageEncoder(nn.Module):
    """timm features_only backbone + FPN (top-down, lateral 1x1, output 3x3).

    forward(img (B, 3, H, W) RGB in [0, 1]) -> list of L maps (B, embed_dims, H/s_l, W/s_l)
    at strides `self.strides` (ascending), each merged with the coarser levels above it.
    """

    def __init__(self, name: str, out_indices: tuple[int, ...], embed_dims: int, pretrained_path: str = ""):
        super().__init__()
        try:
            self.body = timm.create_model(name, pretrained=False, features_only=True, out_indices=tuple(out_indices))
        except (RuntimeError, ValueError, IndexError) as e:
            raise ValueError(f"model.backbone={name!r} / backbone_out_indices={tuple(out_indices)}: {e}") from None
        if pretrained_path:
            load_backbone_weights(self.body, pretrained_path)
        channels = self.body.feature_info.channels()
        self.strides: list[int] = list(self.body.feature_info.reduction())
        self.lateral = nn.ModuleList(nn.Conv2d(c, embed_dims, 1) for c in channels)
        self.output = nn.ModuleList(conv_bn_relu(embed_dims, embed_dims) for _ in channels)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, img: Tensor) -> list[Tensor]:
        feats = self.body((img - self.mean) / self.std)
        lat = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(lat) - 2, -1, -1):
            # Sizes need not halve exactly (370 rows -> 47, 24, 12), so resize to the target.
            lat[i] = lat[i] + F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode="nearest")
        return [conv(x) for conv, x in zip(self.output, lat, strict=True)]
