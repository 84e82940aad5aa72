"""Running statistics of the node and their diagnostic_msgs/DiagnosticStatus.

Rates and stalls are measured on the monotonic wall clock (a paused bag or a missing /clock must
not freeze them); latency is `ROS now - image header.stamp` on the node's clock, so it stays
meaningful under `use_sim_time` replay. Windows are bounded deques: memory stays constant.
"""
from __future__ import annotations

import collections
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


class NodeStats:
    """Thread-safe counters and windows fed by the callbacks and the worker."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.frame_times: collections.deque = collections.deque(maxlen=window)  # paired frames in
        self.output_times: collections.deque = collections.deque(maxlen=window)
        self.latencies: collections.deque = collections.deque(maxlen=window)  # seconds
        self.forward: collections.deque = collections.deque(maxlen=window)  # seconds
        self.message_counts: collections.Counter = collections.Counter()  # per topic
        self.last_message: dict[str, float] = {}
        self.frames_in = 0
        self.frames_out = 0
        self.skipped = 0  # bad input
        self.unpaired = 0  # messages the synchroniser could not pair
        self.last_problem = ""

    def message(self, topic: str) -> None:
        with self._lock:
            self.message_counts[topic] += 1
            self.last_message[topic] = time.monotonic()

    def frame_in(self) -> None:
        with self._lock:
            self.frames_in += 1
            self.frame_times.append(time.monotonic())

    def frame_out(self, latency_s: float, forward_s: float) -> None:
        with self._lock:
            self.frames_out += 1
            self.output_times.append(time.monotonic())
            self.latencies.append(latency_s)
            self.forward.append(forward_s)

    def problem(self, text: str, skipped: bool = True, unpaired: bool = False) -> None:
        with self._lock:
            self.skipped += int(skipped)
            self.unpaired += int(unpaired)
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
        now = time.monotonic()
        with self._lock:
            lat = np.asarray(self.latencies, dtype=np.float64) * 1e3
            fwd = np.asarray(self.forward, dtype=np.float64) * 1e3
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
    """DiagnosticStatus: OK, or WARN when input stalls / latency p95 exceeds `max_latency` s."""
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
        "device": device,
        "last_problem": stats["last_problem"],
    }
    values.update(extra or {})
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return status
