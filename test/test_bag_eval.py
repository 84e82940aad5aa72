"""bag-eval's stamp matching without ROS: ground truth and outputs fed in the orders a replay
produces (answer after its ground truth, answer before it, dropped frames, unlabelled
frames, a wrong grid) give the right counts and the metric of exactly the matched pairs."""
from __future__ import annotations

import numpy as np
import pytest

from cigocc_ros.bag.messages import decode_occupancy
from cigocc_ros.bag.score import OccupancyScorer, latency_summary
from cigocc_ros.bag.types import OCCUPANCY_TYPE, typestore
from cigocc_ros.evaluation.ssc_metric import SSCMetric

SIZE = (8, 8, 4)


def _occupancy(stamp: int, labels: np.ndarray, size=SIZE, frame_id: str = "velodyne") -> bytes:
    T = typestore().types
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                                              nanosec=stamp % 10**9),
                                      frame_id=frame_id)
    pose = T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                                       orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
    msg = T[OCCUPANCY_TYPE](header=header, origin=pose, voxel_size=0.2, size_x=size[0], size_y=size[1],
                            size_z=size[2], labels=labels.astype(np.uint8), confidence=np.zeros(0, np.uint8),
                            class_names=[], class_colors=[], model_id="test")
    return bytes(typestore().serialize_cdr(msg, OCCUPANCY_TYPE))


def test_matching_and_scoring():
    rng = np.random.default_rng(0)
    n = int(np.prod(SIZE))
    s = [10**9 + i * 10**8 for i in range(6)]
    gts = {i: rng.choice([0, 1, 9, 255], n) for i in (0, 2, 3, 5)}  # labelled frames
    preds = {i: rng.choice([0, 1, 9, 255], n) for i in range(6)}

    sc = OccupancyScorer()
    for i in range(6):
        sc.add_trigger(s[i], 100.0 + i)
    sc.add_ground_truth(_occupancy(s[0], gts[0]))
    sc.add_output(_occupancy(s[0], preds[0]), 100.25)  # answered after its ground truth
    sc.add_output(_occupancy(s[1], preds[1]), 101.25)  # unlabelled frame
    sc.add_output(_occupancy(s[2], preds[2]), 102.25)  # answered before its ground truth arrives
    sc.add_ground_truth(_occupancy(s[2], gts[2]))
    sc.add_ground_truth(_occupancy(s[3], gts[3]))  # frame 3 dropped by the node
    sc.add_ground_truth(_occupancy(s[5], gts[5]))
    sc.add_output(_occupancy(s[4], preds[4]), 104.25)  # passes frame 3: it is missing now
    sc.add_output(_occupancy(s[5], preds[5], size=(4, 8, 8)), 105.5)  # wrong grid
    sc.finish()

    assert (sc.expected, sc.scored, sc.outputs) == (4, 2, 5)
    assert sc.missing == [s[3]]
    assert len(sc.mismatches) == 1 and "(4, 8, 8)" in sc.mismatches[0]
    assert latency_summary(sc.latencies)["median"] == pytest.approx(250.0)
    assert latency_summary(sc.latencies)["max"] == pytest.approx(500.0)

    want = SSCMetric()
    for i in (0, 2):  # 255 (no prediction) is scored as empty
        want.add(np.where(preds[i] == 255, 0, preds[i]), gts[i])
    np.testing.assert_array_equal(sc.metric.conf, want.conf)


def test_decode_rejects_inconsistent_grid():
    raw = _occupancy(5, np.zeros(10), size=SIZE)
    with pytest.raises(ValueError, match="10 labels"):
        decode_occupancy(raw)
    grid = decode_occupancy(_occupancy(3 * 10**9 + 7, np.ones(int(np.prod(SIZE)))))
    assert grid.stamp == 3 * 10**9 + 7 and grid.size == SIZE and grid.frame_id == "velodyne"
