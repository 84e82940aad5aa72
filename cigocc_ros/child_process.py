"""Child processes that cannot outlive the process that started them.

The demo and the tests start `cigocc_node` (and listeners) as child processes and stop them
on a normal exit. A parent killed outright (SIGKILL, a CI timeout) runs no clean-up, and the
node would keep its CPU threads and DDS participant alive. Linux's parent-death signal makes
the kernel send the child SIGTERM (the node's clean-stop path) when its parent dies.

The signal is set by a small launcher that then execs the real command (the setting survives
exec), not by a `preexec_fn`: Python runs a preexec_fn between fork and exec, which can
deadlock when the parent has other threads (an rclpy executor, DDS), as the tests' parents do.

    subprocess.Popen(die_with_parent([python, "-m", "cigocc_ros.cli", "demo"]), ...)
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence

_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` to this process when its parent exits. False where that
    does not exist (not Linux, no libc), and clean-up stays the parent's job."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(cmd: Sequence[str]) -> list[str]:
    """`cmd` wrapped so that the process it becomes gets SIGTERM when the caller dies. The
    wrapper execs `cmd` in place: same pid, signals and exit status go to `cmd` itself."""
    return [sys.executable, "-m", "cigocc_ros.child_process", str(os.getpid()), "--", *map(str, cmd)]


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m cigocc_ros.child_process <parent pid> -- <command ...>", file=sys.stderr)
        return 2
    set_parent_death_signal()
    if os.getppid() != int(argv[0]):  # the parent died before the signal was set
        return 143
    os.execvp(argv[2], list(argv[2:]))
    return 127  # not reached: execvp raises on failure


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
