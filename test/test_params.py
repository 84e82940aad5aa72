"""NodeConfig <-> ROS parameters: every field declared with a descriptor, overrides and checks."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter

from cigocc_ros.config import NodeConfig
from cigocc_ros.ros.params import PARAMS, declare_parameters, descriptor, validate, with_changes

KITTI_TR = [0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, -0.08, 1.0, 0.0, 0.0, -0.27, 0.0, 0.0, 0.0, 1.0]


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    yield ctx
    rclpy.shutdown(context=ctx)


def make_node(context, overrides=()):
    return Node("params_test", context=context, parameter_overrides=list(overrides))


def test_every_field_declared_with_a_descriptor(context):
    node = make_node(context)
    cfg = declare_parameters(node)
    assert cfg == NodeConfig()
    for f in dataclasses.fields(NodeConfig):
        d = node.describe_parameter(f.name)
        assert d.description == PARAMS[f.name].description and d.description
        assert d.read_only == PARAMS[f.name].read_only
    assert node.describe_parameter("marker_decimation").integer_range[0].to_value == 16
    assert node.describe_parameter("sync_slop").floating_point_range[0].to_value == 1.0
    node.destroy_node()


def test_overrides_reach_the_config(context):
    node = make_node(context, [
        Parameter("stereo", value=True),
        Parameter("camera_from_grid", value=KITTI_TR),
        Parameter("marker_decimation", value=2),
        Parameter("weights", value="/tmp/x.safetensors"),
    ])
    cfg = declare_parameters(node)
    assert cfg.stereo and cfg.marker_decimation == 2 and cfg.weights == "/tmp/x.safetensors"
    assert cfg.camera_from_grid == tuple(KITTI_TR)
    node.destroy_node()


def test_invalid_values_are_refused_with_the_name(context):
    node = make_node(context, [Parameter("device", value="tpu")])
    with pytest.raises(ValueError, match="device"):
        declare_parameters(node)
    node.destroy_node()
    assert any("camera_from_grid" in e for e in validate(NodeConfig(camera_from_grid=(1.0, 2.0))))
    assert any("stereo_block_size" in e for e in validate(NodeConfig(stereo_block_size=4)))
    assert any("backend" in e for e in validate(NodeConfig(backend="tensorrt")))


def test_onnxruntime_backend_needs_an_exported_file():
    from cigocc_ros.inference import default_weights
    from cigocc_ros.ros.node import WeightsError, load_predictor

    with pytest.raises(WeightsError, match="cigocc export"):
        load_predictor(default_weights(), "cpu", "onnxruntime")


@pytest.mark.parametrize("matrix, why", [
    ([0.0] * 12 + [0.0, 0.0, 0.0, 1.0], "not orthonormal"),  # the all-zero rotation
    ([2.0, 0, 0, 0, 0, 2.0, 0, 0, 0, 0, 2.0, 0, 0, 0, 0, 1.0], "not orthonormal"),  # a scale
    ([0.0, 1.0, 0, 0, 1.0, 0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0], "determinant -1"),  # swapped axes
    (KITTI_TR[:12] + [0.0, 0.0, 1.0, 1.0], "last row"),
    (KITTI_TR[:3] + [float("nan")] + KITTI_TR[4:], "NaN"),
])
def test_camera_from_grid_must_be_a_rigid_transform(matrix, why):
    errors = validate(NodeConfig(camera_from_grid=tuple(float(v) for v in matrix)))
    assert len(errors) == 1 and "camera_from_grid is not a rigid transform" in errors[0] and why in errors[0], errors


def test_real_calibrations_pass_the_rigid_check():
    from cigocc_ros.geometry import rigid_transform_error

    assert validate(NodeConfig(camera_from_grid=tuple(KITTI_TR))) == []
    # KITTI sequence 00's Tr as printed in calib.txt (6 significant digits)
    tr = [4.276802385584e-04, -9.999672484946e-01, -8.084491683471e-03, -1.198459927713e-02,
          -7.210626507497e-03, 8.081198471645e-03, -9.999413164504e-01, -5.403984729748e-02,
          9.999738645903e-01, 4.859485810390e-04, -7.206933692422e-03, -2.921968648686e-01]
    assert rigid_transform_error(np.array(tr + [0, 0, 0, 1]).reshape(4, 4)) is None


def test_read_only_and_range_enforced_at_run_time(context):
    node = make_node(context)
    declare_parameters(node)
    res = node.set_parameters([Parameter("device", value="cpu")])[0]
    assert not res.successful  # read-only: shapes the node at start-up
    res = node.set_parameters([Parameter("marker_decimation", value=99)])[0]
    assert not res.successful  # outside 1..16
    res = node.set_parameters([Parameter("marker_max_rate", value=5.0)])[0]
    assert res.successful
    node.destroy_node()


def test_with_changes_converts_arrays():
    cfg = with_changes(NodeConfig(), [Parameter("camera_from_grid", value=KITTI_TR), Parameter("use_tf", value=False)])
    assert cfg.camera_from_grid == tuple(KITTI_TR) and cfg.use_tf is False


def test_descriptor_types():
    assert descriptor("camera_from_grid").type == 8  # PARAMETER_DOUBLE_ARRAY
    assert descriptor("weights").type == 4 and descriptor("stereo").type == 1


def test_costmap_classes_are_string_arrays_checked_by_name(context):
    assert descriptor("costmap_obstacle_classes").type == 9  # PARAMETER_STRING_ARRAY
    node = make_node(context, [Parameter("costmap_drivable_classes", value=["road", "parking", "terrain"]),
                               Parameter("left_transport", value="compressed")])
    cfg = declare_parameters(node)
    assert cfg.costmap_drivable_classes == ("road", "parking", "terrain") and cfg.left_transport == "compressed"
    # What the node's on-set-parameters callback checks (CigoccNode._on_set_parameters):
    errors = validate(with_changes(cfg, [Parameter("costmap_obstacle_classes", value=["car", "lorry"])]))
    assert any("costmap_obstacle_classes" in e and "lorry" in e for e in errors)
    errors = validate(with_changes(cfg, [Parameter("costmap_band_top", value=0.1)]))
    assert any("costmap_band_bottom" in e for e in errors)
    assert validate(with_changes(cfg, [Parameter("costmap_obstacle_classes", value=["car"])])) == []
    node.destroy_node()
    bad = make_node(context, [Parameter("right_transport", value="theora")])
    with pytest.raises(ValueError, match="right_transport"):
        declare_parameters(bad)
    bad.destroy_node()
