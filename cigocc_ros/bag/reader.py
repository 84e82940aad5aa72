"""Opening a rosbag2 bag for reading, whole or damaged: `open_bag(path)`.

A bag that rosbags opens (metadata.yaml and intact storage files) is read through its index,
as before. When that fails the bag is read from its storage files instead and a Recovery says
what was found:
- an MCAP file cut short (no summary section, no footer: a recording whose recorder lost power)
  is read chunk by chunk up to the cut (mcap_scan.py): every complete message is kept;
- a bag folder without metadata.yaml (rosbag2 writes it when a recording closes), or with one
  that does not parse, is re-indexed from its .mcap / .db3 files, as `ros2 bag reindex` does.
An SQLite file is read through SQLite, which refuses a file that was cut; only its missing
metadata is rebuilt. Nothing here writes to the bag (SQLite files are opened immutable).

Both kinds of reader answer what bag-play, bag-eval and bag-repair use: `connections`,
`topics`, `start_time` / `end_time` (ns, end exclusive as in rosbags), `messages(connections,
start, stop)` in receive-time order, and `recovery` (None for a whole bag). Every failure to
read is a BagError naming the file.
"""
from __future__ import annotations

import heapq
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import apsw
import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import (
    Connection,
    ConnectionExtRosbag2,
    MessageDefinition,
    MessageDefinitionFormat,
    TopicInfo,
)
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.rosbag2.metadata import parse_qos

from .errors import BagError

try:  # the zstd module rosbags reads with (Python 3.14 has it built in)
    from compression import zstd
except ImportError:
    from backports import zstd
from .mcap_scan import MAGIC as MCAP_MAGIC
from .mcap_scan import McapScan, scan_mcap

SQLITE_MAGIC = b"SQLite format 3\x00"
STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
_TIME_MAX = 2**63 - 1
_DEFINITION_FORMATS = {"ros2msg": MessageDefinitionFormat.MSG, "ros2idl": MessageDefinitionFormat.IDL}


# --------------------------------------------------------------------------------------------
# What was recovered
# --------------------------------------------------------------------------------------------
@dataclass
class FileRecovery:
    """One storage file of a recovered bag. Bytes; `end` says where and why reading stopped."""
    path: Path
    storage: str  # mcap | sqlite3
    size: int
    readable: int
    complete: bool
    end: str = ""
    messages: int = 0
    damaged: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.complete and not self.damaged:
            return f"{self.path.name} read to its end"
        parts = [f"{self.path.name} {self.end}" if self.end else f"{self.path.name}: all records read"]
        parts += self.damaged[:3]
        if len(self.damaged) > 3:
            parts.append(f"{len(self.damaged) - 3} more damaged chunks skipped")
        return ", ".join(parts)


@dataclass
class Recovery:
    """A bag that was not read through its index: why, and what its storage files gave."""
    bag: Path
    reason: str  # why the index could not be used
    files: list[FileRecovery]
    messages: int = 0  # complete messages recovered, all topics
    topics: int = 0
    span_s: float = 0.0  # from the first to the last recovered message

    @property
    def cut(self) -> bool:
        """Some storage file ends early or holds damaged chunks (not only the index is lost)."""
        return any(not f.complete or f.damaged for f in self.files)

    def line(self) -> str:
        """One line for the user: how much was recovered and where the files end."""
        what = ("complete " if self.cut else "") + "message" + "s" * (self.messages != 1)
        return (f"recovered {self.messages} {what} on {self.topics} topic{'s' * (self.topics != 1)} "
                f"({self.span_s:.2f} s) from {self.bag} ({self.reason}): " + "; ".join(f.describe() for f in self.files))


# --------------------------------------------------------------------------------------------
# Storage files read without the bag's index
# --------------------------------------------------------------------------------------------
def _qos(text: str) -> list:
    try:
        return parse_qos(text) if text else []
    except Exception:  # noqa: BLE001 - rosbags parses YAML of several versions; QoS is optional
        return []


class _McapSource:
    """An MCAP file read chunk by chunk (mcap_scan). Connections use the channel ids."""

    def __init__(self, path: Path) -> None:
        self.scan: McapScan = scan_mcap(path)
        s = self.scan
        self.connections = []
        for ch in s.channels.values():
            schema = s.schemas.get(ch.schema_id)
            if schema is None or ch.message_encoding != "cdr":
                continue  # not a ROS 2 message: nothing the tools could publish
            msgdef = MessageDefinition(_DEFINITION_FORMATS.get(schema.encoding, MessageDefinitionFormat.NONE),
                                       schema.data if schema.encoding in _DEFINITION_FORMATS else "")
            self.connections.append(Connection(ch.id, ch.topic, schema.name, msgdef, "", s.counts[ch.id],
                                               ConnectionExtRosbag2("cdr", _qos(ch.metadata.get("offered_qos_profiles",
                                                                                                ""))), self))
        self.start = min((b.start for b in s.blocks), default=_TIME_MAX)
        self.end = max((b.end for b in s.blocks), default=-1)

    def recovery(self) -> FileRecovery:
        s = self.scan
        return FileRecovery(s.path, "mcap", s.size, s.readable, s.complete, s.end,
                            sum(c.msgcount for c in self.connections), list(s.damaged))

    def messages(self, ids: set[int], start: int, stop: int):
        return self.scan.messages(ids, start, stop)

    def close(self) -> None:
        pass


class _Sqlite3Source:
    """An SQLite storage file read by rosbags without metadata.yaml: rosbags counts the
    messages per topic from the file itself (what `ros2 bag reindex` writes back)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.reader = Reader(path)
            self.reader.open()
        except (ReaderError, apsw.Error) as e:
            raise BagError(f"{path}: {e} (an SQLite file that was cut short cannot be read; only a "
                           "missing metadata.yaml is rebuilt)") from None
        self.connections = list(self.reader.connections)
        self.start, self.end = self.reader.start_time, self.reader.end_time - 1

    def recovery(self) -> FileRecovery:
        size = self.path.stat().st_size
        return FileRecovery(self.path, "sqlite3", size, size, True, "",
                            sum(c.msgcount for c in self.connections))

    def messages(self, ids: set[int], start: int, stop: int):
        conns = [c for c in self.connections if c.id in ids]
        if not conns:
            return
        try:
            for conn, t, data in self.reader.messages(conns, start, stop):
                yield conn.id, t, data
        except (ReaderError, apsw.Error) as e:
            raise BagError(f"{self.path}: {e}") from None

    def close(self) -> None:
        self.reader.close()


def _sniff(path: Path) -> str:
    """'mcap' | 'sqlite3' from a storage file's first bytes; BagError for anything else."""
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise BagError(f"{path}: cannot open ({e.strerror})") from None
    if head.startswith(MCAP_MAGIC) or (head and MCAP_MAGIC.startswith(head)):
        return "mcap"
    if head == SQLITE_MAGIC:
        return "sqlite3"
    if not head:
        raise BagError(f"{path}: the file is empty")
    raise BagError(f"{path}: not a rosbag2 storage file (neither MCAP nor SQLite)")


def _natural(path: Path) -> tuple:
    """Sort key: bag_2.mcap before bag_10.mcap (rosbag2 numbers the files of a split bag)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name))


def read_metadata(bag: Path) -> dict | None:
    """rosbag2_bagfile_information of a bag folder's metadata.yaml; None when it is missing or
    does not parse."""
    try:
        meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
        return None
    return meta if isinstance(meta, dict) else None


def storage_files(bag: Path) -> list[Path]:
    """The storage files of a bag folder (those metadata.yaml lists when it can, else every
    .mcap and .db3 file in it, in rosbag2's numbering order), or the file itself."""
    if bag.is_file():
        return [bag]
    meta = read_metadata(bag) or {}
    listed = [bag / Path(str(p)).name for p in meta.get("relative_file_paths") or []]
    if listed and all(p.is_file() for p in listed):
        return listed
    found = sorted((p for p in bag.iterdir() if p.suffix in STORAGE_SUFFIXES and p.is_file()), key=_natural)
    if not found:
        compressed = [p.name for p in bag.iterdir() if p.suffixes[-2:-1] in ([".mcap"], [".db3"])]
        if compressed:
            raise BagError(f"{bag}: its storage files are compressed ({', '.join(compressed)}); "
                           "a compressed file cannot be read without its metadata")
        raise BagError(f"{bag}: not a rosbag2 bag (no metadata.yaml, no .mcap or .db3 file)")
    return found


# --------------------------------------------------------------------------------------------
# The two readers
# --------------------------------------------------------------------------------------------
class IndexedBag:
    """A bag rosbags opens through its index (AnyReader)."""

    recovery = None

    def __init__(self, path: Path, reader: AnyReader) -> None:
        self.path = path
        self.reader = reader
        self.connections = reader.connections
        self.topics = reader.topics
        self.start_time, self.end_time = reader.start_time, reader.end_time

    def messages(self, connections=(), start: int | None = None, stop: int | None = None):
        try:
            yield from self.reader.messages(connections=connections, start=start, stop=stop)
        except (AnyReaderError, ReaderError, apsw.Error) as e:
            # The index was intact, a chunk or page is not: bag-repair keeps the readable rest.
            raise BagError(f"{self.path}: {e} (cigocc bag-repair writes a bag of its readable part)") from None

    def close(self) -> None:
        self.reader.close()


class SalvagedBag:
    """A bag read from its storage files without its index (see the module's docstring).
    Connections of the same topic and type in several files (a split bag) are one."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.sources: list = []
        meta = read_metadata(path) if path.is_dir() else None
        # rosbag2's per-message compression (zstd) is recorded only in metadata.yaml.
        self.message_zstd = bool(meta) and str(meta.get("compression_mode", "")).lower() == "message"
        try:
            for file in storage_files(path):
                storage = _sniff(file)
                self.sources.append(_McapSource(file) if storage == "mcap" else _Sqlite3Source(file))
        except BaseException:
            self.close()
            raise
        first: dict[tuple[str, str], Connection] = {}  # (topic, type) -> its first connection
        totals: Counter = Counter()
        for source in self.sources:
            for c in source.connections:
                first.setdefault((c.topic, c.msgtype), c)
                totals[(c.topic, c.msgtype)] += c.msgcount
        self.connections = [Connection(i + 1, c.topic, c.msgtype, c.msgdef, c.digest, totals[key], c.ext, self)
                            for i, (key, c) in enumerate(first.items())]
        ours = {(c.topic, c.msgtype): c for c in self.connections}
        self._local = [{c.id: ours[(c.topic, c.msgtype)] for c in s.connections} for s in self.sources]
        self.start_time = min((s.start for s in self.sources), default=_TIME_MAX)
        last = max((s.end for s in self.sources), default=-1)
        self.end_time = last + 1 if last >= 0 else 0
        files = [s.recovery() for s in self.sources]
        total = sum(c.msgcount for c in self.connections)
        self.recovery = Recovery(path, reason, files, total, sum(1 for c in self.connections if c.msgcount),
                                 (last - self.start_time) / 1e9 if total else 0.0)

    @property
    def topics(self) -> dict[str, TopicInfo]:
        out: dict[str, TopicInfo] = {}
        for c in self.connections:
            if c.topic in out:  # one topic recorded with two types: rosbags says None
                info = out[c.topic]
                out[c.topic] = TopicInfo(None, info.msgdef, info.msgcount + c.msgcount, [*info.connections, c])
            else:
                out[c.topic] = TopicInfo(c.msgtype, c.msgdef, c.msgcount, [c])
        return out

    def messages(self, connections=(), start: int | None = None, stop: int | None = None):
        """(connection, receive time ns, CDR bytes) in time order, as AnyReader.messages."""
        wanted = {c.id for c in (connections or self.connections)}
        start = 0 if start is None else start
        stop = _TIME_MAX if stop is None else stop
        tie = count()

        def stream(source, local):
            ids = {lid for lid, c in local.items() if c.id in wanted}
            for lid, t, data in source.messages(ids, start, stop):
                yield t, next(tie), local[lid], data

        merged = heapq.merge(*[stream(s, loc) for s, loc in zip(self.sources, self._local, strict=True)],
                             key=lambda m: (m[0], m[1]))
        for t, _, conn, data in merged:
            yield conn, t, (zstd.decompress(bytes(data)) if self.message_zstd else data)

    def close(self) -> None:
        for source in self.sources:
            source.close()


# --------------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------------
def _reason(path: Path, error: BaseException | None = None) -> str:
    """Why a bag is read from its storage files, for Recovery.line."""
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        return "no metadata.yaml; re-indexed from its storage files"
    if error is None:
        return "read from its storage files"
    text = str(error).strip().splitlines()
    return (text[0].rstrip(".") if text else type(error).__name__) + "; read from its storage files"


def salvage_bag(path: str | Path) -> SalvagedBag:
    """The bag read from its storage files, whatever its index says (bag-repair: a chunk
    that is damaged under an intact index is skipped, not fatal)."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: bag does not exist")
    return SalvagedBag(path, _reason(path))


@contextmanager
def open_bag(path: str | Path):
    """Yield an IndexedBag, or a SalvagedBag (its `recovery` set) when rosbags cannot open the
    bag as it is; BagError when neither can."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: bag does not exist")
    try:
        reader = AnyReader([path])
        reader.open()
    except (AnyReaderError, FileNotFoundError) as e:
        bag = SalvagedBag(path, _reason(path, e))
    else:
        bag = IndexedBag(path, reader)
    try:
        yield bag
    finally:
        bag.close()
