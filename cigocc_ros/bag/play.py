"""Replaying a rosbag2 bag (mcap or sqlite3) into a live ROS 2 graph with rclpy,
for machines without `ros2 bag play` (no ROS distribution; see docs/bags.md for the vehicle way).
`cigocc bag-play` is cli/bag_play.py.

Messages are published as the bag's raw CDR bytes (never deserialized), in receive-time order:
- rate mode: message k goes out at wall time start + (t_k - t_0) / rate;
- paced mode (--pace-topic): after each message of the trigger topic (default: the left
  image) the player waits until the node publishes on the pace topic a message whose header
  stamp is at least the trigger's, or --pace-timeout passes; the recorded spacing (scaled by
  --rate) still applies between frames, so the replay runs no faster than either.
/clock (rosgraph_msgs/Clock) carries the bag time: before every message and at --clock-hz in
between, so nodes with use_sim_time=true follow the replay.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builtin_interfaces.msg import Time
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import QosDurability, QosReliability
from rosgraph_msgs.msg import Clock

from .errors import BagError
from .messages import cdr_header_stamp, ros_message_class
from .reader import IndexedBag, SalvagedBag, open_bag
from .session import RosSession

BagReader = IndexedBag | SalvagedBag

CLOCK_TOPIC = "/clock"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")  # frames, for pacing


def _qos_from_bag(connection, best_effort: bool):
    """rclpy QoS for replaying one bag connection: the recorded durability (so a latched
    /tf_static stays latched), reliable unless asked otherwise (a reliable publisher matches
    both reliable and best-effort subscribers), keep-last with at least 10 slots."""
    profiles = getattr(connection.ext, "offered_qos_profiles", None) or []
    transient = any(p.durability == QosDurability.TRANSIENT_LOCAL for p in profiles)
    recorded_best_effort = bool(profiles) and all(p.reliability == QosReliability.BEST_EFFORT for p in profiles)
    depth = max([10] + [int(p.depth) for p in profiles])
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth,
        reliability=ReliabilityPolicy.BEST_EFFORT if (best_effort or recorded_best_effort) else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE)


@dataclass
class PlayOptions:
    rate: float = 1.0  # bag seconds per wall second
    clock: bool = True
    clock_hz: float = 100.0
    topics: tuple[str, ...] = ()  # publish only these (empty = all)
    exclude: tuple[str, ...] = ()  # never publish these
    observe: tuple[str, ...] = ()  # read for the on_message hook, not published
    pace_topic: str = ""  # paced mode when set: the node's output topic
    watch_topic: str = ""  # an output topic to subscribe to without pacing ("" = pace_topic)
    pace_type: str = "cigocc_msgs/msg/SemanticOccupancy"  # type of the paced / watched topic
    pace_trigger: str = ""  # "" = the bag's first left Image topic
    pace_timeout: float = 30.0
    wait_subscribers: float = 0.0  # seconds to wait for every published topic to have a subscriber
    best_effort: bool = False
    start: float = 0.0  # skip the first `start` bag seconds
    shm_segment_mb: int = 64  # RosSession's Fast DDS shared-memory segment


@dataclass
class PlayStats:
    published: Counter = field(default_factory=Counter)  # topic -> messages
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> why not replayed
    triggers: int = 0  # frames: messages of the trigger topic published
    pace_timeouts: int = 0
    bag_duration_s: float = 0.0
    wall_duration_s: float = 0.0
    interrupted: bool = False
    recovered: str = ""  # a damaged bag: the line saying what was recovered (reader.Recovery)


class BagPlayer:
    """Replays one bag through `session.node`. `on_message(topic, stamp_ns, raw, wall_time)`
    is called for every message read (published or observed) right after it is published;
    `on_output(raw, wall_time)` for every message on the paced / watched output topic (from
    the executor thread)."""

    def __init__(self, bag: str | Path, session: RosSession, options: PlayOptions | None = None,
                 on_message: Callable[[str, int, bytes, float], None] | None = None,
                 on_output: Callable[[bytes, float], None] | None = None):
        self.bag = Path(bag)
        if not self.bag.exists():
            raise BagError(f"{self.bag}: bag does not exist")
        self.session = session
        self.opt = options or PlayOptions()
        if self.opt.rate <= 0:
            raise ValueError(f"--rate must be > 0, got {self.opt.rate}")
        self.on_message = on_message
        self.on_output = on_output
        self.stats = PlayStats()
        self._publishers: dict[str, object] = {}
        self._observed: set[str] = set()
        self._pace = threading.Condition()
        self._pace_stamp = -1  # newest header stamp seen on the pace topic
        self._stop = threading.Event()
        self.trigger = ""  # the frame topic (see _find_trigger), known once play() starts

    # -- set-up ------------------------------------------------------------------------------
    def _select(self, reader: BagReader) -> list:
        node = self.session.node
        wanted = set(self.opt.topics)
        unknown = wanted - set(reader.topics)
        if unknown:
            raise ValueError(f"bag {self.bag} has no topic(s) {', '.join(sorted(unknown))}; "
                             f"it has {', '.join(sorted(reader.topics))}")
        chosen = []
        for conn in reader.connections:
            topic = conn.topic
            if topic in self.opt.observe:
                self._observed.add(topic)
                chosen.append(conn)
                continue
            if (wanted and topic not in wanted) or topic in self.opt.exclude:
                continue
            if topic not in self._publishers:
                try:
                    cls = ros_message_class(conn.msgtype)
                except ImportError as e:
                    # e.g. tf2_msgs has no PyPI wheel: replay the rest rather than nothing.
                    self.stats.skipped_topics[topic] = f"{conn.msgtype} not importable ({e})"
                    continue
                self._publishers[topic] = node.create_publisher(cls, topic, _qos_from_bag(conn, self.opt.best_effort))
            chosen.append(conn)
        if not chosen:
            raise ValueError(f"nothing to replay from {self.bag} (skipped: {self.stats.skipped_topics})")
        return chosen

    def _find_trigger(self, reader: BagReader) -> str:
        """The topic whose messages are frames: --pace-trigger, else the first replayed left
        Image (or CompressedImage) topic, else the first such topic; "" when there is none and
        no pacing needs one."""
        if self.opt.pace_trigger:
            if self.opt.pace_trigger not in self._publishers:
                raise ValueError(f"pace trigger {self.opt.pace_trigger} is not a replayed topic of {self.bag}")
            return self.opt.pace_trigger
        images = [t for t, info in reader.topics.items()
                  if info.msgtype in IMAGE_TYPES and t in self._publishers]
        left = [t for t in images if "left" in t]
        if self.opt.pace_topic and not images:
            raise ValueError(f"{self.bag} has no replayed sensor_msgs/Image or CompressedImage topic to pace on; give --pace-trigger")
        return (left or images or [""])[0]

    def _on_pace(self, raw: bytes) -> None:
        wall = time.time()
        if self.on_output is not None:
            self.on_output(raw, wall)
        stamp = cdr_header_stamp(raw)
        with self._pace:
            self._pace_stamp = max(self._pace_stamp, stamp)
            self._pace.notify_all()

    def _output_qos(self, topic: str, timeout: float):
        """QoS that matches the output's publishers, waiting up to `timeout` for one to appear:
        reliable only when every publisher is (a reliable subscription never matches a
        best-effort publisher), volatile (matches volatile and transient-local publishers)."""
        end = time.monotonic() + timeout
        infos = []
        while not infos and time.monotonic() < end and not self._stop.is_set():
            infos = self.session.node.get_publishers_info_by_topic(topic)
            if not infos:
                time.sleep(0.05)
        if not infos:
            self.session.node.get_logger().warning(f"no publisher on {topic} yet; subscribing reliable")
        reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
        return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)

    def _wait_for_subscribers(self, topics: list[str], timeout: float) -> list[str]:
        """Wait until each topic has a subscriber (DDS discovery takes a moment); returns the
        topics still without one."""
        end = time.monotonic() + timeout
        while True:
            missing = [t for t in topics if self._publishers[t].get_subscription_count() == 0]
            if not missing or time.monotonic() >= end or self._stop.is_set():
                return missing
            time.sleep(0.05)

    # -- replay ------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        with self._pace:
            self._pace.notify_all()

    def play(self) -> PlayStats:
        node = self.session.node
        log = node.get_logger()
        clock_pub = node.create_publisher(Clock, CLOCK_TOPIC, QoSProfile(depth=10)) if self.opt.clock else None
        last_clock = [-1]

        def publish_clock(stamp_ns: int) -> None:
            if clock_pub is not None and stamp_ns > last_clock[0]:
                clock_pub.publish(Clock(clock=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)))
                last_clock[0] = stamp_ns

        try:
            with open_bag(self.bag) as reader:
                if reader.recovery is not None:
                    if not reader.recovery.messages:
                        raise BagError(f"{self.bag}: nothing to replay: {reader.recovery.line()}")
                    self.stats.recovered = reader.recovery.line()
                    log.warning(self.stats.recovered)
                conns = self._select(reader)
                for topic, why in self.stats.skipped_topics.items():
                    log.warning(f"not replaying {topic}: {why}")
                self.trigger = self._find_trigger(reader)
                paced = self.trigger if self.opt.pace_topic else ""
                output = self.opt.pace_topic or self.opt.watch_topic
                startup = max(self.opt.wait_subscribers, self.opt.pace_timeout if output else 0.0)
                if output:
                    sub = node.create_subscription(ros_message_class(self.opt.pace_type), output, self._on_pace,
                                                   self._output_qos(output, startup), raw=True)
                    # Matched before the first frame goes out, or its answer could be missed.
                    end = time.monotonic() + startup
                    while sub.get_publisher_count() == 0 and time.monotonic() < end and not self._stop.is_set():
                        time.sleep(0.05)
                wait_for = sorted(self._publishers) if self.opt.wait_subscribers > 0 else []
                if paced and paced not in wait_for:
                    wait_for.append(paced)
                if wait_for:
                    missing = self._wait_for_subscribers(wait_for, startup)
                    if missing:
                        log.warning(f"no subscriber yet on {', '.join(missing)}; replaying anyway")
                log.info(f"replaying {self.bag} ({sum(c.msgcount for c in conns)} messages, "
                         f"{(reader.end_time - reader.start_time) / 1e9:.2f} s) at rate {self.opt.rate:g}"
                         + (f", paced by {self.opt.pace_topic} after each {paced}" if paced else ""))
                self._loop(reader, conns, paced, publish_clock)
            # Reliable delivery of the last messages before the publishers go away (2 s in all).
            end = time.monotonic() + 2.0
            for pub in self._publishers.values():
                pub.wait_for_all_acked(Duration(seconds=max(end - time.monotonic(), 0.0)))
        except KeyboardInterrupt:
            self.stats.interrupted = True
        return self.stats

    def _loop(self, reader: BagReader, conns: list, paced: str, publish_clock) -> None:
        """Replay `conns`; after each message of topic `paced` ("" = none) wait for the output."""
        opt = self.opt
        start = reader.start_time + int(opt.start * 1e9)
        period = 1.0 / opt.clock_hz if opt.clock_hz > 0 else float("inf")
        t0 = wall0 = None  # the schedule: bag time t0 is wall time wall0
        first = last = None
        first_wall = last_wall = 0.0
        for conn, stamp, raw in reader.messages(connections=conns, start=start):
            if self._stop.is_set():
                self.stats.interrupted = True
                break
            if first is None:
                # Timed from the first message read, so the time it takes to reach it is not
                # made up for by rushing the next ones.
                first, t0, wall0 = stamp, stamp, time.monotonic()
            last = stamp
            target = wall0 + (stamp - t0) / 1e9 / opt.rate
            while (now := time.monotonic()) < target:
                publish_clock(t0 + int((now - wall0) * opt.rate * 1e9))
                time.sleep(min(target - now, period))
            publish_clock(stamp)
            last_wall = time.monotonic()
            first_wall = first_wall or last_wall
            data = bytes(raw)
            topic = conn.topic
            if topic not in self._observed:
                self._publishers[topic].publish(data)
                self.stats.published[topic] += 1
            if self.on_message is not None:
                self.on_message(topic, stamp, data, time.time())
            if topic == self.trigger:
                self.stats.triggers += 1
            if topic == paced:
                if not self._wait_pace(cdr_header_stamp(data)):
                    self.stats.pace_timeouts += 1
                    self.session.node.get_logger().warning(
                        f"no output on {opt.pace_topic} for stamp {stamp} within {opt.pace_timeout} s")
                # The recorded spacing restarts from here: never faster than the node.
                wall0 = time.monotonic() - (stamp - t0) / 1e9 / opt.rate
        if first is not None:
            self.stats.bag_duration_s = (last - first) / 1e9
            self.stats.wall_duration_s = last_wall - first_wall

    def _wait_pace(self, stamp_ns: int) -> bool:
        end = time.monotonic() + self.opt.pace_timeout
        with self._pace:
            while self._pace_stamp < stamp_ns and not self._stop.is_set():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._pace.wait(timeout=min(left, 0.1))
        return True
