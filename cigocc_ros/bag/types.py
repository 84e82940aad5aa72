"""The rosbags type store used by the bag tools: ROS 2 Kilted's standard messages plus
cigocc_msgs/msg/SemanticOccupancy, registered from the package's own .msg file at run time so
the bag tools never carry a second copy of the message definition.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from ..resources import checkout_root

OCCUPANCY_TYPE = "cigocc_msgs/msg/SemanticOccupancy"

# The checkout's message package (msg/, built as cigocc_msgs); an installed cigocc_msgs
# (colcon / ament) is the fallback.
_MSG_IN_CHECKOUT = Path("msg") / "msg" / "SemanticOccupancy.msg"


def occupancy_msg_path() -> Path:
    """Path of SemanticOccupancy.msg: $CIGOCC_MSG_FILE, the source checkout, or an installed
    cigocc_msgs share directory found through AMENT_PREFIX_PATH."""
    env = os.environ.get("CIGOCC_MSG_FILE")
    candidates = [Path(env)] if env else []
    checkout = checkout_root()
    if checkout is not None:
        candidates.append(checkout / _MSG_IN_CHECKOUT)
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "cigocc_msgs" / "msg" / "SemanticOccupancy.msg")
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "cannot find SemanticOccupancy.msg (looked in: "
        + ", ".join(str(p) for p in candidates)
        + "); set CIGOCC_MSG_FILE to its path"
    )


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """Kilted type store with cigocc_msgs/msg/SemanticOccupancy registered."""
    store = get_typestore(Stores.ROS2_KILTED)
    path = occupancy_msg_path()
    try:
        store.register(get_types_from_msg(path.read_text(), OCCUPANCY_TYPE))
    except Exception as e:  # rosbags raises its own parse errors; name the file either way
        raise ValueError(f"cannot parse message definition {path}: {e}") from None
    return store
