"""`cigocc_node`: camera topics in, semantic occupancy out (docs/node.md).

Subscriptions (relative names, remap them): `left/image`, `left/camera_info` and in stereo mode
`right/image`, `right/camera_info` (reliable, keep last 2; a best-effort camera needs a
qos_overrides parameter, docs/node.md), paired by approximate time; with
`left_transport` / `right_transport` = compressed, `<resolved left/image>/compressed`
(sensor_msgs/CompressedImage) replaces the raw image topic, as image_transport names it.
Publications: `~/occupancy` (cigocc_msgs/SemanticOccupancy, grid frame), `~/cloud`
(sensor_msgs/PointCloud2, grid frame), `~/markers` (visualization_msgs/MarkerArray, camera frame,
rate-capped), `~/costmap` (nav_msgs/OccupancyGrid, grid frame), `~/stereo_depth` (32FC1,
optional), `/diagnostics`.

Threads: the executor thread only checks stamps and enqueues; one worker thread converts the
images, runs the model and publishes (rclpy publishers are thread-safe), so a slow forward pass
never blocks subscriptions or /clock.

Time: stamps further ahead of the node's clock than `max_stamp_ahead` are refused; the ROS clock
(/clock restarting under use_sim_time) stepping back by more than `time_jump_threshold`, or the
stamps doing so for `time_jump_frames` consecutive frames, is logged once and resets the pairing
and the stamp guard; fewer such frames are stale stamps, dropped (ros/timeline.py, docs/node.md).

The process around the node (signals from the first line, start-up refusals, spinning, exit
status) is `cigocc_ros/ros/main.py`, the `cigocc_node` entry point.
"""
from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
from cigocc_msgs.msg import SemanticOccupancy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from ..backend import file_sha256
from ..classes import IGNORE_LABEL, load_class_table
from ..config import COMPRESSED_SUFFIX, NodeConfig
from ..costmap import Costmapper, CostmapSpec
from ..geometry import quaternion_matrix, rigid_transform_error
from ..stereo import StereoDepth, StereoParams, StereoResult
from . import frame_input as fi
from .diagnostics import NodeStats, build_status
from .outputs import OutputBuilder, image_message
from .params import declare_parameters, validate, with_changes
from .sync import STALE, ApproximateTimeSync, stamp_ns, subscribe_synchronized
from .timeline import Timeline, Verdict
from .worker import FrameQueue, Worker

try:  # tf2_ros is part of a ROS distribution, not of PyPI
    import tf2_ros as _tf2_ros
except ImportError:
    _tf2_ros = None

NODE_NAME = "cigocc_node"
STARTUP_HOLD_ENV = "CIGOCC_STARTUP_HOLD"  # tests only: "loading" | "warm-up" (CigoccNode._startup_stage)
STREAMS_MONO = [(Image, "left/image"), (CameraInfo, "left/camera_info")]
STREAMS_STEREO = STREAMS_MONO + [(Image, "right/image"), (CameraInfo, "right/camera_info")]


class WeightsError(RuntimeError):
    """The weights file is missing or cannot be loaded: the node refuses to start."""


@dataclass
class PairedFrame:
    """One synchronised set of camera messages waiting for the worker."""

    msgs: tuple  # (left image, left info[, right image, right info])
    stamp_ns: int
    received: float  # time.monotonic() when paired


def resolve_weights(path: str) -> Path:
    """The checkpoint to load: `path`, or the shipped weights when empty. WeightsError names it."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsError(f"weights file not found: {p}")
        return p
    # inference imports torch (seconds): only after rclpy.init(), so a signal meanwhile is a stop.
    from ..inference import default_weights

    try:
        p = Path(default_weights())
    except Exception as e:
        raise WeightsError(f"no 'weights' parameter given and the shipped weights cannot be found: {e}") from None
    if not p.is_file():
        raise WeightsError(f"shipped weights file not found: {p}")
    return p


def load_predictor(path: Path, device: str, backend: str = "torch", stereo: bool = False):
    """Predictor of checkpoint (or, for backend onnxruntime, ONNX file) `path`; backend auto
    looks for an export of it (backend.py); any failure becomes a WeightsError naming the file."""
    from ..inference import Predictor  # torch: after rclpy.init(), see resolve_weights

    try:
        return Predictor.load(str(path), device, backend, stereo)
    except Exception as e:
        raise WeightsError(f"cannot load weights file {path}: {type(e).__name__}: {e}") from None


def file_digest(path: Path) -> str:
    return file_sha256(path)[:12]


def transform_to_matrix(tf) -> np.ndarray:
    """geometry_msgs/Transform -> (4, 4) float64."""
    t, q = tf.translation, tf.rotation
    T = np.eye(4)
    T[:3, :3] = quaternion_matrix(q.x, q.y, q.z, q.w)
    T[:3, 3] = (t.x, t.y, t.z)
    return T


class CigoccNode(Node):
    """The ROS 2 adapter around `Predictor` (see the module docstring for topics and threads)."""

    def _startup_stage(self, stage: str, message: str) -> None:
        """Log the start of a start-up stage; with $CIGOCC_STARTUP_HOLD naming it, stay there
        (logging "start-up held at <stage>") until a signal ends the process: a test's event to
        send its signal on, where waiting for the log line of a stage that ends on its own
        races it (a loaded machine loads the weights before the signal arrives, or not)."""
        self.get_logger().info(message)
        if os.environ.get(STARTUP_HOLD_ENV) == stage:
            self.get_logger().info(f"start-up held at {stage} (${STARTUP_HOLD_ENV})")
            while True:  # SignalGate (main.py) raises StartupInterrupted out of the sleep
                time.sleep(0.05)

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.worker = None  # destroy_node() must work on a node whose start-up was refused
        self.cfg: NodeConfig = declare_parameters(self)
        weights = resolve_weights(self.cfg.weights)
        self._startup_stage("loading", f"loading {weights} (device {self.cfg.device}, backend {self.cfg.backend})")
        self.predictor = load_predictor(weights, self.cfg.device, self.cfg.backend, self.cfg.stereo)
        if self.cfg.backend == "auto":
            self.get_logger().info(f"backend auto: {self.predictor.backend} ({self.predictor.backend_reason})")
        if self.cfg.stereo and not self.predictor.takes_depth:
            raise WeightsError(f"stereo:=true, but {weights} was exported without a depth input "
                               "(cigocc export --stereo)")
        if self.cfg.publish_segmentation and not self.predictor.has_segmentation:
            self.get_logger().warning(f"publish_segmentation: {weights} has no segmentation output; "
                                      "~/segmentation stays silent")
        exp = self.predictor.cfg
        self.device = str(getattr(self.predictor, "device", self.cfg.device))
        self.model_id = f"{exp.name}@{file_digest(weights)}"
        self.grid_frame = self.cfg.grid_frame or exp.grid.frame_id
        if hasattr(self.predictor, "warmup"):  # kernel selection and allocations before frame 1
            self._startup_stage("warm-up", "warming up")
            self.predictor.warmup()
        self.classes = load_class_table()
        self.builder = OutputBuilder(exp.grid, self.classes, self.grid_frame, self.model_id)
        self.model_hw = tuple(int(v) for v in exp.model.image_size)
        self.costmapper = Costmapper(exp.grid)  # caches the camera view per geometry
        self._costmap_spec: tuple[NodeConfig, CostmapSpec] | None = None
        self.get_logger().info(
            f"loaded {weights} ({self.model_id}) on {self.device} ({self.predictor.backend}); grid {tuple(exp.grid.size)} in "
            f"'{self.grid_frame}', image {tuple(exp.model.image_size)}, {'stereo' if self.cfg.stereo else 'mono'}"
        )
        self.stats = NodeStats()
        self._log_times: dict[str, float] = {}
        # The paired frames' own guard (message_filters has none): order, duplicates, time jumps.
        self._timeline = Timeline(int(self.cfg.time_jump_threshold * 1e9), self.cfg.time_jump_frames)
        self._fit_warned: set[tuple] = set()  # (topic, width, height) already warned about
        self._last_markers = 0.0
        self._stereo = None  # StereoDepth, built for the rig's fx and baseline on first use
        self._lock = threading.Lock()

        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_occupancy = self.create_publisher(SemanticOccupancy, "~/occupancy", reliable)
        self.pub_cloud = self.create_publisher(PointCloud2, "~/cloud", reliable)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", reliable)
        self.pub_costmap = self.create_publisher(OccupancyGrid, "~/costmap", reliable)
        self.pub_depth = self.create_publisher(Image, "~/stereo_depth", reliable) if self.cfg.stereo else None
        self.pub_seg = self.create_publisher(Image, "~/segmentation", reliable)
        self.pub_seg_color = self.create_publisher(Image, "~/segmentation/color", reliable)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        self.tf_buffer = None
        if self.cfg.use_tf and _tf2_ros is not None:
            self.tf_buffer = _tf2_ros.Buffer()
            self._tf_listener = _tf2_ros.TransformListener(self.tf_buffer, self)
        elif self.cfg.use_tf:
            self.get_logger().info("tf2_ros is not installed: camera <- grid comes from 'camera_from_grid' only")

        self.queue = FrameQueue(self.cfg.queue_size)
        self.worker = Worker(self.queue, self._process, self._on_worker_error)
        self.worker.start()

        # Reliable keep-last: Fast DDS drops whole 0.5-1.4 MB images between processes over a
        # best-effort link here (docs/node.md); keep-last still never queues old frames. A
        # best-effort camera needs qos_overrides./<topic>.subscription.reliability:=best_effort.
        sensor_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        streams = self._streams()
        self._topics = [self.resolve_topic_name(t) for _, t in streams]
        self.sync_kind, self._subs = subscribe_synchronized(
            self, streams, sensor_qos, self.cfg.sync_slop, self._on_frame, self.cfg.sync_queue_size,
            on_message=lambda i, m: self.stats.message(self._topics[i]), on_drop=self._on_unpaired,
            admit=self._admit, jump_back=self.cfg.time_jump_threshold, on_jump=self._on_stamp_jump,
            jump_confirm=self.cfg.time_jump_frames,
        )
        self._sync = self._subs[-1] if isinstance(self._subs[-1], ApproximateTimeSync) else None
        # /clock restarting (a looping bag under use_sim_time); rcl reports no system-clock steps,
        # those show in the stamps (the synchroniser above).
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-int(self.cfg.time_jump_threshold * 1e9)),
                          on_clock_change=False),
            post_callback=self._on_clock_jump,
        )
        self.add_on_set_parameters_callback(self._on_set_parameters)
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # ticks even when /clock is paused
        self.create_timer(self.cfg.diagnostics_period, self._publish_diagnostics, clock=steady)
        self.get_logger().info(f"listening on {', '.join(self._topics)} (pairing: {self.sync_kind})")

    def _streams(self) -> list[tuple[type, str]]:
        """(type, topic) of each input; a compressed camera subscribes to its image topic, resolved
        (remapped) first, plus "/compressed", so remapping `left/image` moves both transports."""
        streams = list(STREAMS_STEREO if self.cfg.stereo else STREAMS_MONO)
        transport = {"left/image": self.cfg.left_transport, "right/image": self.cfg.right_transport}
        for i, (_, topic) in enumerate(streams):
            if transport.get(topic) == "compressed":
                streams[i] = (CompressedImage, self.resolve_topic_name(topic) + COMPRESSED_SUFFIX)
        return streams

    # -------------------------------------------------------------------------- logging
    def _warn(self, kind: str, text: str) -> None:
        """Warn at most once per `log_throttle` seconds per kind of problem."""
        now = time.monotonic()
        with self._lock:
            if now - self._log_times.get(kind, -1e9) < self.cfg.log_throttle:
                return
            self._log_times[kind] = now
        self.get_logger().warning(f"{text} (frame skipped; repeats of '{kind}' muted for {self.cfg.log_throttle:g} s)")

    # -------------------------------------------------------------------------- callbacks
    def _on_unpaired(self, index: int, msg, why: str) -> None:
        topic = self._topics[index]
        others = [t for t in self._topics if t != topic]
        text = f"{topic}: message stamped {stamp_ns(msg) / 1e9:.6f} s not used: {why}"
        if why == "no partner within the sync slop":
            text += f" ({self.cfg.sync_slop:g} s) on {', '.join(others)}"
        elif why == STALE:
            text += self._stale_rule()
        self.stats.problem(text, skipped=False, unpaired=True)
        self._warn(f"unpaired:{why}", text)

    def _stamp_ahead(self, t: int) -> float | None:
        """Seconds that stamp `t` (ns) lies ahead of the node's clock beyond `max_stamp_ahead`, or
        None. Without a clock yet (use_sim_time before the first /clock) nothing is refused."""
        now = self.get_clock().now().nanoseconds
        if now == 0:
            return None
        ahead = (t - now) / 1e9
        return ahead if ahead > self.cfg.max_stamp_ahead else None

    def _admit(self, index: int, msg) -> bool:
        """Executor thread, before pairing: keep far-future stamps out of the synchroniser."""
        t = stamp_ns(msg)
        ahead = self._stamp_ahead(t)
        if ahead is None:
            return True
        text = (f"{self._topics[index]}: message stamped {t / 1e9:.6f} s refused: {ahead:.3f} s ahead of the "
                f"node's clock (max_stamp_ahead {self.cfg.max_stamp_ahead:g} s)")
        self.stats.problem(text, skipped=False, unpaired=True)
        self._warn("future_stamp", text)
        return False

    def _stale_rule(self) -> str:
        return (f": more than time_jump_threshold ({self.cfg.time_jump_threshold:g} s) back, dropped unless "
                f"{self.cfg.time_jump_frames} consecutive frames continue from it (a new timeline) or /clock jumps")

    def _reset_time(self, text: str, t: int | None = None) -> None:
        """The clock stepped back: restart the stamp guard (at stamp `t`; the synchroniser resets
        itself or is reset by the caller), log once, count it."""
        with self._lock:
            self._timeline.restart(t)
        self.stats.time_jump(text)
        self.get_logger().warning(f"{text}: pairing and stamp guard reset")

    def _on_stamp_jump(self, index: int, before: int, after: int) -> None:
        self._reset_time(f"{self._topics[index]}: stamps jumped back {(before - after) / 1e9:.3f} s "
                         f"(from {before / 1e9:.6f} to {after / 1e9:.6f})")

    def _on_clock_jump(self, jump) -> None:
        """rclpy jump callback (a TimeJump), when /clock (use_sim_time) steps back."""
        delta = jump.delta.nanoseconds
        if self._sync is not None:
            self._sync.reset()
        self._reset_time(f"the ROS clock (/clock) jumped back {-delta / 1e9:.3f} s")

    def _on_frame(self, *msgs) -> None:
        """Synchroniser callback (executor thread): stamp checks, then enqueue. Never blocks."""
        t = stamp_ns(msgs[0])
        if self._sync is None and not self._admit(0, msgs[0]):  # message_filters pairs unchecked
            return
        with self._lock:  # our synchroniser already applied the same rule per stream
            last = self._timeline.newest
            verdict = self._timeline.check(t)
        if verdict is Verdict.JUMP:  # message_filters: no jump check of its own
            self._reset_time(f"{self._topics[0]}: stamps jumped back {(last - t) / 1e9:.3f} s", t)
        elif verdict is Verdict.STALE:
            text = (f"{self._topics[0]}: frame stamped {t / 1e9:.6f} s is {(last - t) / 1e9:.3f} s older than the "
                    f"last frame's {last / 1e9:.6f} s" + self._stale_rule())
            self.stats.problem(text)
            self._warn("stale_stamp", text)
            return
        elif last is not None and t <= last:
            kind = "duplicate_stamp" if t == last else "out_of_order_stamp"
            text = f"{self._topics[0]}: stamp {t / 1e9:.6f} s is {'the same as' if t == last else 'older than'} the last frame's {last / 1e9:.6f} s"
            self.stats.problem(text)
            self._warn(kind, text)
            return
        self.stats.frame_in()
        self.queue.put(PairedFrame(msgs, t, time.monotonic()))

    def _on_worker_error(self, frame: PairedFrame, e: BaseException) -> None:
        if isinstance(e, fi.FrameError):
            self.stats.problem(str(e))
            self._warn(e.kind, str(e))
        else:
            text = f"frame stamped {frame.stamp_ns / 1e9:.6f} s failed: {type(e).__name__}: {e}"
            self.stats.problem(text)
            self._warn(f"error:{type(e).__name__}", text + "\n" + traceback.format_exc(limit=4))

    def _on_set_parameters(self, params) -> SetParametersResult:
        cfg = with_changes(self.cfg, params)
        errors = validate(cfg)
        if errors:
            return SetParametersResult(successful=False, reason="; ".join(errors))
        self.cfg = cfg
        return SetParametersResult(successful=True)

    # -------------------------------------------------------------------------- worker
    def _camera_from_grid(self, camera_frame: str) -> np.ndarray:
        """(4, 4) camera <- grid: TF's latest transform when available, else the parameter.
        Either must be rigid (geometry.rigid_transform_error), else the frame is skipped."""
        if self.tf_buffer is not None:
            try:
                tf = self.tf_buffer.lookup_transform(camera_frame, self.grid_frame, rclpy.time.Time())
                T = transform_to_matrix(tf.transform)
            except Exception as e:  # LookupException, ExtrapolationException...: fall back
                if not self.cfg.camera_from_grid:
                    raise fi.FrameError(
                        "no_transform", f"no TF {camera_frame} <- {self.grid_frame} ({e}) and no 'camera_from_grid' parameter"
                    ) from None
            else:
                why = rigid_transform_error(T)
                if why is not None:
                    raise fi.FrameError("bad_transform", f"TF {camera_frame} <- {self.grid_frame} is not a rigid transform: {why}")
                return T
        T = fi.matrix_from_parameter(self.cfg.camera_from_grid)
        if T is None:
            raise fi.FrameError(
                "no_transform",
                f"no camera <- grid transform: set the 'camera_from_grid' parameter (row-major 4x4, "
                f"'{camera_frame}' <- '{self.grid_frame}')" + ("" if _tf2_ros else " (tf2_ros is not installed)"),
            )
        return T

    def _process(self, frame: PairedFrame) -> None:
        """Worker thread: checks, conversion, stereo depth, forward pass, outputs."""
        cfg = self.cfg
        img, info = frame.msgs[0], frame.msgs[1]
        K = fi.intrinsics(info, self._topics[1])
        rgb = fi.to_rgb(img, info, self._topics[0], self._topics[1])
        self._check_fit(rgb.shape[:2], K)
        camera_frame = img.header.frame_id or info.header.frame_id
        T = self._camera_from_grid(camera_frame)
        depth = conf = None
        if cfg.stereo:
            rimg, rinfo = frame.msgs[2], frame.msgs[3]
            fi.intrinsics(rinfo, self._topics[3])
            right = fi.to_rgb(rimg, rinfo, self._topics[2], self._topics[3])
            if right.shape != rgb.shape:
                raise fi.FrameError("stereo_size", f"{self._topics[2]}: right image {right.shape[:2]} != left {rgb.shape[:2]}")
            stereo = self._stereo_match(rgb, right, K, fi.baseline(info, rinfo, self._topics[3]))
            depth, conf = stereo.depth, stereo.confidence
            if self.pub_depth is not None and self.pub_depth.get_subscription_count() > 0:
                self.pub_depth.publish(image_message(depth, "32FC1", img.header))

        seg_subs = (self.pub_seg.get_subscription_count(), self.pub_seg_color.get_subscription_count())
        want_seg = cfg.publish_segmentation and self.predictor.has_segmentation and any(seg_subs)
        t0 = time.perf_counter()
        pred = self.predictor.predict(rgb, K, T, depth=depth, depth_conf=conf, segmentation=want_seg)
        forward = time.perf_counter() - t0
        if want_seg:  # the segmentation branch's labels of this camera image, its stamp and frame
            if seg_subs[0]:
                self.pub_seg.publish(image_message(pred.segmentation, "mono8", img.header))
            if seg_subs[1]:
                self.pub_seg_color.publish(image_message(self.classes.colors_rgb[pred.segmentation], "rgb8",
                                                         img.header))
        labels = np.ascontiguousarray(pred.labels, dtype=np.uint8)
        confidence = np.ascontiguousarray(pred.confidence, dtype=np.uint8)
        want_costmap = cfg.publish_costmap and self.pub_costmap.get_subscription_count() > 0
        view = None
        if want_costmap or cfg.unknown_outside_frustum:  # cached: rebuilt only when K or T change
            view = self.costmapper.view(K, T, rgb.shape[:2], self.model_hw)
        if cfg.unknown_outside_frustum:
            outside = ~view.frustum
            labels[outside] = IGNORE_LABEL
            confidence[outside] = 0
        self._publish(labels, confidence if cfg.publish_confidence else None, T, frame.stamp_ns, camera_frame)
        if want_costmap:
            costs = self.costmapper.compute(labels, confidence, self._spec(cfg), view)
            self.pub_costmap.publish(self.builder.costmap(costs, frame.stamp_ns))
        latency = (self.get_clock().now().nanoseconds - frame.stamp_ns) / 1e9
        self.stats.frame_out(latency, forward)

    def _check_fit(self, image_hw: tuple[int, int], K: np.ndarray) -> None:
        """Refuse images that cannot feed the model (FrameError); warn once per size when the
        model crops / pads them a lot."""
        warning = fi.check_image_fits(image_hw, K, self.model_hw, self._topics[0], self._topics[1])
        key = (self._topics[0], *(int(v) for v in image_hw))
        if warning is not None and key not in self._fit_warned:
            self._fit_warned.add(key)
            self.get_logger().warning(warning)

    def _spec(self, cfg: NodeConfig) -> CostmapSpec:
        """The costmap rules of `cfg` (parameters change at run time; validated when set)."""
        if self._costmap_spec is None or self._costmap_spec[0] is not cfg:
            self._costmap_spec = (cfg, CostmapSpec.from_node_config(cfg, self.classes))
        return self._costmap_spec[1]

    def _stereo_match(self, left: np.ndarray, right: np.ndarray, K: np.ndarray, b: float) -> StereoResult:
        fx = float(K[0, 0])
        if self._stereo is None or self._stereo.fx != fx or abs(self._stereo.baseline - b) > 1e-6:
            params = StereoParams(num_disparities=self.cfg.stereo_num_disparities, block_size=self.cfg.stereo_block_size)
            self._stereo = StereoDepth(fx, b, params)
        return self._stereo.match(left, right)

    def _publish(self, labels, conf, T, stamp: int, camera_frame: str) -> None:
        """Occupancy always (the primary output); cloud and markers only while someone listens,
        markers at most `marker_max_rate` Hz. The occupied voxels are found once for both."""
        cfg = self.cfg
        if cfg.publish_occupancy:
            self.pub_occupancy.publish(self.builder.occupancy(labels, conf, stamp))
        want_cloud = cfg.publish_cloud and self.pub_cloud.get_subscription_count() > 0
        now = time.monotonic()
        want_markers = (
            cfg.publish_markers
            and self.pub_markers.get_subscription_count() > 0
            and now - self._last_markers >= 1.0 / cfg.marker_max_rate
        )
        occ = self.builder.occupied(labels) if (want_cloud or want_markers) else None
        if want_cloud:
            self.pub_cloud.publish(self.builder.cloud(labels, conf, stamp, occ))
        if want_markers:
            self._last_markers = now
            self.pub_markers.publish(
                self.builder.markers(labels, T, stamp, camera_frame, cfg.marker_max_range, cfg.marker_decimation, occ)
            )

    # -------------------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        snap = self.stats.snapshot()
        extra = {
            "model_id": self.model_id,
            "mode": "stereo" if self.cfg.stereo else "mono",
            "pairing": self.sync_kind,
            "queue": f"{len(self.queue)}/{self.cfg.queue_size}",
            "worker_alive": str(self.worker.alive),
            "inputs": ", ".join(f"{t}: {snap['messages'].get(t, 0)}" for t in self._topics),
        }
        status = build_status(
            snap, self.queue.dropped, f"{self.get_fully_qualified_name()}: semantic occupancy", self.device,
            self.cfg.input_stall_timeout, self.cfg.max_latency, extra,
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(msg)

    def destroy_node(self) -> None:
        # Also called by rclpy's context shutdown on a node whose __init__ raised half-way.
        worker = getattr(self, "worker", None)  # absent when a signal stopped __init__ very early
        if worker is not None:
            worker.stop()
        super().destroy_node()
