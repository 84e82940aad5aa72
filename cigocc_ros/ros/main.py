"""`cigocc_node`, the process: signals from its first line, start-up, spinning, exit status.

The node's imports (rclpy, NumPy, OpenCV and the node's modules: ~0.4 s here, seconds from a
cold disk) run only once SIGINT / SIGTERM handlers are in place, so this module imports nothing
but the standard library at the top: a Ctrl-C, or the SIGTERM of `ros2 launch`, at any moment
of the start-up ends the process with status 0 and no traceback (test_node_integration.py sends
one in the middle of the imports). Only the interpreter's own start-up, before this module runs
(~25 ms here), keeps Python's defaults.

Exit status: 0 after a signal, at any time; 1 when the start-up is refused (weights,
parameters: one FATAL line `refusing to start: <cause>`, no traceback). Run it as `cigocc_node`
or `python -m cigocc_ros.ros.main`.
"""
from __future__ import annotations

import signal
import sys


class StartupInterrupted(BaseException):
    """SIGINT / SIGTERM arrived while the node was starting (a BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way swallows it)."""


class SignalGate:
    """Python-level SIGINT / SIGTERM handlers for the process's whole life.

    rclpy's own handlers (installed by rclpy.init) shut the context down and wake the executor,
    then chain to these. While `armed` (start-up: imports, loading, the warm-up forward) they
    raise StartupInterrupted in the main thread, which stops the start-up between two Python
    operations; afterwards they do nothing, and the executor returns because the context is down.
    """

    def __init__(self) -> None:
        self.armed = True
        self.received: int | None = None  # the first signal's number
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
        if self.armed:
            self.armed = False
            raise StartupInterrupted(signum)


def main(args: list[str] | None = None) -> int:
    gate = SignalGate()
    try:
        import rclpy
        from rclpy.exceptions import ParameterException
        from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

        from .node import NODE_NAME, CigoccNode, WeightsError
    except StartupInterrupted:
        return 0
    if gate.received is not None:  # an import swallowed StartupInterrupted: the signal still stops
        return 0
    refusals = (WeightsError, ValueError, ParameterException)  # user mistakes: one FATAL line, exit 1
    node = None
    try:
        rclpy.init(args=args)
        node = CigoccNode()
        gate.armed = False
    except StartupInterrupted:
        gate.armed = False
        rclpy.try_shutdown()  # also destroys the half-built node
        return 0
    except BaseException as e:
        gate.armed = False
        if gate.received is not None:  # rclpy's handler shut the context down under the start-up
            rclpy.try_shutdown()
            return 0
        if not isinstance(e, refusals):
            raise
        rclpy.logging.get_logger(NODE_NAME).fatal(f"refusing to start: {e}")
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    try:
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # else: a callback (the diagnostics timer) ran into the shutdown a signal started
    finally:
        node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
