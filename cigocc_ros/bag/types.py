"""The rosbags type store used by the bag tools: ROS 2 Kilted's standard messages plus
cigocc_msgs/msg/SemanticOccupancy, registered from the message definition at run time so the
bag tools never carry a second copy of it and need no ROS installation.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

OCCUPANCY_TYPE = "cigocc_msgs/msg/SemanticOccupancy"

# Package data: a link to msg/msg/SemanticOccupancy.msg, the one source of the definition (the
# cigocc_msgs package builds from it). Every build of this package (wheel, colcon, pip) copies
# the file's content into the install, so it is beside this module wherever the code runs.
PACKAGED_MSG = Path(__file__).resolve().with_name("SemanticOccupancy.msg")


def occupancy_msg_path() -> Path:
    """Path of SemanticOccupancy.msg: $CIGOCC_MSG_FILE when set, else the package's own copy."""
    env = os.environ.get("CIGOCC_MSG_FILE")
    path = Path(env) if env else PACKAGED_MSG
    if not path.is_file():
        raise FileNotFoundError(f"cannot find SemanticOccupancy.msg at {path}"
                                + ("" if env else "; set CIGOCC_MSG_FILE to its path"))
    return path


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
