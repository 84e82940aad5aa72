"""Scoring a replay: play a bag (play.BagPlayer) into a running occupancy node, record the node's
cigocc_msgs/SemanticOccupancy output and score it against the bag's ground truth
(`cigocc bag-eval` is cli/bag_eval.py).

Matching: an output belongs to the ground-truth message with the same header stamp (the node
stamps each grid with its source image's stamp; kitti-to-bag gives the image and the ground
truth of a frame the same stamp). The ground-truth topic is read from the bag, not published.
Scoring: cigocc_ros.evaluation.ssc_metric.SSCMetric (the SemanticKITTI completion metric); output voxels
labelled LABEL_UNKNOWN (255, no prediction) count as empty, as an unfilled voxel of a
benchmark submission would.
Latency: wall time from publishing the trigger image to receiving the output with its stamp.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..classes import IGNORE_LABEL, load_class_table
from ..evaluation.ssc_metric import SSCMetric
from .errors import BagError
from .kitti_to_bag import OCCUPANCY_GT_TOPIC
from .messages import OccupancyGrid, cdr_header_stamp, decode_occupancy
from .play import BagPlayer, PlayOptions
from .reader import open_bag
from .session import RosSession
from .types import OCCUPANCY_TYPE

DEFAULT_OUTPUT_TOPIC = "/cigocc_node/occupancy"


@dataclass
class EvalReport:
    bag: str
    output_topic: str
    ground_truth_topic: str
    frames_expected: int = 0  # ground-truth messages replayed
    frames_scored: int = 0  # of those, answered by an output with the same stamp
    triggers: int = 0  # input frames published
    outputs_received: int = 0  # every output, labelled frame or not
    outputs_for_triggers: int = 0  # outputs whose stamp is a published input frame
    missing_stamps: list[int] = field(default_factory=list)  # ground-truth stamps with no output
    mismatches: list[str] = field(default_factory=list)  # outputs that could not be scored
    latency_ms: dict = field(default_factory=dict)  # mean / median / p90 / max over outputs_for_triggers
    metrics: dict = field(default_factory=dict)  # SSCMetric.compute(), per class by name
    pace_timeouts: int = 0
    replay_wall_s: float = 0.0
    interrupted: bool = False
    recovered: str = ""  # a damaged bag: what was recovered of it (reader.Recovery.line)
    # (stamp ns, predicted (X, Y, Z), ground truth (X, Y, Z), confidence (X, Y, Z) or None) of
    # the first `keep_outputs` scored frames, for pictures; not part of the JSON report.
    samples: list = field(default_factory=list)
    # With score_replay(record=True): every output's labels (X, Y, Z) by stamp (ns), scored or
    # not (a real drive has no voxel ground truth: the LiDAR report scores these); not in the JSON.
    recorded: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("samples", "recorded")}


class OccupancyScorer:
    """Pairs ground truth (fed by the player) with node outputs (fed by the subscription) by
    stamp and accumulates the metric. Thread-safe: the two feeds run on different threads."""

    def __init__(self, keep: int = 0, record: bool = False) -> None:
        self.metric = SSCMetric()
        self.keep = keep
        self.record = record
        self.recorded: dict[int, np.ndarray] = {}
        self.samples: list[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]] = []
        self.lock = threading.Lock()
        self.gt: dict[int, OccupancyGrid] = {}  # ground truth waiting for its output
        self.early: dict[int, OccupancyGrid] = {}  # outputs waiting for their ground truth
        self.sent: dict[int, float] = {}  # trigger stamp -> wall time published
        self.latencies: list[float] = []
        self.expected = 0
        self.scored = 0
        self.outputs = 0
        self.missing: list[int] = []
        self.mismatches: list[str] = []
        self._scored_stamps: set[int] = set()

    def add_ground_truth(self, raw: bytes) -> None:
        grid = decode_occupancy(raw)
        with self.lock:
            self.expected += 1
            # Outputs older than this ground truth were for unlabelled frames.
            for s in [s for s in self.early if s < grid.stamp]:
                del self.early[s]
            out = self.early.pop(grid.stamp, None)
            if out is not None:
                self._score(out, grid)
            else:
                self.gt[grid.stamp] = grid

    def add_trigger(self, stamp: int, wall: float) -> None:
        with self.lock:
            self.sent[stamp] = wall

    def add_output(self, raw: bytes, wall: float) -> None:
        stamp = cdr_header_stamp(raw)
        with self.lock:
            self.outputs += 1
            if stamp in self.sent:
                self.latencies.append(wall - self.sent[stamp])
        try:
            grid = decode_occupancy(raw)
        except ValueError as e:
            with self.lock:
                self.mismatches.append(str(e))
            return
        with self.lock:
            if self.record:
                self.recorded[stamp] = grid.labels.reshape(grid.size)
            # Outputs arrive in stamp order: older unanswered ground truth will not be answered.
            for s in sorted(s for s in self.gt if s < stamp):
                self.missing.append(s)
                del self.gt[s]
            truth = self.gt.pop(stamp, None)
            if truth is not None:
                self._score(grid, truth)
            elif stamp not in self._scored_stamps:
                self.early[stamp] = grid

    def _score(self, out: OccupancyGrid, truth: OccupancyGrid) -> None:
        if out.size != truth.size:
            self.mismatches.append(f"stamp {out.stamp}: output grid {out.size} != ground truth {truth.size}")
            return
        if out.frame_id != truth.frame_id:
            self.mismatches.append(f"stamp {out.stamp}: output frame '{out.frame_id}' != ground truth "
                                   f"'{truth.frame_id}'")
            return
        pred = np.where(out.labels == IGNORE_LABEL, 0, out.labels)
        self.metric.add(pred, truth.labels)
        self.scored += 1
        if len(self.samples) < self.keep:
            conf = None if out.confidence is None else out.confidence.reshape(out.size)
            self.samples.append((out.stamp, out.labels.reshape(out.size), truth.labels.reshape(truth.size), conf))
        self._scored_stamps.add(out.stamp)

    def answered_triggers(self) -> int:
        with self.lock:
            return len(self.latencies)

    def finish(self) -> None:
        with self.lock:
            self.missing.extend(sorted(self.gt))
            self.gt.clear()


def latency_summary(latencies: list[float]) -> dict:
    if not latencies:
        return {}
    ms = np.asarray(latencies) * 1e3
    return {"count": int(ms.size), "mean": float(ms.mean()), "median": float(np.median(ms)),
            "p90": float(np.percentile(ms, 90)), "max": float(ms.max())}


def score_replay(bag: str | Path, output_topic: str = DEFAULT_OUTPUT_TOPIC, options: PlayOptions | None = None,
             gt_topic: str | None = OCCUPANCY_GT_TOPIC, drain_timeout: float = 10.0,
             session_name: str = "cigocc_bag_eval", keep_outputs: int = 0, record: bool = False) -> EvalReport:
    """Replay `bag` (options as bag-play; paced on `output_topic` unless options say
    otherwise) while scoring the node's outputs; returns the report, holding the grids of
    the first `keep_outputs` scored frames in `report.samples`, and with `record` every
    output's labels in `report.recorded`. `gt_topic` None: nothing is scored (a bag of a real
    drive without voxel labels), the outputs are only recorded."""
    bag = Path(bag)
    if not bag.exists():
        raise BagError(f"{bag}: bag does not exist")
    if gt_topic is not None:
        with open_bag(bag) as reader:
            if gt_topic not in reader.topics:
                raise BagError(f"{bag}: no ground-truth topic {gt_topic} (topics: {', '.join(reader.topics)})")
            if reader.topics[gt_topic].msgtype != OCCUPANCY_TYPE:
                raise BagError(f"{bag}: {gt_topic} is {reader.topics[gt_topic].msgtype}, expected {OCCUPANCY_TYPE}")
    opt = options or PlayOptions(pace_topic=output_topic)
    if gt_topic is not None:
        opt.observe = tuple(set(opt.observe) | {gt_topic})
        opt.exclude = tuple(t for t in opt.exclude if t != gt_topic)
    report = EvalReport(str(bag), output_topic, gt_topic or "")
    scorer = OccupancyScorer(keep_outputs, record=record)

    opt.watch_topic = output_topic
    opt.pace_type = OCCUPANCY_TYPE
    if opt.pace_topic and opt.pace_topic != output_topic:
        raise ValueError(f"bag-eval paces on the output topic {output_topic}, not {opt.pace_topic}")
    with RosSession(session_name, opt.shm_segment_mb) as session:
        def on_message(topic: str, stamp: int, raw: bytes, wall: float) -> None:
            if topic == gt_topic:
                scorer.add_ground_truth(raw)
            elif topic == player.trigger:
                scorer.add_trigger(cdr_header_stamp(raw), wall)

        player = BagPlayer(bag, session, opt, on_message=on_message, on_output=scorer.add_output)
        stats = player.play()
        # The node may still be working on the last frames.
        end = time.monotonic() + (0 if stats.interrupted else drain_timeout)
        while time.monotonic() < end and scorer.answered_triggers() < stats.triggers:
            time.sleep(0.05)
        scorer.finish()

    report.frames_expected = scorer.expected
    report.frames_scored = scorer.scored
    report.triggers = stats.triggers
    report.outputs_received = scorer.outputs
    report.outputs_for_triggers = len(scorer.latencies)
    report.missing_stamps = scorer.missing
    report.mismatches = scorer.mismatches
    report.latency_ms = latency_summary(scorer.latencies)
    report.pace_timeouts = stats.pace_timeouts
    report.replay_wall_s = stats.wall_duration_s
    report.interrupted = stats.interrupted
    report.recovered = stats.recovered
    report.samples = scorer.samples
    report.recorded = scorer.recorded
    if scorer.scored:
        r = scorer.metric.compute()
        names = load_class_table().names
        report.metrics = {"iou": r["iou"], "miou": r["miou"], "precision": r["precision"], "recall": r["recall"],
                          "iou_per_class": {names[i]: float(v) for i, v in enumerate(r["iou_per_class"])}}
    return report
