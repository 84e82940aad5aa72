"""Child processes that cannot outlive the process that started them.

The demo and the tests start `cigocc_node` (and listeners) as child processes and stop them
on a normal exit. A parent killed outright (SIGKILL, a CI timeout) runs no clean-up, and the
node would keep its CPU threads and DDS participant alive. Linux's parent-death signal makes
the kernel send the child SIGTERM (the node's clean-stop path) when its parent dies.
"""
from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for subprocess.Popen: SIGTERM this child when its parent exits. No-op off
    Linux (or when libc cannot be loaded), where clean-up stays the parent's job."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
