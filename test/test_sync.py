"""Our approximate-time synchroniser: pairing within slop, order independence, drops and reasons."""
from __future__ import annotations

import itertools
import random

import pytest

from cigocc_ros.ros.sync import STALE, ApproximateTimeSync
from cigocc_ros.ros.timeline import Timeline, Verdict

MS = 1_000_000


class Recorder:
    def __init__(self):
        self.sets = []
        self.drops = []

    def __call__(self, *msgs):
        self.sets.append(msgs)

    def drop(self, index, msg, why):
        self.drops.append((index, msg, why))


def make(n=2, slop=0.02, queue_size=10, jump_back=None, jump_confirm=3):
    rec = Recorder()
    rec.jumps = []
    sync = ApproximateTimeSync(n, slop, rec, queue_size, rec.drop, jump_back,
                               lambda i, before, after: rec.jumps.append((i, before, after)), jump_confirm)
    return sync, rec


def test_exact_stamps_pair_in_any_arrival_order():
    for order in itertools.permutations(range(4)):
        sync, rec = make(n=4)
        for i in order:
            sync.add(i, 100 * MS, f"s{i}")
        assert rec.sets == [("s0", "s1", "s2", "s3")], order
        assert rec.drops == []


def test_within_slop_pairs_and_outside_does_not():
    sync, rec = make(slop=0.02)
    sync.add(0, 1000 * MS, "a")
    sync.add(1, 1019 * MS, "b")
    assert rec.sets == [("a", "b")]
    sync, rec = make(slop=0.02)
    sync.add(0, 1000 * MS, "a")
    sync.add(1, 1021 * MS, "b")
    assert rec.sets == []


def test_nearest_partner_is_chosen_and_older_ones_reported():
    sync, rec = make(slop=0.05)
    for k in range(3):  # right images at 0, 100, 200 ms arrive before any left one
        sync.add(1, k * 100 * MS, f"r{k}")
    sync.add(0, 205 * MS, "l2")
    assert rec.sets == [("l2", "r2")]
    assert [(i, m) for i, m, _ in rec.drops] == [(1, "r0"), (1, "r1")]
    assert all(why == "no partner within the sync slop" for *_, why in rec.drops)


def test_stereo_stream_pairs_the_right_frames_under_jitter():
    """Four streams at 10 Hz with arrival jitter and shuffled order: every frame k pairs with k."""
    rng = random.Random(3)
    sync, rec = make(n=4, slop=0.01)
    events = []
    for k in range(50):
        for i in range(4):
            jitter = rng.randint(-3, 3) * MS if i >= 2 else 0  # the right camera is slightly off
            events.append((k * 100 * MS + rng.randint(0, 40) * MS, i, k * 100 * MS + jitter, (i, k)))
    for _, i, t, msg in sorted(events):
        sync.add(i, t, msg)
    assert len(rec.sets) == 50
    for k, s in enumerate(rec.sets):
        assert s == tuple((i, k) for i in range(4))


def test_missing_partner_times_out_of_the_queue():
    sync, rec = make(queue_size=3)
    for k in range(5):
        sync.add(0, k * 100 * MS, f"l{k}")
    assert rec.sets == []
    assert [m for _, m, _ in rec.drops] == ["l0", "l1"]
    assert sync.pending() == [3, 0]


def test_duplicate_and_out_of_order_stamps_are_dropped():
    sync, rec = make()
    sync.add(0, 100 * MS, "a")
    sync.add(0, 100 * MS, "a-dup")
    assert rec.drops == [(0, "a-dup", "duplicate stamp")]
    sync.add(1, 100 * MS, "b")
    assert rec.sets == [("a", "b")]
    sync.add(0, 50 * MS, "late")
    assert rec.drops[-1] == (0, "late", "stamp is not newer than the last paired set")
    sync.add(1, 100 * MS, "b-again")
    assert rec.drops[-1][2] == "stamp is not newer than the last paired set"
    assert len(rec.sets) == 1


S = 1_000_000_000


def feed_frames(sync, start_ns: int, count: int, name: str, period_ns: int = 100 * MS) -> None:
    """`count` frames of a mono pair (info, then image) from `start_ns`, `period_ns` apart."""
    for k in range(count):
        sync.add(1, start_ns + k * period_ns, f"i-{name}{k}")
        sync.add(0, start_ns + k * period_ns, f"m-{name}{k}")


def test_a_bag_that_loops_starts_a_new_timeline_after_three_frames():
    """Stamps 30 s back for 3 consecutive frames (a looping bag): the first two are dropped as
    stale, the third starts the new timeline (reported once, the old timeline's queued messages
    discarded) and pairs, and the new timeline goes on without further jumps."""
    sync, rec = make(jump_back=1.0)
    feed_frames(sync, 100 * S, 3, "old")
    sync.add(1, 100 * S + 300 * MS, "i3-old")  # an info of the old timeline, still unpaired
    assert len(rec.sets) == 3 and rec.jumps == []
    feed_frames(sync, 70 * S, 2, "new")  # 30 s back: maybe a camera clock broken for a while
    assert len(rec.sets) == 3 and rec.jumps == []
    assert [(i, m) for i, m, why in rec.drops if why == STALE] == [(1, "i-new0"), (0, "m-new0"), (1, "i-new1"),
                                                                  (0, "m-new1")]
    sync.add(1, 70 * S + 200 * MS, "i-new2")  # the third consecutive frame back: a new timeline
    assert rec.jumps == [(1, 100 * S + 300 * MS, 70 * S + 200 * MS)]
    assert (1, "i3-old", "discarded: the clock jumped back") in rec.drops
    sync.add(0, 70 * S + 200 * MS, "m-new2")
    assert rec.sets[-1] == ("m-new2", "i-new2")
    feed_frames(sync, 70 * S + 300 * MS, 3, "next")
    assert len(rec.sets) == 7 and len(rec.jumps) == 1


def test_one_frame_stamped_a_year_back_between_good_frames_is_dropped_as_stale():
    """A camera clock broken for one frame: its messages are dropped (STALE), no jump, and the
    stream goes on pairing (before: the pairing reset and the stale frame was published)."""
    sync, rec = make(jump_back=1.0)
    now = 1_800_000_000 * S
    feed_frames(sync, now, 2, "a")
    feed_frames(sync, now - 365 * 86400 * S, 1, "stale")
    feed_frames(sync, now + 200 * MS, 2, "b")
    assert rec.sets == [("m-a0", "i-a0"), ("m-a1", "i-a1"), ("m-b0", "i-b0"), ("m-b1", "i-b1")]
    assert rec.jumps == [] and rec.drops == [(1, "i-stale0", STALE), (0, "m-stale0", STALE)]


def test_stale_stamps_that_do_not_continue_each_other_never_make_a_timeline():
    """Broken stamps scattered in the past (each far from the one before) stay stale; a good
    frame in between ends a candidate timeline."""
    sync, rec = make(jump_back=1.0)
    now = 1000 * S
    feed_frames(sync, now, 1, "a")
    for k, back in enumerate((500, 300, 700, 100)):  # 4 consecutive stale frames, no continuation
        feed_frames(sync, now - back * S, 1, f"s{k}")
    feed_frames(sync, now - 50 * S, 2, "c")  # two that continue...
    feed_frames(sync, now + 100 * MS, 1, "good")  # ...then the old timeline again
    feed_frames(sync, now - 50 * S + 200 * MS, 1, "c2")  # so this is the first of a new candidate
    assert rec.jumps == [] and [m for m in rec.sets] == [("m-a0", "i-a0"), ("m-good0", "i-good0")]


def test_timeline_verdicts():
    tl = Timeline(S, confirm=3)
    assert [tl.check(t) for t in (10 * S, 10 * S - 500 * MS)] == [Verdict.CURRENT] * 2  # a small step back
    assert tl.newest == 10 * S
    assert [tl.check(t) for t in (5 * S, 5 * S + 900 * MS)] == [Verdict.STALE] * 2 and tl.newest == 10 * S
    assert tl.check(5 * S + 2 * S) == Verdict.STALE  # more than jump_back after the last: a new candidate
    assert tl.check(7 * S + 100 * MS) == Verdict.STALE and tl.check(7 * S + 200 * MS) == Verdict.JUMP
    assert tl.newest == 7 * S + 200 * MS and tl.check(7 * S + 300 * MS) == Verdict.CURRENT
    tl.restart()
    assert tl.newest is None and tl.check(1) == Verdict.CURRENT
    with pytest.raises(ValueError):
        Timeline(S, confirm=0)


def test_one_far_future_stamp_does_not_wedge_the_pairing():
    sync, rec = make(jump_back=1.0)
    sync.add(0, 1000 * S, "future")
    sync.add(1, 1000 * S, "future-info")
    assert rec.sets == [("future", "future-info")]
    feed_frames(sync, 10 * S, 3, "now")  # without jump handling: "stamp is not newer" forever
    assert rec.sets[-1] == ("m-now2", "i-now2") and len(rec.jumps) == 1


def test_with_jump_confirm_1_the_first_frame_back_starts_the_new_timeline():
    sync, rec = make(jump_back=1.0, jump_confirm=1)
    feed_frames(sync, 100 * S, 1, "old")
    feed_frames(sync, 70 * S, 1, "new")
    assert rec.sets[-1] == ("m-new0", "i-new0") and len(rec.jumps) == 1


def test_small_steps_back_are_out_of_order_not_jumps():
    sync, rec = make(jump_back=1.0)
    sync.add(0, 10 * S, "a")
    sync.add(1, 10 * S, "b")
    sync.add(0, 10 * S - 500 * MS, "late")
    assert rec.drops[-1] == (0, "late", "stamp is not newer than the last paired set") and rec.jumps == []


def test_reset_forgets_queued_messages_and_guards():
    sync, rec = make()
    sync.add(0, 10 * S, "a")
    sync.add(1, 10 * S, "b")
    sync.add(0, 11 * S, "queued")
    sync.reset()
    assert rec.drops[-1] == (0, "queued", "discarded: the clock jumped back") and sync.pending() == [0, 0]
    sync.add(0, 5 * S, "c")
    sync.add(1, 5 * S, "d")
    assert rec.sets[-1] == ("c", "d")


def test_single_stream_passes_through():
    sync, rec = make(n=1)
    sync.add(0, 5, "x")
    sync.add(0, 6, "y")
    assert rec.sets == [("x",), ("y",)]


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"slop": -1.0}, {"queue_size": 0}, {"jump_back": 0.0},
                                    {"jump_back": 1.0, "jump_confirm": 0}])
def test_bad_arguments_are_rejected(kwargs):
    args = {"n": 2, "slop": 0.01, "callback": print, "queue_size": 5} | kwargs
    with pytest.raises(ValueError):
        ApproximateTimeSync(**args)


def test_subscriptions_take_per_topic_qos_overrides():
    """`qos_overrides./left/image.subscription.reliability:=reliable` changes that topic only."""
    import rclpy
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from cigocc_ros.ros.sync import subscribe_synchronized

    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    try:
        node = Node("sync_qos", context=ctx, parameter_overrides=[
            Parameter("qos_overrides./left/image.subscription.reliability", value="reliable")])
        qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.BEST_EFFORT)
        kind, subs = subscribe_synchronized(node, [(Image, "left/image"), (CameraInfo, "left/camera_info")], qos,
                                            0.02, print, use_message_filters=False)
        assert kind == "cigocc_ros.ros.sync"
        assert subs[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
        assert subs[1].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
