"""3D UNet on the lifted coarse volume: three scales (1, 1/2, 1/4), skip connections by
addition. "dense" blocks use 3x3x3 convolutions (GPU); "separable" ones a depthwise 3x3x3 and a
pointwise 1x1x1 convolution (about 1/C of the multiply-adds, for the CPU config)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

BLOCKS = ("dense", "separable")


def conv3(cin: int, cout: int, block: str, stride: int = 1) -> nn.Sequential:
    if block == "dense" or cin != cout:
        layers = [nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)]
    else:
        layers = [nn.Conv3d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
                  nn.Conv3d(cin, cout, 1, bias=False)]
    return nn.Sequential(*layers, nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class ResBlock3D(nn.Module):
    """x -> relu(x + conv(conv(x))), channels kept."""

    def __init__(self, channels: int, block: str):
        super().__init__()
        self.a = conv3(channels, channels, block)
        self.b = conv3(channels, channels, block)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.b(self.a(x)))


class UNet3D(nn.Module):
    """(B, Cin, X, Y, Z) -> (B, C, X, Y, Z) with C = `channels`; X, Y, Z any size >= 1."""

    def __init__(self, in_channels: int, channels: int, block: str = "dense"):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"model.unet_block must be one of {BLOCKS}, got {block!r}")
        c1, c2, c3 = channels, 2 * channels, 4 * channels
        self.stem = nn.Sequential(nn.Conv3d(in_channels, c1, 1, bias=False), nn.BatchNorm3d(c1), nn.ReLU(inplace=True))
        self.enc1 = ResBlock3D(c1, block)
        self.down2 = conv3(c1, c2, "dense", stride=2)
        self.enc2 = ResBlock3D(c2, block)
        self.down3 = conv3(c2, c3, "dense", stride=2)
        self.enc3 = ResBlock3D(c3, block)
        self.up2 = nn.Conv3d(c3, c2, 1)
        self.dec2 = ResBlock3D(c2, block)
        self.up1 = nn.Conv3d(c2, c1, 1)
        self.dec1 = ResBlock3D(c1, block)

    def forward(self, x: Tensor) -> Tensor:
        e1 = self.enc1(self.stem(x))
        e2 = self.enc2(self.down2(e1))
        e3 = self.enc3(self.down3(e2))
        d2 = self.dec2(e2 + F.interpolate(self.up2(e3), size=e2.shape[-3:], mode="trilinear", align_corners=False))
        return self.dec1(e1 + F.interpolate(self.up1(d2), size=e1.shape[-3:], mode="trilinear", align_corners=False))
