"""Which stamps continue a stream's timeline: backwards time jumps decided with hysteresis.

A stamp more than `jump_back` before the newest stamp of a stream is either one stale stamp (a
camera whose clock is broken for one frame) or the first of a new timeline (a bag that loops, a
camera driver that restarted or resynced). At that frame the two look alike, so the decision
waits for the frames after it: the stamp is refused as STALE, and once `confirm` consecutive
stamps far back each continue from the one before (newer than it, by less than `jump_back`),
the last of them starts the new timeline (JUMP). A stamp on the old timeline in between ends the
candidate, so a single stale stamp between good frames is only ever dropped. The caller resets
at once, without waiting, when its clock (/clock) steps back: `restart()`.

Stamps within `jump_back` of the newest are CURRENT; whether an older or equal one is out of
order is the caller's rule (the synchroniser and the node each have theirs). Integer nanoseconds,
no ROS: docs/node.md ("Time jumps") states the same for users.
"""
from __future__ import annotations

import enum


class Verdict(enum.Enum):
    CURRENT = "current"  # on the timeline (a small step back included)
    STALE = "stale"  # far older than the newest stamp: drop it
    JUMP = "jump"  # the confirmed first stamp of a new timeline: forget the old one


class Timeline:
    """The newest stamp of one stream and a candidate new timeline behind it."""

    def __init__(self, jump_back_ns: int, confirm: int) -> None:
        if jump_back_ns <= 0:
            raise ValueError(f"jump_back must be > 0 ns, got {jump_back_ns}")
        if confirm < 1:
            raise ValueError(f"a new timeline needs at least 1 frame, got {confirm}")
        self.jump_back_ns = int(jump_back_ns)
        self.confirm = int(confirm)
        self.newest: int | None = None
        self._candidate: int | None = None  # the last stale stamp of a possible new timeline
        self._count = 0  # consecutive stale stamps continuing from one another

    def check(self, t: int) -> Verdict:
        """The verdict on stamp `t` (ns), which the timeline then takes into account."""
        if self.newest is None or t >= self.newest - self.jump_back_ns:
            self.newest = t if self.newest is None else max(self.newest, t)
            self._candidate, self._count = None, 0
            return Verdict.CURRENT
        c = self._candidate
        self._count = self._count + 1 if c is not None and c < t <= c + self.jump_back_ns else 1
        self._candidate = t
        if self._count >= self.confirm:
            self.restart(t)
            return Verdict.JUMP
        return Verdict.STALE

    def restart(self, t: int | None = None) -> None:
        """Start over at stamp `t` (None: accept whatever comes next)."""
        self.newest = t
        self._candidate, self._count = None, 0
