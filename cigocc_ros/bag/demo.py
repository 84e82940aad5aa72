"""The main job, end to end, on the embedded default (`cigocc demo`: cli/demo.py).

1. generate (or reuse) the default synthetic SemanticKITTI dataset (data/synthetic, seeds fixed);
2. convert its held-out sequence 08 to a rosbag2 (mcap) with `kitti-to-bag`;
3. start `cigocc_node` (shipped weights, use_sim_time) as its own OS process;
4. replay the bag into it, paced by its output, and score every labelled frame against the
   bag's ground truth with the official metric (`bag-eval`): IoU, mIoU, latency;
5. write PNG renderings of a few frames: image | ground truth | prediction (bird's-eye) | 3D |
   costmap (the node's costmap rules, cigocc_ros/costmap.py, applied to the published grid).

Everything talks over real DDS on a private ROS_DOMAIN_ID, as on a vehicle.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .. import viz
from ..child_process import die_with_parent
from ..classes import load_class_table
from ..config import NodeConfig
from ..costmap import Costmapper, CostmapSpec
from ..data import semantic_kitti as sk
from ..data.synthetic import DEFAULT_SEEDS, dataset_complete, default_root, write_sequence
from ..geometry import split_projection
from ..inference import default_weights
from ..model.checkpoint import read_metadata
from .kitti_to_bag import CAMERA_PAIRS, convert, read_camera_from_grid
from .play import PlayOptions
from .score import score_replay
from .session import take_sigint


def node_command(weights: Path, camera_from_grid: np.ndarray, device: str, camera: str = "color",
                 stereo: bool = False) -> list[str]:
    """The node's command line for a kitti-to-bag bag's `camera` pair ("color" | "gray"): its
    left camera, and with `stereo` both."""
    cams = CAMERA_PAIRS[camera]
    T = ",".join(repr(float(v)) for v in camera_from_grid.reshape(-1))  # all doubles for rcl
    sides = ("left", "right") if stereo else ("left",)
    remaps = [a for side in sides for a in ("-r", f"{side}/image:={cams.image_topic(side)}",
                                            "-r", f"{side}/camera_info:={cams.info_topic(side)}")]
    return [sys.executable, "-m", "cigocc_ros.ros.main", "--ros-args", *remaps,
            "-p", "use_sim_time:=true", "-p", f"weights:={weights}", "-p", f"device:={device}",
            "-p", f"camera_from_grid:=[{T}]", "-p", "publish_markers:=false",
            "-p", f"stereo:={'true' if stereo else 'false'}"]


def wait_until_listening(node: subprocess.Popen, log_path: Path, timeout: float) -> None:
    """Block until the node logs that it listens (weights loaded, warmed up); raise with the
    log's tail if it exits or takes longer than `timeout`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if "listening on" in log_path.read_text(errors="replace"):
            return
        if node.poll() is not None:
            break
        time.sleep(0.2)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
    state = f"exited with {node.returncode}" if node.poll() is not None else f"not ready after {timeout:.0f} s"
    raise RuntimeError(f"cigocc_node {state}; its log ({log_path}):\n{tail}")


def watch_node(node: subprocess.Popen) -> None:
    """Interrupt the replay (SIGINT to this process) if the node dies during it."""
    take_sigint()
    def watch() -> None:
        node.wait()
        if not getattr(watch_node, "done", False):
            print(f"error: cigocc_node exited with {node.returncode} during the replay")
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()


def demo_sequence(out: Path, sequence: str, frames: int):
    """The held-out synthetic sequence: the default dataset's copy when it is complete, else
    only that sequence (its default seed), written once under `out`/data."""
    if dataset_complete(default_root()):
        return sk.SequencePaths(default_root(), sequence)
    root = out / "data"
    paths = sk.SequencePaths(root, sequence)
    done = root / f"{sequence}.complete"
    if not (done.is_file() and done.read_text() == f"{DEFAULT_SEEDS[sequence]} {frames}"):
        write_sequence(root, sequence, DEFAULT_SEEDS[sequence], num_frames=frames)
        done.write_text(f"{DEFAULT_SEEDS[sequence]} {frames}")
    return paths


class DemoCostmap:
    """The node's ~/costmap for a published grid: the same Costmapper with the default node
    parameters, the camera's K and pose, and the model's input size from the checkpoint."""

    def __init__(self, weights: Path, P: np.ndarray, camera_from_grid: np.ndarray) -> None:
        cfg, _ = read_metadata(weights)
        self.mapper = Costmapper(cfg.grid)
        self.spec = CostmapSpec.from_node_config(NodeConfig(), load_class_table())
        self.K = split_projection(P)[0]
        self.T = np.asarray(camera_from_grid, dtype=np.float64)
        self.model_hw = tuple(cfg.model.image_size)

    def __call__(self, labels: np.ndarray, confidence: np.ndarray | None, image_hw: tuple[int, int]) -> np.ndarray:
        view = self.mapper.view(self.K, self.T, image_hw, self.model_hw)
        return self.mapper.compute(np.ascontiguousarray(labels, np.uint8), confidence, self.spec, view)


def frame_of_stamp(times: np.ndarray, start_time: float, stamp_ns: int) -> int:
    return int(np.argmin(np.abs(start_time + times - stamp_ns * 1e-9)))


def replay_through_node(bag: Path, out: Path, weights: Path, camera_from_grid: np.ndarray, device: str,
                        timeout: float, stereo: bool = False, **score_kwargs):
    """Start cigocc_node (its log in out/node.log) on a private ROS_DOMAIN_ID, replay the
    kitti-to-bag `bag`'s colour camera(s) into it paced by its output, stop it, and return the
    EvalReport (bag/score.py; `score_kwargs` go to score_replay), or None after printing why
    (the node did not start, the replay was interrupted)."""
    cams = CAMERA_PAIRS["color"]
    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))  # never cross another graph
    os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = env["ROS_AUTOMATIC_DISCOVERY_RANGE"]
    print(f"      ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, {'stereo' if stereo else 'mono'}, log {out / 'node.log'}")
    log = open(out / "node.log", "w")
    node = subprocess.Popen(die_with_parent(node_command(weights, camera_from_grid, device, stereo=stereo)), env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    sides = ("left", "right") if stereo else ("left",)
    try:
        try:
            wait_until_listening(node, out / "node.log", timeout)
        except RuntimeError as e:
            print(f"error: {e}")
            return None
        watch_node(node)
        opts = PlayOptions(pace_topic="/cigocc_node/occupancy", wait_subscribers=30.0, pace_timeout=60.0,
                           topics=tuple(t for side in sides for t in (cams.image_topic(side), cams.info_topic(side))))
        report = score_replay(bag, "/cigocc_node/occupancy", opts, **score_kwargs)
    finally:
        watch_node.done = True
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
        log.close()
    if report.interrupted:
        print(f"error: the replay was interrupted; the node's log: {out / 'node.log'}")
        return None
    return report


def run_demo(out: Path, weights: Path | None = None, sequence: str = "08", frames: int = 30, renders: int = 3,
             device: str = "auto", timeout: float = 600.0, controls=None) -> int:
    """Steps 1-5 above, printing progress; the exit status (0 when every labelled frame was
    scored). Writes the bag, node.log, report.json and frame_NNNNNN.png under `out`.
    `controls(weights, root, sequence, before_frame, device, train_root) -> {name: summary}`
    scores the controls on the same labelled frames (cli/demo.py passes
    evaluation.split.sequence_controls); train_root is the default dataset when complete."""
    t0 = time.monotonic()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Bad weights fail here, before minutes of work, as one error line of the command
    # (resources.ResourceNotFound names where it looked; CheckpointError a missing or cut file).
    weights = Path(weights) if weights else default_weights()
    read_metadata(weights)

    print("[1/5] synthetic sequence (generated once, then reused)")
    seq = demo_sequence(out, sequence, frames)
    print(f"      {seq.dir}")

    print("[2/5] sequence -> rosbag2 (mcap)")
    bag = out / f"bag_{sequence}"
    start_time = 1.0e9
    info = convert(seq.dir, bag, storage="mcap", last=frames - 1, start_time=start_time,
                   overwrite=True, progress=False)
    print(f"      {info['bag']}: {info['frames']} frames, {len(info['topics'])} topics")

    cams = CAMERA_PAIRS["color"]
    camera_from_grid = read_camera_from_grid(bag, cams.frame_id("left"))
    print(f"[3/5] starting cigocc_node ({weights.name})")
    print("[4/5] replaying the bag through the node (paced by its output) and scoring")
    report = replay_through_node(bag, out, weights, camera_from_grid, device, timeout, stereo=False,
                                 keep_outputs=renders)
    if report is None:
        return 1

    print("[5/5] renderings")
    times = sk.read_times(seq.times)
    costmap = DemoCostmap(weights, sk.read_calib(seq.calib)["P2"], camera_from_grid)
    for stamp, pred, truth, conf in report.samples:
        frame = frame_of_stamp(times, start_time, stamp)
        image = sk.read_image(seq.image(frame, 2))
        costs = costmap(pred, conf, image.shape[:2])
        png = viz.save_png(out / f"frame_{frame:06d}.png",
                           viz.panel([image, viz.bev(truth), viz.bev(pred), viz.view3d(pred), viz.costmap_image(costs)]))
        print(f"      {png}  (image | ground truth | prediction | 3D prediction | costmap: "
              f"{(costs == 100).mean():.1%} lethal, {(costs == 0).mean():.1%} free)")

    scored_controls = {}
    if controls is not None:
        print("      controls on the same labelled frames (offline)")
        train_root = default_root() if dataset_complete(default_root()) else None
        scored_controls = controls(weights, seq.root, sequence, frames, device, train_root)
    summary = {"weights": str(weights), "bag": str(bag), "frames_replayed": report.triggers,
               "frames_with_ground_truth": report.frames_expected, "frames_scored": report.frames_scored,
               "outputs_received": report.outputs_received, "latency_ms": report.latency_ms,
               "iou": 100 * report.metrics.get("iou", 0.0), "miou": 100 * report.metrics.get("miou", 0.0),
               "controls": {k: {"iou": c["iou"], "miou": c["miou"]} for k, c in scored_controls.items()},
               "wall_s": round(time.monotonic() - t0, 1)}
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    lat = report.latency_ms
    print(f"\nscored {report.frames_scored}/{report.frames_expected} labelled frames "
          f"({report.outputs_received} outputs for {report.triggers} frames replayed)")
    if lat:
        print(f"latency image -> occupancy: median {lat['median']:.0f} ms, p90 {lat['p90']:.0f} ms")
    print(f"IoU {summary['iou']:.2f}   mIoU {summary['miou']:.2f}   ({summary['wall_s']} s in all)")
    for name, c in scored_controls.items():
        print(f"  control {name:>15}: IoU {c['iou']:.2f}   mIoU {c['miou']:.2f}")
    print(f"report: {out / 'report.json'}")
    return 0 if report.frames_scored == report.frames_expected and report.frames_expected else 1


def run_kitti_demo(seq_dir: Path, out: Path, weights: Path | None = None, device: str = "auto",
                   timeout: float = 600.0, stereo: bool = True) -> int:
    """The main job on a real KITTI sequence folder (e.g. ../shared/kitti_samples/sequences/07):
    its colour frames -> rosbag2 -> cigocc_node (stereo unless `stereo` is false) -> the LiDAR
    report of the node's outputs beside the three controls on the same frames (evaluation/real_report.py:
    flat ground slab, stereo + height rule, stereo + segmentation with the weights' own
    segmentation branch). Writes the bag, node.log, report.json / report.md and a PNG per
    scored frame under `out`; the exit status is 0 when every frame with a labelled scan got an
    output."""
    from ..evaluation.real_report import real_frames, run_report, write_report
    from ..segmentation_inference import SegmentationPredictor

    t0 = time.monotonic()
    seq_dir, out = Path(seq_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = Path(weights) if weights else default_weights()
    cfg, _ = read_metadata(weights)
    frames = real_frames(seq_dir)  # the scoreable ones: image_2, image_3, velodyne, labels
    print(f"[1/3] {seq_dir} -> rosbag2 (mcap): {len(frames)} frames with a labelled scan")
    bag = out / f"bag_{seq_dir.name}"
    start_time = 1.0e9
    info = convert(seq_dir, bag, storage="mcap", camera="color", start_time=start_time, overwrite=True,
                   progress=False)
    print(f"      {info['bag']}: {info['frames']} frames, {len(info['topics'])} topics")
    camera_from_grid = read_camera_from_grid(bag, CAMERA_PAIRS["color"].frame_id("left"))
    print(f"[2/3] cigocc_node ({weights.name}), the bag replayed into it, its outputs recorded")
    report = replay_through_node(bag, out, weights, camera_from_grid, device, timeout, stereo=stereo,
                                 gt_topic=None, record=True)
    if report is None:
        return 1
    times = sk.read_times(sk.SequencePaths.at(seq_dir).times)
    row = f"node ({'stereo' if stereo else 'mono'})"
    by_frame = {}
    for fr in frames:
        stamp = int(round(start_time * 1e9)) + int(round(times[int(fr.name.split('/')[1])] * 1e9))
        if stamp in report.recorded:
            by_frame[fr.name] = report.recorded[stamp]
    missing = [fr.name for fr in frames if fr.name not in by_frame]
    print(f"[3/3] LiDAR report: {len(by_frame)} of {len(frames)} frames answered by the node"
          + (f" (no output for {', '.join(missing)}: scored as empty)" if missing else ""))
    segmenter = SegmentationPredictor.load(weights, device)
    reports = run_report(frames, None, False, cfg.grid, out, log=lambda line: print(f"      {line}"),
                         segmenter=segmenter, recorded={row: by_frame})
    table = write_report(out, reports, frames, [str(seq_dir)], str(weights))
    lat = report.latency_ms
    print(f"\n{table}\n")
    if lat:
        print(f"latency image -> occupancy: median {lat['median']:.0f} ms, p90 {lat['p90']:.0f} ms")
    print(f"report: {out / 'report.md'} ({round(time.monotonic() - t0, 1)} s in all)")
    return 0 if not missing else 1
