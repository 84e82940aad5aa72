"""Writing a whole bag from a damaged one (`cigocc bag-repair`, cli/bag_repair.py): every message
reader.salvage_bag recovers, with its topic's type, definition and QoS, goes into a new rosbag2
bag with its index (summary section, metadata.yaml), which ros2 bag, Foxglove and rosbags open.
The input is only read; the output must be a new path outside it."""
from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.interfaces import MessageDefinitionFormat
from rosbags.rosbag2 import Writer, WriterError
from rosbags.rosbag2.enums import StoragePlugin
from rosbags.typesys import Stores, TypesysError, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from .errors import BagError
from .reader import Recovery, read_metadata, salvage_bag
from .types import typestore

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


@dataclass
class RepairSummary:
    recovery: Recovery  # what was read, and where the input ends
    output: Path
    storage: str
    written: Counter = field(default_factory=Counter)  # topic -> messages written
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> why not written


def _definition_store(conn) -> Typestore | None:
    """A type store holding the connection's type from the definition recorded in the bag, or
    the tools' own store (ROS 2 Kilted + cigocc_msgs) when the bag holds none; None when
    neither knows the type."""
    sep = "=" * 80 + "\n"
    try:
        if conn.msgdef.format == MessageDefinitionFormat.MSG:
            types = get_types_from_msg(conn.msgdef.data, conn.msgtype)
        elif conn.msgdef.format == MessageDefinitionFormat.IDL:
            data = conn.msgdef.data  # one IDL, or several each after a separator and "IDL: <name>"
            idls = [p.split("\n", 1)[1] for p in data.split(sep)[1:]] if data.startswith(f"{sep}IDL: ") else [data]
            types = {}
            for idl in idls:
                types.update(get_types_from_idl(idl))
        else:
            types = None
        if types:
            store = get_typestore(Stores.EMPTY)
            store.register(types)
            return store
    except TypesysError:
        pass  # a definition rosbags cannot parse: fall back to the known types
    store = typestore()
    return store if conn.msgtype in store.fielddefs else None


def repair_bag(src: str | Path, dst: str | Path, storage: str = "") -> RepairSummary:
    """Write the readable part of bag `src` (a folder or a storage file) to the new bag folder
    `dst` in `storage` ("mcap" | "sqlite3"; "" = the storage of `src`). BagError when nothing is
    readable, or `dst` exists or lies inside `src`; a failed write leaves no `dst` behind."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise BagError(f"{dst}: exists; bag-repair writes a new bag")
    if src.exists() and src.resolve() in dst.resolve().parents:
        raise BagError(f"{dst}: inside the input bag {src}; bag-repair never writes to its input")
    if storage and storage not in STORAGES:
        raise BagError(f"{dst}: unknown storage '{storage}' ({', '.join(STORAGES)})")
    bag = salvage_bag(src)
    try:
        rec = bag.recovery
        if not rec.messages:
            raise BagError(f"{src}: no complete message to keep: {rec.line()}")
        storage = storage or rec.files[0].storage
        summary = RepairSummary(rec, dst, storage)
        try:
            _write(bag, src, dst, storage, summary)
        except BaseException:
            shutil.rmtree(dst, ignore_errors=True)
            raise
    finally:
        bag.close()
    return summary


def _write(bag, src: Path, dst: Path, storage: str, summary: RepairSummary) -> None:
    try:
        with Writer(dst, version=9, storage_plugin=STORAGES[storage]) as writer:
            meta = read_metadata(src) if src.is_dir() else None
            for key, value in ((meta or {}).get("custom_data") or {}).items():
                writer.set_custom_data(str(key), str(value))  # e.g. kitti-to-bag's camera_from_grid
            writer.set_custom_data("cigocc.repaired_from", str(src.resolve()))
            out = {}
            for conn in bag.connections:
                store = _definition_store(conn)
                if store is None:
                    summary.skipped_topics[conn.topic] = f"type {conn.msgtype} is neither defined in the bag nor known"
                    continue
                try:
                    out[conn.id] = writer.add_connection(conn.topic, conn.msgtype, typestore=store,
                                                         offered_qos_profiles=conn.ext.offered_qos_profiles)
                except TypesysError as e:  # a recorded definition that refers to undefined types
                    summary.skipped_topics[conn.topic] = f"type {conn.msgtype}: {e}"
            for conn, stamp, data in bag.messages([c for c in bag.connections if c.id in out]):
                writer.write(out[conn.id], stamp, data)
                summary.written[conn.topic] += 1
    except WriterError as e:
        raise BagError(f"{dst}: {e}") from None
