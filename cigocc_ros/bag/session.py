"""The ROS side every bag tool shares: a private rclpy session with its own executor thread,
the Fast DDS profile that lets large camera frames through shared memory, and the exit
conventions of the commands (SIGTERM as Ctrl-C, one error line, exit codes)."""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

# Fast DDS participant profile for the player: its shared-memory segment (where a writer puts
# outgoing samples) grows from the default 512 KiB to hold several camera frames. With the
# default, a 1.4 MB KITTI colour image sent to a best-effort subscriber arrived one time in two
# (docs/bags.md; the node subscribes reliable, other consumers may not); UDP stays enabled for
# other hosts.
_FASTDDS_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>cigocc_shm</transport_id>
        <type>SHM</type>
        <segment_size>{segment_size}</segment_size>
      </transport_descriptor>
      <transport_descriptor>
        <transport_id>cigocc_udp</transport_id>
        <type>UDPv4</type>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="cigocc_bag_tools" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>cigocc_shm</transport_id>
          <transport_id>cigocc_udp</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""
_PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def _install_fastdds_profile(segment_mb: int) -> Path | None:
    """Point Fast DDS at the player's profile (written to a temporary file) before the
    participant is created; returns the file, or None when the middleware is not Fast DDS or
    the user gave a profile of their own."""
    rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if segment_mb <= 0 or not rmw.startswith("rmw_fastrtps") or any(os.environ.get(v) for v in _PROFILE_VARS):
        return None
    fd, name = tempfile.mkstemp(prefix="cigocc_fastdds_", suffix=".xml")
    with os.fdopen(fd, "w") as f:
        f.write(_FASTDDS_PROFILE.format(segment_size=segment_mb * 2**20))
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = name
    return Path(name)


class RosSession:
    """A private rclpy context + node, spun by a background executor thread.

    Own context so a process can hold several (tests, bag-eval); no rclpy signal handlers so
    Ctrl-C reaches the replay loop as KeyboardInterrupt and it can stop cleanly. The Fast DDS
    profile (shm_segment_mb) takes effect only if this is the process's first DDS participant:
    Fast DDS reads its XML profiles once per process.
    """

    def __init__(self, name: str, shm_segment_mb: int = 64):
        self._profile = _install_fastdds_profile(shm_segment_mb)
        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"{name}-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # the context shutting down under the executor ends the thread
            pass

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)
        self._thread.join(timeout=2.0)
        if self._profile is not None:
            os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
            self._profile.unlink(missing_ok=True)

    def __enter__(self) -> RosSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sigterm_as_interrupt(signum=None, frame=None) -> None:
    """SIGTERM handler: stop like Ctrl-C (the replay loop ends cleanly on KeyboardInterrupt)."""
    raise KeyboardInterrupt


def take_sigint() -> None:
    """SIGINT raises KeyboardInterrupt even if this process started with it ignored. Python
    leaves SIGINT ignored when it starts so, as anything started with `&` from a script does
    (a non-interactive shell ignores SIGINT in background jobs); ros2 launch and scripts stop
    the tools with SIGINT, and the demo interrupts itself with it when the node dies."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_guarded(name: str, work: Callable[[], int]) -> int:
    """Run a bag command's `work() -> exit status` with the tools' conventions: SIGTERM acts
    as Ctrl-C; bad input prints 'error: <file>: <problem>' and exits 2; interruption exits 130."""
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    take_sigint()
    try:
        return work()
    except (OSError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
