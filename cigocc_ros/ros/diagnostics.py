"""Running statistics of the node and their diagnostic_msgs/DiagnosticStatus.

Rates and stalls are measured on the monotonic wall clock (a paused bag or a missing /clock must
not freeze them); latency is `ROS now - image header.stamp` on the node's clock, so it stays
meaningful under `use_sim_time` replay. Latency and forward-time percentiles cover the frames of
the last `window_s` seconds (LATENCY_WINDOW_S), not the last N frames: one slow frame stops
counting after that time whatever the frame rate. Windows are bounded deques: memory stays
constant.
"""
from __future__ import annotations

import collections
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

LATENCY_WINDOW_S = 10.0


class NodeStats:
    """Thread-safe counters and windows fed by the callbacks and the worker. `clock` (seconds,
    monotonic) is injectable for tests."""

    def __init__(self, window: int = 100, window_s: float = LATENCY_WINDOW_S, clock=time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.window_s = window_s
        self.started = clock()
        self.frame_times: collections.deque = collections.deque(maxlen=window)  # paired frames in
        self.output_times: collections.deque = collections.deque(maxlen=window)
        # (time out, latency s, forward s) of the frames published in the last window_s seconds;
        # the maxlen only bounds memory (1000 frames = 10 s at 100 Hz).
        self.timings: collections.deque = collections.deque(maxlen=1000)
        self.message_counts: collections.Counter = collections.Counter()  # per topic
        self.last_message: dict[str, float] = {}
        self.frames_in = 0
        self.frames_out = 0
        self.skipped = 0  # bad input
        self.unpaired = 0  # messages the synchroniser could not pair
        self.time_jumps = 0  # clock steps back that reset the pairing
        self.last_problem = ""

    def message(self, topic: str) -> None:
        with self._lock:
            self.message_counts[topic] += 1
            self.last_message[topic] = self._clock()

    def frame_in(self) -> None:
        with self._lock:
            self.frames_in += 1
            self.frame_times.append(self._clock())

    def frame_out(self, latency_s: float, forward_s: float) -> None:
        with self._lock:
            now = self._clock()
            self.frames_out += 1
            self.output_times.append(now)
            self.timings.append((now, latency_s, forward_s))

    def problem(self, text: str, skipped: bool = True, unpaired: bool = False) -> None:
        with self._lock:
            self.skipped += int(skipped)
            self.unpaired += int(unpaired)
            self.last_problem = text

    def time_jump(self, text: str) -> None:
        with self._lock:
            self.time_jumps += 1
            self.last_problem = text

    @staticmethod
    def _rate(times, now: float, horizon: float = 5.0) -> float:
        recent = [t for t in times if now - t <= horizon]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], recent[-1] - recent[0])
        return (len(recent) - 1) / span if span > 0 else 0.0

    def snapshot(self) -> dict:
        """Current figures (rates in Hz, times in ms) as a plain dict."""
        now = self._clock()
        with self._lock:
            while self.timings and now - self.timings[0][0] > self.window_s:
                self.timings.popleft()
            recent = np.asarray([t[1:] for t in self.timings], dtype=np.float64).reshape(-1, 2) * 1e3
            lat, fwd = recent[:, 0], recent[:, 1]
            last_frame = self.frame_times[-1] if self.frame_times else None
            return {
                "input_rate_hz": self._rate(self.frame_times, now),
                "output_rate_hz": self._rate(self.output_times, now),
                "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
                "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan"),
                "forward_p50_ms": float(np.percentile(fwd, 50)) if fwd.size else float("nan"),
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "frames_skipped": self.skipped,
                "messages_unpaired": self.unpaired,
                "time_jumps": self.time_jumps,
                "seconds_since_input": now - (last_frame if last_frame is not None else self.started),
                "messages": dict(self.message_counts),
                "last_problem": self.last_problem,
            }


def build_status(
    stats: dict,
    dropped: int,
    name: str,
    device: str,
    stall_timeout: float,
    max_latency: float,
    extra: dict[str, str] | None = None,
) -> DiagnosticStatus:
    """DiagnosticStatus: OK, or WARN when input stalls / latency p95 (over the stats' time
    window) exceeds `max_latency` s."""
    problems = []
    if stats["seconds_since_input"] > stall_timeout:
        if stats["frames_in"] == 0:
            heard = ", ".join(f"{t}: {n}" for t, n in sorted(stats["messages"].items())) or "nothing"
            problems.append(f"no paired frame yet after {stats['seconds_since_input']:.1f} s (messages so far: {heard})")
        else:
            problems.append(f"input stalled: no paired frame for {stats['seconds_since_input']:.1f} s")
    if stats["latency_p95_ms"] > max_latency * 1e3:
        problems.append(f"latency p95 {stats['latency_p95_ms']:.0f} ms > max_latency {max_latency * 1e3:.0f} ms")
    status = DiagnosticStatus(name=name, hardware_id=device)
    status.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
    status.message = "; ".join(problems) if problems else "running"
    values = {
        "input_rate_hz": f"{stats['input_rate_hz']:.2f}",
        "output_rate_hz": f"{stats['output_rate_hz']:.2f}",
        "latency_p50_ms": f"{stats['latency_p50_ms']:.1f}",
        "latency_p95_ms": f"{stats['latency_p95_ms']:.1f}",
        "forward_p50_ms": f"{stats['forward_p50_ms']:.1f}",
        "frames_in": str(stats["frames_in"]),
        "frames_out": str(stats["frames_out"]),
        "frames_dropped": str(dropped),
        "frames_skipped": str(stats["frames_skipped"]),
        "messages_unpaired": str(stats["messages_unpaired"]),
        "time_jumps": str(stats["time_jumps"]),
        "device": device,
        "last_problem": stats["last_problem"],
    }
    values.update(extra or {})
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return status
