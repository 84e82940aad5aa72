"""Pictures of voxel grids for people: bird's-eye view, a 3D view, depth maps, panels.

All renderers are vectorised NumPy (no per-voxel Python loops) and return uint8 RGB images;
`save_png` writes them with OpenCV. Colours are the SemanticKITTI palette of classes.py.
Grids are (X, Y, Z) label arrays in the velodyne frame (x forward, y left, z up); pictures put
forward up and left to the left, as a driver sees the road ahead.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .classes import IGNORE_LABEL, load_class_table


def palette(include_ignore: bool = True) -> np.ndarray:
    """(256, 3) uint8 RGB lookup: class colours, white for empty, grey for ignore."""
    lut = np.full((256, 3), 128, dtype=np.uint8)
    colors = load_class_table().colors_rgb
    lut[: len(colors)] = colors
    lut[0] = (255, 255, 255)
    if include_ignore:
        lut[IGNORE_LABEL] = (200, 200, 200)
    return lut


def bev(labels: np.ndarray, scale: int = 2) -> np.ndarray:
    """(X, Y, Z) labels -> (Y*scale... ) RGB bird's-eye view of the top-most non-empty voxel.

    Returns an (X*scale, Y*scale, 3) image with row 0 = far (max x), column 0 = left (max y).
    """
    X, Y, Z = labels.shape
    occupied = (labels != 0) & (labels != IGNORE_LABEL)
    # Index of the highest occupied voxel in every column; columns with none show the ground
    # truth's ignore/empty state of their lowest voxel.
    top = Z - 1 - np.argmax(occupied[:, :, ::-1], axis=2)
    any_occ = occupied.any(axis=2)
    col = np.take_along_axis(labels, top[..., None], axis=2)[..., 0]
    col = np.where(any_occ, col, np.where((labels == IGNORE_LABEL).all(axis=2), IGNORE_LABEL, 0))
    img = palette()[col]
    # Shade by height so structure is readable: higher voxels brighter.
    shade = np.where(any_occ, 0.55 + 0.45 * top / max(Z - 1, 1), 1.0)[..., None]
    img = (img * shade).astype(np.uint8)
    img = img[::-1, ::-1]  # x forward -> up, y left -> left
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


# Costmap colours (RGB): lethal dark red, free light green, unknown grey.
COSTMAP_COLORS = {100: (150, 20, 20), 0: (200, 235, 200), -1: (128, 128, 128)}


def costmap_image(costs: np.ndarray, scale: int = 2) -> np.ndarray:
    """(X, Y) int8 costmap (100 lethal, 0 free, -1 unknown) -> (X*scale, Y*scale, 3) RGB, oriented
    like `bev` (forward up, left to the left)."""
    img = np.zeros(costs.shape + (3,), np.uint8)
    for value, color in COSTMAP_COLORS.items():
        img[costs == value] = color
    img = img[::-1, ::-1]
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def view3d(labels: np.ndarray, voxel_px: int = 3, azimuth_deg: float = 35.0, elevation_deg: float = 35.0,
           size: tuple[int, int] = (540, 720)) -> np.ndarray:
    """An orthographic 3D view of occupied voxels from behind-left and above (painter's order,
    vectorised with a z-buffer via np.lexsort). Returns an (H, W, 3) RGB image."""
    H, W = size
    idx = np.argwhere((labels != 0) & (labels != IGNORE_LABEL))
    img = np.full((H, W, 3), 255, dtype=np.uint8)
    if idx.size == 0:
        return img
    lab = labels[idx[:, 0], idx[:, 1], idx[:, 2]]
    p = idx.astype(np.float32) - np.array(labels.shape, dtype=np.float32) / 2
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    # Turn the grid about z by the azimuth, then look along +x' from behind and above, tilted
    # down by the elevation: screen right is -y' (y is left), screen up mixes x' and z.
    xr = p[:, 0] * np.cos(az) - p[:, 1] * np.sin(az)
    yr = p[:, 0] * np.sin(az) + p[:, 1] * np.cos(az)
    right = -yr
    up = xr * np.sin(el) + p[:, 2] * np.cos(el)
    depth = xr * np.cos(el) - p[:, 2] * np.sin(el)
    extent = np.abs(np.stack([right, up], 1)).max() + 1
    s = 0.95 * min(H, W) / (2 * extent)
    u = (W / 2 + right * s).astype(np.int32)
    v = (H / 2 - up * s).astype(np.int32)
    r = max(1, int(round(s / 2)))
    # Far to near: nearer voxels overwrite; each voxel is an r x r square.
    order = np.argsort(-depth)
    u, v, lab, z = u[order], v[order], lab[order], p[order, 2]
    shade = (0.6 + 0.4 * (z - z.min()) / max(np.ptp(z), 1e-6))[:, None]
    colors = (palette()[lab] * shade).astype(np.uint8)
    for du in range(-r, r + 1):  # loops over the splat's few pixel offsets, not over voxels
        for dv in range(-r, r + 1):
            uu, vv = u + du, v + dv
            ok = (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)
            img[vv[ok], uu[ok]] = colors[ok]
    return img


def depth_image(depth: np.ndarray, max_depth: float = 60.0) -> np.ndarray:
    """(H, W) metric depth (0 = none) -> (H, W, 3) RGB, near = warm, none = black."""
    d = np.clip(np.nan_to_num(depth) / max_depth, 0, 1)
    img = cv2.applyColorMap((255 * (1 - d)).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    img[~(depth > 0)] = 0
    return img


def class_image(ids: np.ndarray) -> np.ndarray:
    """(H, W) class ids (255 = none) -> (H, W, 3) RGB in the palette."""
    return palette()[ids]


def overlay(image_rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 image with (H, W) labels blended in their class colours; label 0 (nothing
    there: sky) and 255 leave the image as it is."""
    colour = palette()[labels].astype(np.float32)
    out = image_rgb.astype(np.float32)
    shown = ((labels > 0) & (labels != IGNORE_LABEL))[..., None]
    return np.where(shown, (1 - alpha) * out + alpha * colour, out).round().astype(np.uint8)


def panel(images: list[np.ndarray], height: int = 376) -> np.ndarray:
    """Images side by side, each scaled to `height` rows."""
    rows = []
    for im in images:
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=2)
        w = max(1, int(round(im.shape[1] * height / im.shape[0])))
        rows.append(cv2.resize(im, (w, height), interpolation=cv2.INTER_NEAREST))
    return np.concatenate(rows, axis=1)


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")
    return path


def prediction_panel(image_rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The picture of one predicted frame: image | bird's-eye view | 3D view."""
    return panel([image_rgb, bev(labels), view3d(labels)], height=image_rgb.shape[0])
