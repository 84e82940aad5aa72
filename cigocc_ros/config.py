"""Typed configuration: the single source of truth for the model, data, training and the node.

`cigocc_ros/experiments/lite.yaml` and `full.yaml` (package data) hold an `ExperimentConfig`
(grid, model, loss, data, train), `real.yaml` an overlay of some sections; `config/cigocc.yaml`
(the ROS share, cigocc_ros.resources) holds the node's ROS parameters (`NodeConfig`) under
`/**: ros__parameters:`. Every checkpoint stores the `ExperimentConfig` it was trained with,
and the node builds its model from the checkpoint's copy, so the three cannot drift apart.

Loading is strict: an unknown key, a missing section or a value of the wrong type raises a
`ConfigError` naming the key and the file.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import resources
from .errors import CigoccError

# The shipped experiment configs, package data beside this module: <name>.yaml for a name.
EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"


class ConfigError(CigoccError, ValueError):
    """A configuration file or override that does not match the dataclasses below."""


# The device names every `device` setting takes (node parameter, --device of the commands);
# cigocc_ros.device.resolve_device turns one into a torch.device.
DEVICE_HELP = "auto | cpu | cuda | cuda:N"
_DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(name: str) -> str | None:
    """None when `name` is a device name (DEVICE_HELP), else the error text. No torch needed."""
    if not isinstance(name, str) or not _DEVICE_NAME.match(name):
        return f"device must be {DEVICE_HELP}, got {name!r}"
    return None


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------
@dataclass
class GridConfig:
    """The voxel grid, in the velodyne frame (x forward, y left, z up), array order (X, Y, Z).

    `origin` is the outer corner of voxel (0, 0, 0). SemanticKITTI: 256x256x32 voxels of 0.2 m
    over x in [0, 51.2], y in [-25.6, 25.6], z in [-2, 4.4]: the voxelizer's extents and the
    current (post 2020-08) release of the voxel files. Files released before that sit one
    voxel higher (origin z -2.2, a writer off-by-one): docs/conventions.md.
    """

    size: tuple[int, int, int] = (256, 256, 32)
    voxel_size: float = 0.2
    origin: tuple[float, float, float] = (0.0, -25.6, -2.0)
    frame_id: str = "velodyne"


@dataclass
class ModelConfig:
    """The CIGOcc network (docs/architecture.md explains each choice)."""

    # Input image (H, W) fed to the network; frames are bottom-cropped / padded to it.
    image_size: tuple[int, int] = (370, 1220)
    # timm backbone with features_only; `pretrained_path` is a local weights file or "".
    backbone: str = "efficientnet_b0"
    backbone_out_indices: tuple[int, ...] = (1, 2, 3, 4)
    pretrained_path: str = ""
    # FPN neck: every level projected to `embed_dims` channels; the fusion level is 1/`feat_stride`.
    embed_dims: int = 64
    feat_stride: int = 8
    num_classes: int = 20
    # Depth branch: discrete bins over [depth_min, depth_max) metres.
    depth_min: float = 2.0
    depth_max: float = 58.0
    depth_bins: int = 112
    # The coarse voxel volume of stage 1 is the grid downsampled by this factor.
    coarse_downsample: int = 2
    unet_channels: int = 32
    # Stage 2 deformable attention.
    cross_attn_layers: int = 3
    cross_attn_heads: int = 8
    cross_attn_points: int = 8
    self_attn_layers: int = 2
    self_attn_heads: int = 8
    self_attn_points: int = 8
    # Ablation switches (docs/ablation.md).
    use_segmentation: bool = True
    use_depth: bool = True
    # Segmentation branch width (features fused into the lift with the class probabilities).
    seg_channels: int = 32
    # Weight of an external metric depth map's soft one-hot in the lift distribution where it
    # has a value (1 - this weight stays on the predicted distribution): "fixed" uses
    # external_depth_weight everywhere; "learned" predicts it per feature cell (a sigmoid gate
    # on the image features and both distributions, starting at external_depth_weight).
    external_depth_weight: float = 0.5
    external_depth_blend: str = "fixed"
    # 3D UNet block: "dense" (3x3x3 convs) or "separable" (depthwise 3x3x3 + pointwise, for CPU).
    unet_block: str = "dense"
    # Stage 2 attends at most this many proposed voxels per sample (top scores; fixed shapes).
    max_queries: int = 16384
    # Stage-2 proposal score of a coarse voxel: "mass" = its lifted depth mass (grows with the
    # number of rays through it, so it favours near voxels), "density" = that mass divided by
    # the number of frustum points in the voxel (the mean probability that the surface lies
    # there, distance-neutral), "occupancy" = stage 1's 1 - p(empty). Without the depth branch
    # the score is always "occupancy". A voxel is proposed when its score exceeds the threshold.
    proposal_score: str = "mass"
    proposal_threshold: float = 0.1
    # Per-distance quotas: with R > 0 the voxels above the threshold are ranked by their score's
    # percentile within R equal-width rings of horizontal distance, so every ring gets a share
    # of max_queries in proportion to its eligible voxels (model/proposals.py); 0 = one global
    # top-k of the scores. Shapes nothing: a checkpoint runs with any value.
    proposal_rings: int = 0
    # Occupancy head: each coarse voxel predicts the logits of (sx, sy, sz) sub-voxels (a
    # sub-pixel convolution), then trilinear upsampling takes them to the grid. (1, 1, 1) =
    # coarse logits upsampled; lite's (2, 2, 4) resolves z fully and x, y at 1:2.
    head_subdivide: tuple[int, int, int] = (1, 1, 1)
    # Hidden width of the feed-forward block after each attention layer, in units of unet_channels.
    ffn_ratio: int = 2
    # The pseudo-LiDAR volume (model/pseudo_lidar.py): stereo pixels counted per voxel of the
    # head's native grid, into the stage-1 UNet, the proposals and the head's logits.
    pseudo_lidar: bool = False
    # Stereo free space (model/pseudo_lidar.py StereoFreeSpace): each native voxel's signed
    # distance to the stereo surface along its ray, two more channels of the evidence term.
    stereo_free_space: bool = False


@dataclass
class LossConfig:
    """Weights of each loss term; 0 disables a term."""

    ssc_ce: float = 1.0
    ssc_aux: float = 0.5
    sem_scal: float = 1.0
    geo_scal: float = 1.0
    distill_bce: float = 1.0
    depth: float = 1.0
    # The main SSC losses (ssc_ce, sem_scal, geo_scal) are computed at grid / ssc_scale:
    # 1 = full resolution (the paper); 2 = against the 1:2 target, 8x fewer voxels, which makes
    # CPU training affordable. Never coarser than the head's own resolution per axis
    # (model.head_subdivide; config.ssc_train_factors): lite with 2 trains at the head's output.
    # Evaluation and inference always use the full grid.
    ssc_scale: int = 1


@dataclass
class DataConfig:
    """Where samples come from and how they are augmented."""

    root: str = ""  # a folder holding sequences/XX/ in the SemanticKITTI layout
    train_sequences: tuple[str, ...] = ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10")
    val_sequences: tuple[str, ...] = ("08",)
    test_sequences: tuple[str, ...] = tuple(f"{i:02d}" for i in range(11, 22))
    stereo: bool = False  # add "depth" from StereoSGBM on image_2/image_3 (cigocc_ros/stereo.py)
    camera: str = "left"  # input colour camera: left (image_2, P2) | right (image_3, P3)
    depth_targets: bool = True  # LiDAR depth targets when velodyne/NNNNNN.bin exists
    # Voxel files from a SemanticKITTI copy made before 2020-08-24 sit one layer up; true undoes
    # that on reading (docs/conventions.md).
    legacy_voxel_shift: bool = False
    teacher_masks: str = "teacher_masks"  # sub-folder of each sequence written by make-masks
    flip_prob: float = 0.5
    color_jitter: float = 0.2
    # Sim-to-real augmentation of training samples (cigocc_ros/data/augment.py); 0 disables each.
    exposure: float = 0.0  # stops: the image times 2**U(-e, e)
    gamma: float = 0.0  # the image to the power exp(U(-g, g))
    white_balance: float = 0.0  # per-channel gains in [1 - w, 1 + w]
    saturation: float = 0.0  # colour saturation times U(1 - s, 1 + s)
    blur_prob: float = 0.0  # probability of a Gaussian blur ...
    blur_sigma: float = 1.5  # ... of sigma U(0.3, blur_sigma) pixels
    noise_std: float = 0.0  # Gaussian pixel noise of sigma U(0, noise_std) (image in [0, 1])
    scale_range: tuple[float, float] = (1.0, 1.0)  # rescale the frame (K with it) by U(lo, hi)
    crop_shift: tuple[int, int] = (0, 0)  # move the crop window by up to (rows, cols) pixels
    stereo_drop: float = 0.0  # probability a training sample's stereo depth is left out (mono)
    # Real frames with targets from `cigocc make-targets`, mixed into training (docs/real-frames.md).
    real_root: str = ""  # a folder holding sequences/XX/ written by make-targets; "" = none
    real_train_sequences: tuple[str, ...] = ()
    real_val_sequences: tuple[str, ...] = ()  # validation on real frames instead of val_sequences
    real_share: float = 0.5  # share of training samples drawn from real frames
    # Keep each frame's decoded targets and stereo depth in memory after first use (about
    # 4.5 MB a frame): training reads every frame many times; the sample loop is in-process.
    cache: bool = False
    num_workers: int = 2


@dataclass
class OptimConfig:
    """Optimisation settings shared by the 3D training (TrainConfig) and the 2D one."""

    steps: int = 25000
    batch_size: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.01
    schedule: str = "onecycle"  # onecycle | cosine
    warmup_pct: float = 0.05
    grad_clip: float = 35.0
    amp: str = "bf16"  # bf16 | fp16 | none; used on CUDA only (CPU trains in fp32)
    val_every: int = 1000
    ckpt_every: int = 1000
    log_every: int = 20
    seed: int = 0


@dataclass
class TrainConfig(OptimConfig):
    """The 3D training's optimisation."""

    # The image side (encoder + segmentation branch, e.g. from `cigocc train-seg`): its learning
    # rate is lr * image_lr; 0 freezes it (its BatchNorm statistics too).
    image_lr: float = 1.0
    # The stereo-evidence term (model.pseudo_lidar's EvidenceLogits, a 1x1x1 convolution that
    # starts at zero): its learning rate is lr * evidence_lr. At the base rate a few hundred CPU
    # steps move its weights by ~0.2, too little to say "a stereo point here: occupied".
    evidence_lr: float = 1.0
    # With image_lr 0: this many augmented variants of each training frame have their image
    # features, stereo depth and targets computed once and cached (training/feature_cache.py);
    # a step then skips the 2D backbone and the stereo matcher. 0 = no cache.
    feature_cache: int = 0
    cache_dir: str = "data/feature-cache"  # where cached variants are kept between sittings


@dataclass
class Seg2DTrainConfig(OptimConfig):
    """OptimConfig with the 2D training's defaults (a YAML section or --set fills the rest from
    these, not from the 3D defaults)."""

    steps: int = 3000
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_every: int = 500
    ckpt_every: int = 100
    log_every: int = 10


@dataclass
class Seg2DConfig:
    """2D training of the image encoder + segmentation branch on real labelled pixels
    (`cigocc train-seg`, cigocc_ros/training/seg_trainer.py; docs/training.md): CamVid's dense
    labels (data/camvid.py holds the class map) and the KITTI frames' projected LiDAR labels
    (data/lidar_pixels.py). Its checkpoint initialises the full model (`cigocc train --init`)."""

    camvid_root: str = ""  # folder with train/ val/ test/ (../shared/camvid); "" = no CamVid
    kitti_root: str = ""  # folder with sequences/XX/ (image_2, velodyne, labels, calib.txt); "" = none
    kitti_train_sequences: tuple[str, ...] = ("00", "01", "02", "03", "04", "05", "09", "10")
    kitti_val_sequences: tuple[str, ...] = ()  # scored during training; never the reported held-out drive
    kitti_share: float = 0.5  # share of training samples that are KITTI frames
    crop: tuple[int, int] = (288, 480)  # (rows, cols) of a training crop
    # Rescale before cropping, log-uniform in [lo, hi]. CamVid's 480x360 frames show a scene
    # about 1.5x smaller than KITTI's camera does (focal ~460 vs ~720 px), so CamVid is scaled
    # up around that factor and scored at `camvid_eval_scale`.
    camvid_scale: tuple[float, float] = (1.0, 2.0)
    kitti_scale: tuple[float, float] = (0.7, 1.4)
    camvid_eval_scale: float = 1.5
    flip_prob: float = 0.5
    # Photometric augmentation (data/augment.photometric), plus saturation in [1 - s, 1 + s]:
    # KITTI's and CamVid's cameras differ in exposure, response and colour.
    exposure: float = 0.5
    gamma: float = 0.3
    white_balance: float = 0.15
    saturation: float = 0.3
    blur_prob: float = 0.2
    blur_sigma: float = 1.2
    noise_std: float = 0.02
    # Class weights 1 / ln(class_weight_c + f) of each label's pixel share f per source (ENet's
    # rule; a larger c flattens them).
    class_weight_c: float = 1.1
    # The loss compares logits upsampled to crop / loss_stride with labels pooled to that size
    # (training/seg_trainer.loss_labels): 2 costs a fourteenth of full resolution on the CPU.
    loss_stride: int = 2
    train: Seg2DTrainConfig = field(default_factory=Seg2DTrainConfig)


@dataclass
class ExperimentConfig:
    """Everything needed to rebuild a model and reproduce its training."""

    name: str = "lite"
    grid: GridConfig = field(default_factory=GridConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seg2d: Seg2DConfig = field(default_factory=Seg2DConfig)


# image_transport's naming: the compressed stream of image topic T is T + "/compressed"
# (sensor_msgs/CompressedImage). The node subscribes to it, kitti-to-bag writes it.
COMPRESSED_SUFFIX = "/compressed"


@dataclass
class NodeConfig:
    """ROS parameters of `cigocc_node` (config/cigocc.yaml mirrors these defaults; each one is
    declared with a descriptor in cigocc_ros/ros/params.py, docs/node.md explains them)."""

    weights: str = ""  # a checkpoint (.safetensors); "" = the shipped weights (resources.shipped_weights_file)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (cigocc_ros.device)
    backend: str = "torch"  # torch | onnxruntime (weights then names an exported .onnx file)
    stereo: bool = False
    sync_slop: float = 0.02  # seconds between left and right stamps to pair them
    sync_queue_size: int = 10  # messages per stream kept while waiting for partners
    queue_size: int = 1  # frames waiting for the worker; older ones are dropped and counted
    grid_frame: str = ""  # frame of the output grid; "" = the checkpoint's grid.frame_id
    # Transform camera(optical) <- grid frame used when TF has none: row-major 4x4.
    camera_from_grid: tuple[float, ...] = ()
    use_tf: bool = True
    # Per camera: "raw" subscribes to <camera>/image (sensor_msgs/Image), "compressed" to
    # <camera>/image/compressed (sensor_msgs/CompressedImage, the image_transport convention).
    left_transport: str = "raw"
    right_transport: str = "raw"
    publish_markers: bool = True
    publish_occupancy: bool = True
    publish_cloud: bool = True
    publish_confidence: bool = True
    # ~/segmentation (mono8 training labels) and ~/segmentation/color (rgb8) of the camera image,
    # the segmentation branch's output; computed only while one of them has a subscriber.
    publish_segmentation: bool = False
    marker_max_rate: float = 2.0  # Hz cap for the RViz markers (rviz slows on big CUBE_LISTs)
    marker_max_range: float = 51.2  # metres, horizontal distance from the grid frame's origin
    marker_decimation: int = 1
    # ~/costmap (nav_msgs/OccupancyGrid), rules in cigocc_ros/costmap.py and docs/node.md.
    publish_costmap: bool = True
    costmap_band_bottom: float = 0.2  # m above the local ground
    costmap_band_top: float = 2.5  # m above the local ground
    costmap_obstacle_classes: tuple[str, ...] = (
        "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist", "motorcyclist",
        "building", "fence", "vegetation", "trunk", "pole", "traffic-sign",
    )
    costmap_drivable_classes: tuple[str, ...] = ("road", "parking")
    costmap_max_range: float = 40.0  # m, horizontal distance from the camera
    costmap_min_confidence: float = 0.3  # top class probability below it -> unknown
    costmap_inflation_radius: float = 0.0  # m; 0 = none (Nav2 inflates in its own layer)
    costmap_ground_z: float = -1.73  # m, nominal ground in the grid frame (KITTI: velodyne 1.73 m up)
    # Voxels outside the camera frustum become 255 (unknown) in occupancy, cloud and markers.
    unknown_outside_frustum: bool = False
    # Stereo matching (StereoSGBM) for the external depth map in stereo mode.
    stereo_num_disparities: int = 128
    stereo_block_size: int = 5
    diagnostics_period: float = 1.0
    input_stall_timeout: float = 2.0  # seconds without a paired frame -> WARN
    max_latency: float = 2.0  # seconds; latency p95 (image stamp -> outputs) above it -> WARN
    log_throttle: float = 5.0  # seconds between repeats of one kind of bad-input warning
    # Time jumps (docs/node.md): stamps further ahead of the node's clock are refused; the ROS
    # clock stepping back by more than time_jump_threshold resets the pairing, and so do stamps
    # stepping back that far for time_jump_frames consecutive frames (fewer: stale, dropped).
    max_stamp_ahead: float = 2.0  # seconds
    time_jump_threshold: float = 1.0  # seconds
    time_jump_frames: int = 3


def head_factors(cfg: ExperimentConfig) -> tuple[int, int, int]:
    """Per-axis factor grid / the occupancy head's native resolution."""
    ds = cfg.model.coarse_downsample
    return tuple(max(ds // k, 1) for k in cfg.model.head_subdivide)


def ssc_train_factors(cfg: ExperimentConfig) -> tuple[int, int, int]:
    """Per-axis factor (grid / training logits) of the main SSC losses: loss.ssc_scale, but
    never coarser than the head's own resolution (head_factors)."""
    s = cfg.loss.ssc_scale
    return tuple(min(s, f) for f in head_factors(cfg))


def target_key(factors: tuple[int, int, int]) -> str:
    """Batch key of the SSC labels downsampled by `factors`: "target" (1, 1, 1), "target_2"
    (2, 2, 2), "target_4x4x1" (4, 4, 1)."""
    fx, fy, fz = factors
    if fx == fy == fz:
        return "target" if fx == 1 else f"target_{fx}"
    return f"target_{fx}x{fy}x{fz}"


# --------------------------------------------------------------------------------------------
# Loading, overriding, comparing
# --------------------------------------------------------------------------------------------
def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Convert a YAML value into the field type `tp`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a mapping, got {type(value).__name__}")
        return _from_dict(tp, value, where, prefix=f"{key}.")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: '{key}' must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key, where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: '{key}' must have {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, key, where) for v, a in zip(value, args, strict=True))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: unsupported union type for '{key}'")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: '{key}' must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-3 without a dot as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML reads 08 or 1e-3 as numbers; strings were meant
        raise ConfigError(f"{where}: '{key}' must be a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {tp!r} for '{key}'")


def _from_dict(cls: type, data: dict, where: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(prefix + k for k in unknown)} "
            f"(known: {', '.join(sorted(names))})"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k, where) for k, v in data.items()}
    return cls(**kwargs)


def from_dict(cls: type, data: dict, where: str = "<dict>") -> Any:
    """Build dataclass `cls` from a nested dict; missing keys keep their defaults."""
    return _from_dict(cls, data or {}, where)


def to_dict(cfg: Any) -> dict:
    """Nested plain dict (lists for tuples) of a config dataclass, YAML/JSON serialisable."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        return v

    return conv(cfg)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.lr=1e-3' -> (['train', 'lr'], 0.001); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    for ov in overrides:
        path, value = parse_override(ov)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{ov}': '{part}' is not a section")
        node[path[-1]] = value
    return data


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_bytes().decode())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def resolve_config_path(name_or_path: str | Path) -> Path:
    """'lite' -> the shipped cigocc_ros/experiments/lite.yaml; anything else is a path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    path = EXPERIMENTS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(f.stem for f in EXPERIMENTS_DIR.glob("*.yaml")))
        raise ConfigError(f"no experiment config named '{name_or_path}' (shipped: {shipped}; "
                          "or pass the path of a YAML file)")
    return path


def merge_sections(base: dict, overlay: dict) -> dict:
    """`overlay` merged into `base` recursively (mappings merge, any other value replaces)."""
    out = dict(base)
    for k, v in overlay.items():
        out[k] = merge_sections(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_experiment(name_or_path: str | Path = "lite", overrides: tuple[str, ...] | list[str] = (),
                    overlays: tuple[str, ...] | list[str] = ()) -> ExperimentConfig:
    """Load experiments/<name>.yaml (or a path), merge the `overlays` (YAML files or config names
    holding some sections, in order), then apply dotted `overrides`."""
    path = resolve_config_path(name_or_path)
    data = _read_yaml(path)
    where = [str(path)]
    for ov in overlays:
        ov_path = resolve_config_path(ov)
        data = merge_sections(data, _read_yaml(ov_path))
        where.append(str(ov_path))
    data = apply_overrides(data, list(overrides))
    return from_dict(ExperimentConfig, data, " + ".join(where))


def load_node_config(path: str | Path | None = None, overrides: dict | None = None) -> NodeConfig:
    """Load the node's parameters from a ROS parameter file (`/**: ros__parameters:`)."""
    try:
        path = Path(path) if path else resources.node_params_file()
    except resources.ResourceNotFound as e:
        raise ConfigError(str(e)) from None
    data = _read_yaml(path)
    params: dict = {}
    for node_name, section in data.items():
        if not isinstance(section, dict) or "ros__parameters" not in section:
            raise ConfigError(f"{path}: '{node_name}' has no ros__parameters")
        params.update(section["ros__parameters"] or {})
    params.update(overrides or {})
    return from_dict(NodeConfig, params, str(path))


def diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two config dataclasses ('model.embed_dims: 64 != 128')."""
    da, db = to_dict(a), to_dict(b)
    out: list[str] = []

    def walk(x: Any, y: Any, key: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{key}.{k}" if key else k)
        elif x != y:
            out.append(f"{key}: {x!r} != {y!r}")

    walk(da, db, prefix)
    return out
