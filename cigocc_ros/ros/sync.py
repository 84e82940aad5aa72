"""Approximate-time pairing of the camera streams (left image, left info[, right image, right info]).

message_filters is used when the ROS distribution provides it; PyPI has no message_filters, so
`ApproximateTimeSync` below is our own: each stream keeps a small stamp-sorted queue, and when a
message arrives the nearest-stamped message of every other stream is taken; if the whole set
spans at most `slop` seconds it is emitted, and everything at or before it is consumed. Messages
that can no longer be paired (older than an emitted set, pushed out of a full queue, or a second
message with a stamp already queued) are reported through `on_drop` so the node can say why.

Time jumps: a message stamped more than `jump_back` seconds before its stream's newest stamp
(paired or queued) is a stale stamp or the start of a new timeline (a looping bag, a camera that
resynced); `timeline.Timeline` decides with hysteresis. A stale one is dropped (`on_drop`,
STALE); once `jump_confirm` consecutive messages of a stream continue from one another far back,
the synchroniser forgets the old timeline (queued messages stamped after the new one, every
stream's "last paired" guard), reports it once through `on_jump` and goes on pairing. `reset()`
(the caller's clock stepped back) forgets at once. Smaller steps back are out-of-order messages
and are dropped as before.
"""
from __future__ import annotations

import bisect
import copy
import threading
from collections.abc import Callable, Sequence
from typing import Any

from rclpy.qos_overriding_options import QoSOverridingOptions

from .timeline import Timeline, Verdict

try:  # pragma: no cover - only on machines with a ROS distribution
    import message_filters as _message_filters
except ImportError:  # pragma: no cover
    _message_filters = None


def stamp_ns(msg: Any) -> int:
    """header.stamp of a ROS message as integer nanoseconds."""
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


DropCallback = Callable[[int, Any, str], None]
JumpCallback = Callable[[int, int, int], None]  # (stream index, newest stamp before, new stamp) ns
JUMPED = "discarded: the clock jumped back"
STALE = "stamp far older than the newest on its topic (a stale stamp)"


class ApproximateTimeSync:
    """Pairs the messages of `n` streams whose header stamps lie within `slop` seconds.

    `add(index, stamp_ns, msg)` feeds stream `index`; `callback(*msgs)` receives one message per
    stream, in stream order. Not tied to ROS: stamps are integer nanoseconds. `jump_back`
    (seconds, None = never), `jump_confirm` (messages) and `on_jump` handle a clock that steps
    back (module docstring); `reset()` forgets everything (the node calls it when its own clock
    jumps back).
    """

    def __init__(
        self,
        n: int,
        slop: float,
        callback: Callable[..., None],
        queue_size: int = 10,
        on_drop: DropCallback | None = None,
        jump_back: float | None = None,
        on_jump: JumpCallback | None = None,
        jump_confirm: int = 3,  # NodeConfig.time_jump_frames' default
    ) -> None:
        if n < 1:
            raise ValueError(f"ApproximateTimeSync needs at least one stream, got n={n}")
        if slop < 0:
            raise ValueError(f"sync slop must be >= 0 seconds, got {slop}")
        if queue_size < 1:
            raise ValueError(f"sync queue_size must be >= 1, got {queue_size}")
        if jump_back is not None and jump_back <= 0:
            raise ValueError(f"sync jump_back must be > 0 seconds, got {jump_back}")
        self.n = n
        self.slop_ns = int(round(slop * 1e9))
        self.queue_size = queue_size
        self.callback = callback
        self.on_drop = on_drop or (lambda i, m, why: None)
        self.jump_back_ns = None if jump_back is None else int(round(jump_back * 1e9))
        self.on_jump = on_jump or (lambda i, before, after: None)
        self._stamps: list[list[int]] = [[] for _ in range(n)]
        self._msgs: list[list[Any]] = [[] for _ in range(n)]
        self._last_emitted: list[float] = [float("-inf")] * n
        self._timelines = [Timeline(self.jump_back_ns, jump_confirm) for _ in range(n)] if jump_back else None
        self._lock = threading.Lock()

    def add(self, index: int, t_ns: int, msg: Any) -> None:
        emitted = jump = None
        with self._lock:
            dropped: list[tuple[int, Any, str]] = []
            stamps, msgs = self._stamps[index], self._msgs[index]
            verdict = Verdict.CURRENT
            if self._timelines is not None:
                before = self._timelines[index].newest
                verdict = self._timelines[index].check(t_ns)
            if verdict is Verdict.JUMP:
                jump = (index, before, t_ns)
                self._forget(t_ns + self.jump_back_ns, dropped)
                for timeline in self._timelines:  # every stream now continues from t_ns
                    timeline.restart(t_ns)
            if verdict is Verdict.STALE:
                dropped.append((index, msg, STALE))
            elif t_ns <= self._last_emitted[index]:
                dropped.append((index, msg, "stamp is not newer than the last paired set"))
            else:
                pos = bisect.bisect_left(stamps, t_ns)
                if pos < len(stamps) and stamps[pos] == t_ns:
                    dropped.append((index, msg, "duplicate stamp"))
                else:
                    stamps.insert(pos, t_ns)
                    msgs.insert(pos, msg)
                    if len(stamps) > self.queue_size:
                        stamps.pop(0)
                        dropped.append((index, msgs.pop(0), "no partner within the sync slop"))
                    emitted = self._match(index, t_ns, dropped)
        if jump is not None:
            self.on_jump(*jump)
        for i, m, why in dropped:
            self.on_drop(i, m, why)
        if emitted is not None:
            self.callback(*emitted)

    def _forget(self, after_ns: float, dropped: list) -> None:
        """Drop queued messages stamped after `after_ns` and every "last paired" guard (lock held)."""
        for j in range(self.n):
            keep = bisect.bisect_right(self._stamps[j], after_ns)
            dropped.extend((j, m, JUMPED) for m in self._msgs[j][keep:])
            del self._stamps[j][keep:]
            del self._msgs[j][keep:]
        self._last_emitted = [float("-inf")] * self.n

    def reset(self) -> None:
        """Forget every queued message and guard (the clock jumped back); drops are reported."""
        dropped: list[tuple[int, Any, str]] = []
        with self._lock:
            self._forget(float("-inf"), dropped)
            for timeline in self._timelines or ():
                timeline.restart()
        for i, m, why in dropped:
            self.on_drop(i, m, why)

    def _match(self, index: int, t_ns: int, dropped: list) -> list | None:
        picks = []
        for j in range(self.n):
            stamps = self._stamps[j]
            if not stamps:
                return None
            if j == index:
                picks.append(stamps.index(t_ns))
                continue
            k = bisect.bisect_left(stamps, t_ns)
            cands = [c for c in (k - 1, k) if 0 <= c < len(stamps)]
            picks.append(min(cands, key=lambda c: abs(stamps[c] - t_ns)))
        chosen = [self._stamps[j][picks[j]] for j in range(self.n)]
        if max(chosen) - min(chosen) > self.slop_ns:
            return None
        out = []
        for j in range(self.n):
            k = picks[j]
            for m in self._msgs[j][:k]:
                dropped.append((j, m, "no partner within the sync slop"))
            out.append(self._msgs[j][k])
            del self._stamps[j][: k + 1]
            del self._msgs[j][: k + 1]
            self._last_emitted[j] = chosen[j]
        return out

    def pending(self) -> list[int]:
        """Number of messages waiting in each stream's queue."""
        with self._lock:
            return [len(s) for s in self._stamps]


def subscribe_synchronized(
    node,
    streams: Sequence[tuple[type, str]],
    qos,
    slop: float,
    callback: Callable[..., None],
    queue_size: int = 10,
    on_message: Callable[[int, Any], None] | None = None,
    on_drop: DropCallback | None = None,
    use_message_filters: bool = True,
    admit: Callable[[int, Any], bool] | None = None,
    jump_back: float | None = None,
    on_jump: JumpCallback | None = None,
    jump_confirm: int = 3,
) -> tuple[str, list]:
    """Subscribe `node` to `streams` [(msg_type, topic), ...] and call `callback(*msgs)` per set.

    `on_message(index, msg)` sees every message as it arrives (rates, stall detection);
    `admit(index, msg)` returning False keeps a message out of the pairing (our synchroniser
    only: message_filters pairs inside its subscribers, so there the caller checks the set).
    Returns (which synchroniser is used, the subscription objects and, last, the synchroniser,
    kept alive by the caller).
    """
    on_message = on_message or (lambda i, m: None)
    admit = admit or (lambda i, m: True)
    # `qos_overrides./<topic>.subscription.reliability:=reliable` etc. then work as in image_pipeline.
    overrides = QoSOverridingOptions.with_default_policies()
    if use_message_filters and _message_filters is not None:  # pragma: no cover - ROS distro only
        subs = [_message_filters.Subscriber(node, t, topic, qos_profile=copy.copy(qos), qos_overriding_options=overrides)
                for t, topic in streams]
        for i, s in enumerate(subs):
            s.registerCallback(lambda m, i=i: on_message(i, m))
        sync = _message_filters.ApproximateTimeSynchronizer(subs, queue_size, slop)
        sync.registerCallback(callback)
        return "message_filters", subs + [sync]
    sync = ApproximateTimeSync(len(streams), slop, callback, queue_size, on_drop, jump_back, on_jump, jump_confirm)

    def make_cb(i: int):
        def cb(msg):
            on_message(i, msg)
            if admit(i, msg):
                sync.add(i, stamp_ns(msg), msg)

        return cb

    # rclpy applies an override to the profile object itself: one copy per subscription.
    subs = [node.create_subscription(t, topic, make_cb(i), copy.copy(qos), qos_overriding_options=overrides)
            for i, (t, topic) in enumerate(streams)]
    return "cigocc_ros.ros.sync", subs + [sync]
