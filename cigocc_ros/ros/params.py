"""Every NodeConfig field declared as a ROS parameter with a descriptor (type, range, read-only).

NodeConfig (cigocc_ros/config.py) is the single source of the names, types and defaults;
config/cigocc.yaml carries the same values under `/**: ros__parameters:` (a test keeps them
equal). Parameters marked read-only shape the node at start-up (model, device, subscriptions);
the others can be changed at run time with `ros2 param set`.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter

from ..classes import load_class_table
from ..config import DEVICE_HELP, NodeConfig, check_device_name
from ..costmap import CostmapSpec
from ..geometry import rigid_transform_error

TRANSPORTS = ("raw", "compressed")


@dataclass(frozen=True)
class ParamInfo:
    description: str
    read_only: bool = False
    range: tuple[float, float] | None = None  # inclusive bounds for numbers
    choices: tuple[str, ...] = ()  # allowed values for strings


PARAMS: dict[str, ParamInfo] = {
    "weights": ParamInfo("Checkpoint file (.safetensors); empty = the shipped weights", read_only=True),
    "device": ParamInfo(f"Inference device: {DEVICE_HELP}", read_only=True),
    "backend": ParamInfo("Network runtime: torch; onnxruntime for a .onnx file from `cigocc export`; auto: "
                         "onnxruntime when an export of the weights is present (`cigocc export --cache`), else torch",
                         read_only=True, choices=("torch", "onnxruntime", "auto")),
    "stereo": ParamInfo("Subscribe to the right camera too and feed stereo depth", read_only=True),
    "sync_slop": ParamInfo("Max spread (s) of the image/info stamps paired into one frame", True, (0.0, 1.0)),
    "sync_queue_size": ParamInfo("Messages per stream kept while waiting for partners", True, (1, 100)),
    "queue_size": ParamInfo("Frames waiting for inference; older ones are dropped", True, (1, 10)),
    "grid_frame": ParamInfo("Frame of the output grid; empty = the checkpoint's grid.frame_id", True),
    "camera_from_grid": ParamInfo(
        "Row-major 4x4 camera(optical) <- grid transform, used when TF has none (16 floats)"
    ),
    "use_tf": ParamInfo("Look the camera <- grid transform up in TF (when tf2_ros is installed)"),
    "left_transport": ParamInfo(
        "raw: left/image (Image); compressed: left/image/compressed (CompressedImage)", True, choices=TRANSPORTS
    ),
    "right_transport": ParamInfo(
        "raw: right/image (Image); compressed: right/image/compressed (CompressedImage)", True, choices=TRANSPORTS
    ),
    "publish_markers": ParamInfo("Publish ~/markers (visualization_msgs/MarkerArray)"),
    "publish_occupancy": ParamInfo("Publish ~/occupancy (cigocc_msgs/SemanticOccupancy)"),
    "publish_cloud": ParamInfo("Publish ~/cloud (sensor_msgs/PointCloud2 of occupied voxels)"),
    "publish_confidence": ParamInfo("Fill the per-voxel confidence of the occupancy and cloud"),
    "publish_segmentation": ParamInfo("Publish ~/segmentation (mono8 training labels of the camera image) and "
                                      "~/segmentation/color (rgb8), while subscribed"),
    "marker_max_rate": ParamInfo("Max marker publishing rate (Hz); RViz slows on big CUBE_LISTs", range=(0.01, 100.0)),
    "marker_max_range": ParamInfo("Markers only within this horizontal distance (m) of the grid origin", range=(0.0, 1000.0)),
    "marker_decimation": ParamInfo("Draw one cube per N voxels along each axis", range=(1, 16)),
    "publish_costmap": ParamInfo("Publish ~/costmap (nav_msgs/OccupancyGrid: 100 lethal, 0 free, -1 unknown)"),
    "costmap_band_bottom": ParamInfo("Obstacle band bottom (m above the local ground)", range=(-5.0, 10.0)),
    "costmap_band_top": ParamInfo("Obstacle band top (m above the local ground)", range=(-5.0, 20.0)),
    "costmap_obstacle_classes": ParamInfo("Class names that make a cell lethal inside the band"),
    "costmap_drivable_classes": ParamInfo("Class names of drivable ground (free cells, local ground height)"),
    "costmap_max_range": ParamInfo("Cells farther than this (m, horizontal, from the camera) are unknown",
                                   range=(0.0, 1000.0)),
    "costmap_min_confidence": ParamInfo("Voxels less confident than this (top class probability) are unknown",
                                        range=(0.0, 1.0)),
    "costmap_inflation_radius": ParamInfo("Cells within this distance (m) of a lethal cell become lethal",
                                          range=(0.0, 10.0)),
    "costmap_ground_z": ParamInfo("Nominal ground height (m, grid frame) when a frame shows no drivable ground",
                                  range=(-100.0, 100.0)),
    "unknown_outside_frustum": ParamInfo("Label voxels outside the camera frustum 255 (unknown) in the 3D outputs"),
    "stereo_num_disparities": ParamInfo("StereoSGBM disparity search range (multiple of 16)", True, (16, 512)),
    "stereo_block_size": ParamInfo("StereoSGBM block size (odd)", True, (1, 31)),
    "diagnostics_period": ParamInfo("Seconds between /diagnostics messages", True, (0.05, 60.0)),
    "input_stall_timeout": ParamInfo("Seconds without a paired frame before diagnostics WARN", range=(0.1, 3600.0)),
    "max_latency": ParamInfo("Latency p95 (s, image stamp -> outputs) above which diagnostics WARN", range=(0.0, 3600.0)),
    "log_throttle": ParamInfo("Seconds between repeats of one kind of bad-input warning", range=(0.0, 3600.0)),
    "max_stamp_ahead": ParamInfo("Refuse messages stamped more than this (s) ahead of the node's clock",
                                 range=(0.0, 1e9)),
    "time_jump_threshold": ParamInfo("A stamp or the ROS clock stepping back by more than this (s) resets "
                                     "the pairing (a looping bag, a resynced camera)", True, (0.001, 3600.0)),
    "time_jump_frames": ParamInfo("Consecutive frames stamped that far back that start a new timeline; "
                                  "fewer are dropped as stale stamps (the ROS clock jumping resets at once)",
                                  True, (1, 100)),
}

_missing = {f.name for f in dataclasses.fields(NodeConfig)} ^ set(PARAMS)
if _missing:  # a NodeConfig field without a descriptor (or a stale entry) is a programming error
    raise RuntimeError(f"cigocc_ros/ros/params.py: PARAMS and NodeConfig differ in {sorted(_missing)}")

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


def _param_type(tp) -> int:
    if typing.get_origin(tp) is tuple:
        if typing.get_args(tp)[0] is str:
            return ParameterType.PARAMETER_STRING_ARRAY
        return ParameterType.PARAMETER_DOUBLE_ARRAY
    return _TYPES[tp]


def descriptor(name: str) -> ParameterDescriptor:
    """The ParameterDescriptor of NodeConfig field `name`."""
    info = PARAMS[name]
    tp = typing.get_type_hints(NodeConfig)[name]
    d = ParameterDescriptor(
        name=name, type=_param_type(tp), description=info.description, read_only=info.read_only
    )
    if info.choices:
        d.additional_constraints = f"one of: {', '.join(info.choices)}"
    if info.range is not None:
        lo, hi = info.range
        if tp is int:
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return d


def declare_parameters(node, defaults: NodeConfig | None = None) -> NodeConfig:
    """Declare every NodeConfig field on `node` (overrides from --params-file / -p win) and
    return the resulting NodeConfig. Raises ValueError naming an invalid parameter."""
    defaults = defaults or NodeConfig()
    hints = typing.get_type_hints(NodeConfig)
    for f in dataclasses.fields(NodeConfig):
        value = getattr(defaults, f.name)
        if typing.get_origin(hints[f.name]) is tuple:
            # An empty list has no ROS type of its own: declare the type, the value may stay unset.
            strings = typing.get_args(hints[f.name])[0] is str
            if value:
                value = [str(v) for v in value] if strings else [float(v) for v in value]
            else:
                value = Parameter.Type.STRING_ARRAY if strings else Parameter.Type.DOUBLE_ARRAY
        node.declare_parameter(f.name, value, descriptor(f.name))
    cfg = read_parameters(node)
    errors = validate(cfg)
    if errors:
        raise ValueError("invalid parameters: " + "; ".join(errors))
    return cfg


def _field_value(value):
    """rclpy parameter value -> NodeConfig field value (arrays become tuples; unset -> ())."""
    if value is None:
        return ()
    if isinstance(value, (str, bool, int, float)):
        return value
    return tuple(x if isinstance(x, str) else float(x) for x in value)


def _get(node, name: str):
    try:
        return node.get_parameter(name).value
    except ParameterUninitializedException:  # a typed parameter declared without a value
        return None


def read_parameters(node) -> NodeConfig:
    """NodeConfig from the node's current parameter values."""
    return NodeConfig(**{f.name: _field_value(_get(node, f.name)) for f in dataclasses.fields(NodeConfig)})


def with_changes(cfg: NodeConfig, params: list) -> NodeConfig:
    """A copy of `cfg` with rclpy Parameters applied (for the on-set-parameters callback)."""
    return dataclasses.replace(cfg, **{p.name: _field_value(p.value) for p in params if p.name in PARAMS})


def validate(cfg: NodeConfig) -> list[str]:
    """Constraints a descriptor cannot express; each error names the parameter."""
    errors = []
    device_error = check_device_name(cfg.device)
    if device_error:
        errors.append(device_error)
    for name in ("left_transport", "right_transport"):
        if getattr(cfg, name) not in PARAMS[name].choices:
            errors.append(f"{name} must be one of {PARAMS[name].choices}, got '{getattr(cfg, name)}'")
    if cfg.backend not in PARAMS["backend"].choices:
        errors.append(f"backend must be one of {PARAMS['backend'].choices}, got '{cfg.backend}'")
    if cfg.camera_from_grid:
        m = cfg.camera_from_grid
        if len(m) != 16:
            errors.append(f"camera_from_grid must hold 16 numbers (row-major 4x4), got {len(m)}")
        elif (why := rigid_transform_error(np.reshape(m, (4, 4)))) is not None:
            errors.append(f"camera_from_grid is not a rigid transform: {why}")
    if cfg.stereo_num_disparities % 16:
        errors.append(f"stereo_num_disparities must be a multiple of 16, got {cfg.stereo_num_disparities}")
    if cfg.stereo_block_size % 2 == 0:
        errors.append(f"stereo_block_size must be odd, got {cfg.stereo_block_size}")
    try:
        CostmapSpec.from_node_config(cfg, load_class_table())
    except ValueError as e:
        errors.append(str(e))
    return errors
