"""Children started with die_with_parent end when their parent is killed outright."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

PARENT = r"""
import subprocess, sys, time
from cigocc_ros.child_process import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         preexec_fn=die_with_parent if sys.argv[1] == "1" else None)
print(child.pid, flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie has already exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
@pytest.mark.parametrize("guarded", [True, False])
def test_sigkilled_parent_takes_its_child_along(guarded):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, "1" if guarded else "0"], stdout=subprocess.PIPE,
                              text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = int(parent.stdout.readline())
    try:
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Without the guard the orphan lives on: the test can tell the two apart.
        assert alive(child) is (not guarded)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
