"""SemanticKITTI / KITTI odometry file formats: readers and writers, label remapping,
the benchmark's 1:2 / 1:8 downsampling, and voxelising a labelled scan.

Layout of one sequence folder `sequences/XX/` (docs/data.md has the full description):

- `calib.txt`            P0..P3 (3x4 rectified projections), Tr (3x4, velodyne -> rectified cam0)
- `poses.txt`            one 3x4 row-major pose per frame (cam0 of frame i -> cam0 of frame 0)
- `times.txt`            one timestamp in seconds per frame
- `image_0..3/NNNNNN.png` grayscale left/right (0, 1) and colour left/right (2, 3)
- `velodyne/NNNNNN.bin`  float32 (N, 4): x, y, z, reflectance in the velodyne frame
- `labels/NNNNNN.label`  uint32 (N,): semantic id in the low 16 bits, instance id in the high 16
- `voxels/NNNNNN.bin|.invalid|.occluded` bit-packed voxel masks (8 voxels a byte, MSB first)
- `voxels/NNNNNN.label`  uint16 raw SemanticKITTI ids, one per voxel, not packed

Voxel volumes are (X, Y, Z) = (256, 256, 32) in the velodyne frame, flattened in C order
(z fastest). Every error about a file names the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..classes import IGNORE_LABEL, load_class_table
from ..config import GridConfig
from ..errors import CigoccError

PathLike = str | os.PathLike
GRID_SIZE = (256, 256, 32)
CALIB_KEYS = ("P0", "P1", "P2", "P3", "Tr")


class DataFormatError(CigoccError, ValueError):
    """A missing, truncated or malformed dataset file; the message names the file."""


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _read_bytes(path: PathLike, dtype: np.dtype, what: str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: {what} file not found")
    size, item = path.stat().st_size, np.dtype(dtype).itemsize
    if size % item:  # np.fromfile would drop the partial value of a file cut mid-number
        raise DataFormatError(f"{path}: {what} file has {size} bytes, not a whole number of {item}-byte values")
    return np.fromfile(path, dtype=dtype)


def _check_count(arr: np.ndarray, expected: int, path: PathLike, what: str) -> None:
    if arr.size != expected:
        nbytes = arr.size * arr.itemsize
        raise DataFormatError(
            f"{path}: {what} has {nbytes} bytes, expected {expected * arr.itemsize} "
            f"({expected} x {arr.dtype})"
        )


def _prepare_dir(path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def frame_name(frame: int | str) -> str:
    """6-digit frame stem: 5 -> '000005'."""
    return f"{int(frame):06d}"


# --------------------------------------------------------------------------------------------
# calib.txt, poses.txt, times.txt
# --------------------------------------------------------------------------------------------
def _read_text(path: Path, what: str) -> str:
    """The text of a small KITTI text file; DataFormatError when it is missing or not text."""
    if not path.is_file():
        raise DataFormatError(f"{path}: {what} not found")
    try:
        return path.read_bytes().decode()
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not a text file ({e.reason} at byte {e.start})") from None


def read_calib(path: PathLike, required: tuple[str, ...] = CALIB_KEYS) -> dict[str, np.ndarray]:
    """Read a KITTI odometry `calib.txt` -> {'P0'..'P3', 'Tr': (3, 4) float64}, as stored
    (the shapes `geometry.camera_from_calib` takes; Tr maps velodyne -> rectified cam0).

    Lines are `KEY: 12 numbers`. Raises DataFormatError naming the file for a missing key in
    `required` or a line that is not 12 numbers.
    """
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(_read_text(path, "calibration file").splitlines(), 1):
        if not line.strip():
            continue
        if ":" not in line:
            raise DataFormatError(f"{path}:{lineno}: expected 'KEY: values', got {line!r}")
        key, values = line.split(":", 1)
        try:
            nums = np.array([float(v) for v in values.split()], dtype=np.float64)
        except ValueError:
            raise DataFormatError(f"{path}:{lineno}: '{key.strip()}' has non-numeric values") from None
        if nums.size != 12:
            raise DataFormatError(f"{path}:{lineno}: '{key.strip()}' has {nums.size} values, expected 12")
        out[key.strip()] = nums.reshape(3, 4)
    missing = [k for k in required if k not in out]
    if missing:
        raise DataFormatError(f"{path}: missing calibration key(s) {', '.join(missing)}")
    return out


def write_calib(path: PathLike, calib: dict[str, np.ndarray]) -> None:
    """Write `calib.txt`: every entry as `KEY: 12 numbers` (a 4x4 Tr is written as its top 3x4)."""
    path = _prepare_dir(path)
    lines = []
    for key, mat in calib.items():
        m = np.asarray(mat, dtype=np.float64)
        if m.shape == (4, 4):
            m = m[:3]
        if m.size != 12:
            raise ValueError(f"calibration '{key}' for {path} must be 3x4 or 4x4, got {m.shape}")
        lines.append(f"{key}: " + " ".join(f"{v:.12e}" for v in m.reshape(-1)))
    path.write_text("\n".join(lines) + "\n")


def read_poses(path: PathLike) -> np.ndarray:
    """Read `poses.txt` -> (N, 4, 4) float64 (cam0 of frame i -> cam0 of frame 0)."""
    path = Path(path)
    rows = [line.split() for line in _read_text(path, "poses file").splitlines() if line.strip()]
    bad = [i + 1 for i, r in enumerate(rows) if len(r) != 12]
    if bad:
        raise DataFormatError(f"{path}: line {bad[0]} does not hold 12 numbers")
    try:
        arr = np.array(rows, dtype=np.float64).reshape(-1, 3, 4)
    except ValueError:
        raise DataFormatError(f"{path}: non-numeric pose values") from None
    poses = np.tile(np.eye(4), (len(arr), 1, 1))
    poses[:, :3, :] = arr
    return poses


def write_poses(path: PathLike, poses: np.ndarray) -> None:
    """Write (N, 4, 4) or (N, 3, 4) poses as `poses.txt` (3x4 row-major per line)."""
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim != 3 or p.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"poses for {path} must be (N, 4, 4) or (N, 3, 4), got {p.shape}")
    np.savetxt(_prepare_dir(path), p[:, :3, :].reshape(len(p), 12), fmt="%.9e")


def read_times(path: PathLike) -> np.ndarray:
    """Read `times.txt` -> (N,) float64 seconds."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"times file not found: {path}")
    try:
        return np.loadtxt(path, dtype=np.float64, ndmin=1)
    except ValueError as e:
        raise DataFormatError(f"{path}: not one number per line ({e})") from None


def write_times(path: PathLike, times: np.ndarray) -> None:
    """Write (N,) seconds as `times.txt`."""
    np.savetxt(_prepare_dir(path), np.asarray(times, dtype=np.float64).reshape(-1), fmt="%.6e")


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------
def read_image(path: PathLike, rgb: bool = True) -> np.ndarray:
    """Read a PNG -> (H, W, 3) uint8 RGB (`rgb=True`, grayscale is repeated) or as stored:
    (H, W) for grayscale, (H, W, 3) RGB for colour."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"image not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataFormatError(f"{path}: not a readable image")
    if img.dtype != np.uint8:
        raise DataFormatError(f"{path}: expected 8-bit pixels, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if rgb and img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img


def image_size(path: PathLike) -> tuple[int, int]:
    """(H, W) of an image file without decoding it (PNG header; other formats are decoded)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"image not found: {path}")
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    return read_image(path, rgb=False).shape[:2]


def write_image(path: PathLike, image: np.ndarray) -> None:
    """Write an (H, W) grayscale or (H, W, 3) RGB uint8 image as PNG (lossless)."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"image for {path} must be uint8 (H, W) or (H, W, 3), got {img.dtype} {img.shape}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(_prepare_dir(path)), img):
        raise OSError(f"could not write image {path}")


# --------------------------------------------------------------------------------------------
# Scans and per-point labels
# --------------------------------------------------------------------------------------------
def read_scan(path: PathLike) -> np.ndarray:
    """Read a velodyne `.bin` -> (N, 4) float32 x, y, z, reflectance (velodyne frame)."""
    raw = _read_bytes(path, np.float32, "scan")
    if raw.size % 4:
        raise DataFormatError(f"{path}: {raw.size * 4} bytes is not a whole number of 16-byte points")
    return raw.reshape(-1, 4)


def write_scan(path: PathLike, points: np.ndarray) -> None:
    """Write (N, 4) x, y, z, reflectance (or (N, 3), reflectance 0) as float32 `.bin`."""
    p = np.asarray(points, dtype=np.float32)
    if p.ndim != 2 or p.shape[1] not in (3, 4):
        raise ValueError(f"scan for {path} must be (N, 3) or (N, 4), got {p.shape}")
    if p.shape[1] == 3:
        p = np.hstack([p, np.zeros((len(p), 1), np.float32)])
    np.ascontiguousarray(p).tofile(_prepare_dir(path))


def read_point_labels(path: PathLike, num_points: int | None = None,
                      scan: PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a per-point `.label` -> (semantic (N,) uint16 raw ids, instance (N,) uint16).

    With `num_points`, a file that does not hold one label per scan point is an error; it
    names `scan` too when given, as either file may be the one cut short.
    """
    raw = _read_bytes(path, np.uint32, "point label")
    if num_points is not None and scan is not None and raw.size != num_points:
        raise DataFormatError(f"{path}: {raw.size} labels for the {num_points} points of {scan} "
                              "(one of the two is cut short or from another frame)")
    if num_points is not None:
        _check_count(raw, num_points, path, "per-point label file")
    return (raw & 0xFFFF).astype(np.uint16), (raw >> 16).astype(np.uint16)


def write_point_labels(path: PathLike, semantic: np.ndarray, instance: np.ndarray | None = None) -> None:
    """Write per-point labels: uint32 = instance << 16 | semantic."""
    sem = np.asarray(semantic).astype(np.uint32).reshape(-1)
    inst = np.zeros_like(sem) if instance is None else np.asarray(instance).astype(np.uint32).reshape(-1)
    if inst.shape != sem.shape:
        raise ValueError(f"labels for {path}: instance {inst.shape} != semantic {sem.shape}")
    ((inst << 16) | (sem & 0xFFFF)).astype(np.uint32).tofile(_prepare_dir(path))


# --------------------------------------------------------------------------------------------
# Voxel files
# --------------------------------------------------------------------------------------------
def pack_bits(mask: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool -> (X*Y*Z/8,) uint8, 8 voxels a byte, most significant bit first."""
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1), bitorder="big")


def unpack_bits(packed: np.ndarray, size: tuple[int, int, int] = GRID_SIZE) -> np.ndarray:
    """(X*Y*Z/8,) uint8 -> (X, Y, Z) bool (MSB first)."""
    return np.unpackbits(packed, bitorder="big").astype(bool).reshape(size)


def read_voxel_mask(path: PathLike, size: tuple[int, int, int] = GRID_SIZE) -> np.ndarray:
    """Read a bit-packed `.bin` / `.invalid` / `.occluded` -> (X, Y, Z) bool."""
    packed = _read_bytes(path, np.uint8, "voxel mask")
    _check_count(packed, int(np.prod(size)) // 8, path, "bit-packed voxel file")
    return unpack_bits(packed, size)


def write_voxel_mask(path: PathLike, mask: np.ndarray, size: tuple[int, int, int] = GRID_SIZE) -> None:
    m = np.asarray(mask, dtype=bool)
    if m.shape != tuple(size):
        raise ValueError(f"voxel mask for {path} must be {tuple(size)}, got {m.shape}")
    pack_bits(m).tofile(_prepare_dir(path))


def read_voxel_labels(path: PathLike, size: tuple[int, int, int] = GRID_SIZE) -> np.ndarray:
    """Read a voxel `.label` (also a submission file) -> (X, Y, Z) uint16 raw ids."""
    labels = _read_bytes(path, np.uint16, "voxel label")
    _check_count(labels, int(np.prod(size)), path, "voxel label file")
    return labels.reshape(size)


@dataclass
class VoxelFrame:
    """The voxel files of one frame; a field is None when its file is absent. (X, Y, Z) arrays."""

    labels: np.ndarray | None  # uint16 raw SemanticKITTI ids
    invalid: np.ndarray | None  # bool
    occluded: np.ndarray | None  # bool
    occupancy: np.ndarray | None  # bool, the single-scan input occupancy (`.bin`)


def read_voxels(path_stem: PathLike, size: tuple[int, int, int] = GRID_SIZE) -> VoxelFrame:
    """Read whichever of `<stem>.label/.invalid/.occluded/.bin` exist (stem = voxels/NNNNNN)."""
    stem = str(path_stem)
    if not any(Path(stem + ext).is_file() for ext in (".label", ".invalid", ".occluded", ".bin")):
        raise DataFormatError(f"no voxel files at {stem}.{{label,invalid,occluded,bin}}")

    def mask(ext: str) -> np.ndarray | None:
        return read_voxel_mask(stem + ext, size) if Path(stem + ext).is_file() else None

    labels = read_voxel_labels(stem + ".label", size) if Path(stem + ".label").is_file() else None
    return VoxelFrame(labels, mask(".invalid"), mask(".occluded"), mask(".bin"))


def _ignore_raw_id() -> int:
    """The smallest raw id the class table maps to ignore: how 255 is written in raw files."""
    lmap = load_class_table().learning_map
    return int(np.flatnonzero(lmap == IGNORE_LABEL)[0])


def labels_to_raw(labels: np.ndarray) -> np.ndarray:
    """Training labels 0..19 (255 = ignore) -> uint16 raw SemanticKITTI ids (learning_map_inv;
    255 becomes the first raw id that learning_map ignores, so it reads back as 255)."""
    table = load_class_table()
    lab = np.asarray(labels)
    bad = ((lab >= table.num_classes) & (lab != IGNORE_LABEL)) | (lab < 0)
    if bad.any():
        raise ValueError(f"labels must be 0..{table.num_classes - 1} or {IGNORE_LABEL}, got {int(lab[bad][0])}")
    lut = np.zeros(256, dtype=np.uint16)
    lut[: table.num_classes] = table.learning_map_inv
    lut[IGNORE_LABEL] = _ignore_raw_id()
    return lut[lab.astype(np.uint8)]


def write_voxels(
    path_stem: PathLike,
    labels: np.ndarray | None = None,
    invalid: np.ndarray | None = None,
    occluded: np.ndarray | None = None,
    occupancy: np.ndarray | None = None,
    *,
    raw: bool = False,
) -> None:
    """Write the voxel files of one frame (stem = `.../voxels/NNNNNN`); None skips a file.

    labels: (X, Y, Z) training labels 0..19 / 255 (`raw=False`, converted with
    learning_map_inv) or raw SemanticKITTI ids (`raw=True`), written as uint16 `.label`.
    invalid / occluded / occupancy: (X, Y, Z) bool, bit-packed to `.invalid` / `.occluded` / `.bin`.
    """
    stem = str(path_stem)
    if labels is not None:
        lab = np.asarray(labels)
        if lab.ndim != 3:
            raise ValueError(f"voxel labels for {stem} must be (X, Y, Z), got {lab.shape}")
        out = lab.astype(np.uint16) if raw else labels_to_raw(lab)
        np.ascontiguousarray(out, dtype=np.uint16).tofile(_prepare_dir(stem + ".label"))
        size = lab.shape
    else:
        size = next((np.shape(a) for a in (invalid, occluded, occupancy) if a is not None), GRID_SIZE)
    for ext, m in ((".invalid", invalid), (".occluded", occluded), (".bin", occupancy)):
        if m is not None:
            write_voxel_mask(stem + ext, m, size)


def write_prediction(path: PathLike, labels: np.ndarray) -> None:
    """Write a benchmark submission file: (X, Y, Z) labels 0..19 -> uint16 raw ids `.label`."""
    lab = np.asarray(labels)
    if lab.ndim != 3 or lab.min(initial=0) < 0 or lab.max(initial=0) >= load_class_table().num_classes:
        raise ValueError(f"prediction for {path} must be (X, Y, Z) labels 0..19, got {lab.shape}")
    np.ascontiguousarray(labels_to_raw(lab)).tofile(_prepare_dir(path))


# --------------------------------------------------------------------------------------------
# Remapping and downsampling
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _raw_lut() -> np.ndarray:
    """learning_map padded to every uint16 id (the last entry stands for all larger ids)."""
    lmap = load_class_table().learning_map
    lut = np.full(65537, IGNORE_LABEL, dtype=np.uint8)
    lut[: len(lmap)] = lmap
    return lut


def remap_labels(raw: np.ndarray, invalid: np.ndarray | None = None) -> np.ndarray:
    """Raw SemanticKITTI ids (any shape) -> uint8 labels 0..19, 255 for ignored raw ids
    (those learning_map sends to 0, other than 0 itself; and ids it does not know) and for
    voxels where `invalid` is set."""
    raw = np.asarray(raw)
    if raw.dtype.kind not in "ui":
        raise ValueError(f"raw labels must be integers, got {raw.dtype}")
    if raw.dtype.kind == "i" and raw.size and raw.min() < 0:
        raise ValueError("raw labels must be >= 0")
    lut = _raw_lut()
    if raw.dtype.itemsize > 2:  # ids past uint16 share the last entry: unknown, ignored
        raw = np.minimum(raw, len(lut) - 1)
    out = lut[raw]
    if invalid is not None:
        out[np.asarray(invalid, dtype=bool)] = IGNORE_LABEL
    return out


def downsample_labels(labels: np.ndarray, factor: int | tuple[int, int, int]) -> np.ndarray:
    """The benchmark's majority downsampling of (X, Y, Z) labels 0..19 / 255 by `factor` (one
    for all axes, or one per axis).

    Per block of fx*fy*fz voxels: if empty (0) plus ignored (255) voxels are more than 95 %
    of the block, the block is 0 when empty voxels outnumber ignored ones, else 255;
    otherwise it is the most frequent class among 1..19 (the smaller id on a tie).
    Returns (X/fx, Y/fy, Z/fz) uint8.
    """
    lab = np.asarray(labels)
    fx, fy, fz = (factor,) * 3 if isinstance(factor, int) else tuple(factor)
    n = fx * fy * fz
    if n == 1:
        return lab.astype(np.uint8)
    X, Y, Z = lab.shape
    if X % fx or Y % fy or Z % fz:
        raise ValueError(f"grid {lab.shape} is not divisible by {(fx, fy, fz)}")
    x, y, z = X // fx, Y // fy, Z // fz
    blocks = lab.reshape(x, fx, y, fy, z, fz).transpose(0, 2, 4, 1, 3, 5).reshape(-1, n)
    # Class 255 counts in bin 20 so one bincount gives every block's histogram.
    compact = np.where(blocks == IGNORE_LABEL, 20, blocks).astype(np.int64)
    nb = blocks.shape[0]
    hist = np.bincount(
        (np.arange(nb, dtype=np.int64)[:, None] * 21 + compact).reshape(-1), minlength=nb * 21
    ).reshape(nb, 21)
    n_empty, n_ignore = hist[:, 0], hist[:, 20]
    mostly_empty = (n_empty + n_ignore) > 0.95 * n
    majority = 1 + np.argmax(hist[:, 1:20], axis=1)
    out = np.where(mostly_empty, np.where(n_empty > n_ignore, 0, IGNORE_LABEL), majority)
    return out.astype(np.uint8).reshape(x, y, z)


# --------------------------------------------------------------------------------------------
# Voxelising a labelled scan
# --------------------------------------------------------------------------------------------
def voxelize_scan(
    points: np.ndarray,
    labels_raw: np.ndarray | None = None,
    grid: GridConfig | None = None,
    min_range: float = 2.5,
    max_range: float = 70.0,
    hide_ego: bool = True,
    ignore_raw: tuple[int, ...] = (0, 1),
) -> tuple[np.ndarray, np.ndarray]:
    """Voxelise one scan as SemanticKITTI's voxelizer does (docs/conventions.md).

    points: (N, >=3) velodyne-frame x, y, z; labels_raw: (N,) raw semantic ids or None.
    Points closer than `min_range` or farther than `max_range` (metres from the sensor),
    on the ego vehicle (-2 < x < 3, |y| < 2) with `hide_ego`, or with a raw label in
    `ignore_raw` (unlabeled, outlier) are dropped. Voxel index = floor((p - origin) / size),
    computed in float32 like the voxelizer.
    Returns (occupancy (X, Y, Z) bool, labels (X, Y, Z) uint16 raw ids: the most frequent
    label of the voxel's points, the smaller id on a tie; 0 where empty).
    """
    grid = grid or GridConfig()
    size = np.array(grid.size)
    pts = np.asarray(points, dtype=np.float32)[:, :3]
    lab = np.zeros(len(pts), np.uint16) if labels_raw is None else np.asarray(labels_raw).astype(np.uint16)
    if len(lab) != len(pts):
        raise ValueError(f"{len(lab)} labels for {len(pts)} points")
    rng = np.linalg.norm(pts, axis=1)
    keep = (rng >= min_range) & (rng <= max_range)
    if hide_ego:
        keep &= ~((pts[:, 0] > -2.0) & (pts[:, 0] < 3.0) & (np.abs(pts[:, 1]) < 2.0))
    if labels_raw is not None and ignore_raw:
        keep &= ~np.isin(lab, np.asarray(ignore_raw, dtype=np.uint16))
    idx = np.floor(
        (pts[keep] - np.asarray(grid.origin, np.float32)) / np.float32(grid.voxel_size)
    ).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < size), axis=1)
    flat = np.ravel_multi_index(tuple(idx[inside].T), tuple(size))
    lab = lab[keep][inside].astype(np.int64)
    occupancy = np.zeros(int(np.prod(size)), dtype=bool)
    occupancy[flat] = True
    labels = np.zeros(int(np.prod(size)), dtype=np.uint16)
    if flat.size:
        keys, counts = np.unique(flat * 65536 + lab, return_counts=True)
        vox, vlab = keys // 65536, keys % 65536
        # Per voxel: highest count first, then the smaller label id; keep the first row.
        order = np.lexsort((vlab, -counts, vox))
        first = np.ones(len(order), dtype=bool)
        first[1:] = vox[order][1:] != vox[order][:-1]
        labels[vox[order][first]] = vlab[order][first]
    return occupancy.reshape(tuple(size)), labels.reshape(tuple(size))


def undo_legacy_shift(volume: np.ndarray) -> np.ndarray:
    """Voxel volumes released before 2020-08-24 were written one flat index late (voxelizer
    off-by-one, jbehley/voxelizer#4): every voxel sits one layer up (+z). Move each value
    one flat index back so the volume matches the current release (docs/conventions.md)."""
    v = np.asarray(volume)
    flat = v.reshape(-1)
    out = np.zeros_like(flat)
    out[:-1] = flat[1:]
    return out.reshape(v.shape)


# --------------------------------------------------------------------------------------------
# Sequence layout
# --------------------------------------------------------------------------------------------
# KITTI projection matrix (calib.txt key) of each camera folder.
CAMERA_PROJECTIONS = {"image_0": "P0", "image_1": "P1", "image_2": "P2", "image_3": "P3"}


@dataclass(frozen=True)
class SequencePaths:
    """The one description of a sequence folder: `root/sequences/XX` (a dataset's sequence), or
    any folder laid out the same way (`SequencePaths.at(folder)`: a KITTI download, a sample)."""

    root: Path
    sequence: str
    folder: Path | None = None  # set by at(): the sequence folder itself

    @classmethod
    def at(cls, folder: PathLike) -> SequencePaths:
        """A sequence folder given directly (calib.txt, image_N/, ... inside it)."""
        folder = Path(folder)
        return cls(folder.parent.parent, folder.name, folder)

    @property
    def dir(self) -> Path:
        return self.folder if self.folder is not None else Path(self.root) / "sequences" / self.sequence

    @property
    def calib(self) -> Path:
        return self.dir / "calib.txt"

    @property
    def poses(self) -> Path:
        return self.dir / "poses.txt"

    @property
    def times(self) -> Path:
        return self.dir / "times.txt"

    def image(self, frame: int | str, camera: int = 2) -> Path:
        return self.dir / f"image_{camera}" / f"{frame_name(frame)}.png"

    def scan(self, frame: int | str) -> Path:
        return self.dir / "velodyne" / f"{frame_name(frame)}.bin"

    def point_labels(self, frame: int | str) -> Path:
        return self.dir / "labels" / f"{frame_name(frame)}.label"

    def voxel_stem(self, frame: int | str) -> Path:
        return self.dir / "voxels" / frame_name(frame)

    def prediction(self, frame: int | str) -> Path:
        return self.dir / "predictions" / f"{frame_name(frame)}.label"

    def teacher_mask(self, frame: int | str, folder: str = "teacher_masks") -> Path:
        return self.dir / folder / f"{frame_name(frame)}.png"

    def frames(self, kind: str = "voxels", ext: str = ".label") -> list[str]:
        """Sorted 6-digit stems of `<kind>/*<ext>` (e.g. the labelled voxel frames)."""
        folder = self.dir / kind
        if not folder.is_dir():
            return []
        return sorted(p.name[: -len(ext)] for p in folder.iterdir() if p.name.endswith(ext))

    def frame_indices(self, kind: str, ext: str) -> set[int]:
        """Frame numbers of `<kind>/NNNNNN<ext>` (empty when the folder is absent)."""
        return {int(f) for f in self.frames(kind, ext) if f.isdigit()}

    def camera_images(self, camera: str = "auto") -> tuple[str, list[Path]]:
        """(calib.txt P key, sorted PNGs) of `camera` ("image_0".."image_3"); "auto" takes the
        colour image_2 if present, else the grayscale image_0."""
        if camera == "auto":
            camera = "image_2" if (self.dir / "image_2").is_dir() else "image_0"
        if camera not in CAMERA_PROJECTIONS:
            raise ValueError(f"unknown camera folder {camera!r} (image_0..image_3 or auto)")
        files = sorted((self.dir / camera).glob("*.png"))
        if not files:
            raise FileNotFoundError(f"no PNG images in {self.dir / camera}")
        return CAMERA_PROJECTIONS[camera], files


def read_voxel_target(stem: PathLike, size: tuple[int, int, int] = GRID_SIZE,
                      legacy_shift: bool = False) -> np.ndarray:
    """The training target of one frame: `<stem>.label` [+ `.invalid`] -> (X, Y, Z) uint8 labels
    0..19, 255 where ignored or invalid. `legacy_shift`: the files predate the 2020-08 voxelizer
    fix (docs/conventions.md): move them back first."""
    stem = str(stem)
    labels = read_voxel_labels(stem + ".label", size)
    invalid = read_voxel_mask(stem + ".invalid", size) if Path(stem + ".invalid").is_file() else None
    if legacy_shift:
        labels = undo_legacy_shift(labels)
        invalid = None if invalid is None else undo_legacy_shift(invalid)
    return remap_labels(labels, invalid)


def read_labelled_scan(paths: SequencePaths, frame: int | str) -> tuple[np.ndarray, np.ndarray]:
    """A frame's scan and its labels: (points (N, 4) float32, semantic raw ids (N,) uint16)."""
    points = read_scan(paths.scan(frame))
    semantic, _ = read_point_labels(paths.point_labels(frame), len(points), paths.scan(frame))
    return points, semantic


def write_scan_voxels(paths: SequencePaths, frame: int | str, out: SequencePaths | None = None,
                      invalid: np.ndarray | None = None, grid: GridConfig | None = None) -> VoxelFrame:
    """Voxelise a frame's labelled scan (`voxelize_scan`) and write `voxels/NNNNNN.label` (raw
    ids), `.bin` (occupancy) and, if given, `.invalid` into `out` (default: the same sequence).
    Returns what was written."""
    points, semantic = read_labelled_scan(paths, frame)
    occupancy, labels = voxelize_scan(points, semantic, grid)
    write_voxels((out or paths).voxel_stem(frame), labels, invalid=invalid, occupancy=occupancy, raw=True)
    return VoxelFrame(labels, None if invalid is None else np.asarray(invalid, bool), None, occupancy)


# --------------------------------------------------------------------------------------------
# Teacher masks (written by the make-masks tool and the synthetic generator)
# --------------------------------------------------------------------------------------------
def read_teacher_mask(path: PathLike) -> np.ndarray:
    """Read `<teacher_masks>/NNNNNN.png` -> (H, W) uint8 class ids 0..19, 255 = no mask.
    The mask has the size of the frame's uncropped image_2."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"teacher mask not found: {path}")
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.dtype != np.uint8 or mask.ndim != 2:
        raise DataFormatError(f"{path}: a teacher mask must be a single-channel 8-bit PNG")
    num = load_class_table().num_classes
    bad = (mask >= num) & (mask != IGNORE_LABEL)
    if bad.any():
        raise DataFormatError(f"{path}: class id {int(mask[bad][0])} is not 0..{num - 1} or {IGNORE_LABEL}")
    return mask


def write_teacher_mask(path: PathLike, mask: np.ndarray) -> None:
    """Write an (H, W) uint8 teacher mask (class ids 0..19, 255 = no mask) as a 1-channel PNG."""
    m = np.asarray(mask)
    if m.ndim != 2 or m.dtype != np.uint8:
        raise ValueError(f"teacher mask for {path} must be (H, W) uint8, got {m.dtype} {m.shape}")
    if not cv2.imwrite(str(_prepare_dir(path)), m):
        raise OSError(f"could not write teacher mask {path}")
