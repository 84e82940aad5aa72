"""Children started with die_with_parent end when their parent is killed outright."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

PARENT = r"""
import subprocess, sys, threading, time
from cigocc_ros.child_process import die_with_parent
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # a parent with threads, like the tests'
cmd = [sys.executable, "-c", "import time; time.sleep(60)"]
child = subprocess.Popen(die_with_parent(cmd) if sys.argv[1] == "1" else cmd)
print(child.pid, flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie has already exited
    except FileNotFoundError:
        return False


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


def test_launcher_passes_exit_status_through():
    from cigocc_ros.child_process import die_with_parent

    r = subprocess.run(die_with_parent([sys.executable, "-c", "import sys; sys.exit(7)"]))
    assert r.returncode == 7


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
@pytest.mark.parametrize("guarded", [True, False])
def test_sigkilled_parent_takes_its_child_along(guarded):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, "1" if guarded else "0"], stdout=subprocess.PIPE,
                              text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = int(parent.stdout.readline())
    try:
        assert alive(child)
        deadline = time.monotonic() + 10
        while not cmdline(child).endswith("time.sleep(60)") and time.monotonic() < deadline:
            time.sleep(0.02)  # the launcher has not exec'd yet (cmdline reads empty during exec)
        assert cmdline(child).endswith("time.sleep(60)"), "the launcher execs in place: same pid"
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
