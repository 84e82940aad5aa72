"""Reading an MCAP file from its start, record by record, without its summary section: what a
recording cut short (power lost, disk full, recorder killed) leaves behind. rosbags opens an
MCAP file at its footer and summary, so it refuses such a file ("File end magic is invalid");
this module walks the data section instead and keeps every message complete before the cut,
also those in the first part of a chunk the cut runs through.

Layout (mcap.dev/spec): 8 magic bytes, then records `opcode (uint8) | length (uint64, little
endian) | content`. Messages sit in Chunk records (their records compressed with zstd or lz4,
or stored as they are) or alone in the data section; Schema and Channel records come before
the messages that use them, inside chunks or outside. The summary section and the footer at
the end only index what the data section already holds, so nothing is lost without them.

`scan_mcap(path)` reads the file once, decompressing each chunk to check it, count its messages
and learn its channels, and returns an McapScan: channels, message blocks (a chunk, or a run of
records outside chunks) with their time ranges, and where and why the readable part ends.
`McapScan.messages()` reads the blocks again, one at a time, in log-time order. lz4 and zstd
are rosbags' own dependencies (it reads MCAP chunks with them).
"""
from __future__ import annotations

import heapq
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import lz4.frame
from rosbags.rosbag2.storage_mcap import decompress

from .errors import BagError

try:  # the zstd module rosbags reads with (Python 3.14 has it built in)
    from compression import zstd
except ImportError:
    from backports import zstd

MAGIC = b"\x89MCAP0\r\n"
_RECORD = struct.Struct("<BQ")  # opcode, content length
_MESSAGE = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
_CHUNK = struct.Struct("<QQQI")  # message start time, end time, uncompressed size, CRC32
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_DATA_END = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F
RECORD_NAMES = {0x01: "Header", 0x02: "Footer", 0x03: "Schema", 0x04: "Channel", 0x05: "Message", 0x06: "Chunk",
                0x07: "MessageIndex", 0x08: "ChunkIndex", 0x09: "Attachment", 0x0A: "AttachmentIndex",
                0x0B: "Statistics", 0x0C: "Metadata", 0x0D: "MetadataIndex", 0x0E: "SummaryOffset", 0x0F: "DataEnd"}
_TIME_MAX = 2**63 - 1


class _Malformed(Exception):
    """A record whose content does not parse (inside a chunk: the chunk is damaged)."""


@dataclass(frozen=True)
class Schema:
    id: int
    name: str  # the message type, e.g. sensor_msgs/msg/Image
    encoding: str  # ros2msg | ros2idl | "" (none)
    data: str  # the message definition


@dataclass(frozen=True)
class Channel:
    id: int
    schema_id: int
    topic: str
    message_encoding: str  # cdr for ROS 2
    metadata: dict[str, str]  # rosbag2 keeps offered_qos_profiles (YAML) here


@dataclass(frozen=True)
class Block:
    """Messages stored together: the records of one chunk, or a run of records outside chunks."""
    offset: int  # file offset of the records (of a chunk: of its compressed records)
    size: int  # bytes stored at offset
    compression: str  # "" (none), "zstd" or "lz4"
    uncompressed_size: int
    crc: int  # CRC32 of the uncompressed records; 0 = not recorded
    start: int  # earliest and latest message log time in it, ns
    end: int
    partial: bool = False  # the first part of a chunk the file's end cuts: its records up to the cut



@dataclass
class McapScan:
    """What scan_mcap read. Offsets and sizes in bytes, times in ns."""
    path: Path
    size: int  # of the file
    readable: int  # from byte 0 to the end of the last complete record
    complete: bool  # the data section ends as written (a DataEnd or Footer record was reached)
    end: str  # where and why the reading stopped, after the file's name ("" when complete)
    schemas: dict[int, Schema] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)  # channel id -> messages
    blocks: list[Block] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # chunks skipped: where and why

    def messages(self, channel_ids: set[int], start: int = 0,
                 stop: int = _TIME_MAX) -> Iterator[tuple[int, int, memoryview]]:
        """(channel id, log time, CDR bytes) of the messages of `channel_ids` with start <= log
        time < stop, in log-time order (file order among equal times). One block is held
        decompressed at a time, unless blocks overlap in time."""
        with self.path.open("rb") as f:
            sources = [self._block_messages(f, i, b, channel_ids, start, stop)
                       for i, b in enumerate(self.blocks) if b.end >= start and b.start < stop]
            for t, _, k, cid, data in heapq.merge(*sources):
                if k >= 0:
                    yield cid, t, data

    def _block_messages(self, f, index: int, block: Block, channel_ids: set[int], start: int, stop: int):
        # The first item is a marker at the block's earliest time: heapq.merge takes it without
        # reading the block, which is read only once the merge reaches that time.
        yield block.start, index, -1, -1, b""
        f.seek(block.offset)
        stored = f.read(block.size)
        try:
            records = memoryview(_decompressed(stored, block.compression, block.uncompressed_size, block.crc,
                                               block.partial))
            found = [(t, index, k, cid, data)
                     for k, (cid, t, data) in enumerate(_block_records(records, {}, {}, block.partial))
                     if cid in channel_ids and start <= t < stop]
        except _Malformed as e:  # it read at the scan: the file changed since
            raise BagError(f"{self.path}: the block at byte {block.offset} no longer reads ({e}); "
                           "was the file changed while it was read?") from None
        found.sort(key=lambda m: m[0])  # stable: file order among equal times
        yield from found


def _string(buf: memoryview, pos: int) -> tuple[str, int]:
    n, = struct.unpack_from("<I", buf, pos)
    pos += 4
    if pos + n > len(buf):
        raise _Malformed(f"a string of {n} bytes runs past its record")
    return bytes(buf[pos:pos + n]).decode(), pos + n


def _schema(rec: memoryview) -> Schema:
    sid, = struct.unpack_from("<H", rec, 0)
    name, pos = _string(rec, 2)
    encoding, pos = _string(rec, pos)
    n, = struct.unpack_from("<I", rec, pos)
    return Schema(sid, name, encoding, bytes(rec[pos + 4:pos + 4 + n]).decode())


def _channel(rec: memoryview) -> Channel:
    cid, schema_id = struct.unpack_from("<HH", rec, 0)
    topic, pos = _string(rec, 4)
    encoding, pos = _string(rec, pos)
    n, = struct.unpack_from("<I", rec, pos)
    pos += 4
    end = pos + n
    meta = {}
    while pos < end:
        key, pos = _string(rec, pos)
        meta[key], pos = _string(rec, pos)
    return Channel(cid, schema_id, topic, encoding, meta)


def _block_records(buf: memoryview, schemas: dict, channels: dict,
                   partial: bool = False) -> Iterator[tuple[int, int, memoryview]]:
    """(channel id, log time, data) of each Message record in `buf` (records back to back);
    Schema and Channel records go into `schemas` / `channels`. Raises _Malformed, except
    that a `partial` buffer (a chunk cut short) just ends at its first incomplete record."""
    pos = 0
    try:
        while pos < len(buf):
            if len(buf) - pos < _RECORD.size:
                if partial:
                    return
                raise _Malformed(f"a record header is cut at byte {pos}")
            op, n = _RECORD.unpack_from(buf, pos)
            pos += _RECORD.size
            if n > len(buf) - pos:
                if partial:
                    return
                raise _Malformed(f"a {RECORD_NAMES.get(op, hex(op))} record of {n} bytes runs past the end")
            rec = buf[pos:pos + n]
            pos += n
            if op == OP_MESSAGE:
                cid, _, log_time, _ = _MESSAGE.unpack_from(rec, 0)
                yield cid, log_time, rec[_MESSAGE.size:]
            elif op == OP_SCHEMA:
                s = _schema(rec)
                schemas[s.id] = s
            elif op == OP_CHANNEL:
                c = _channel(rec)
                channels[c.id] = c
    except (struct.error, UnicodeDecodeError) as e:
        raise _Malformed(str(e)) from None


def _decompressed(stored: bytes, compression: str, size: int, crc: int, partial: bool = False) -> bytes:
    """The chunk's records; of a `partial` chunk (its stored bytes cut short) as many as its
    first part decodes to (streaming decompressors stop at the cut), size and CRC unchecked.
    rosbags checks size and CRC; the zstd and lz4 libraries raise errors of their own types
    on corrupt input, so any exception here means a damaged chunk."""
    try:
        if not partial:
            return decompress(stored, compression, size, crc)
        if compression == "":
            return stored
        if compression == "zstd":
            return zstd.ZstdDecompressor().decompress(stored)
        if compression == "lz4":
            return lz4.frame.LZ4FrameDecompressor().decompress(stored)
        raise _Malformed(f"unknown chunk compression {compression!r}")
    except _Malformed:
        raise
    except Exception as e:  # noqa: BLE001 - third-party decompressors, untrusted bytes
        raise _Malformed(f"{type(e).__name__}: {e}") from None


class _Walk:
    """State of one pass over the data section."""

    def __init__(self, scan: McapScan) -> None:
        self.scan = scan
        self.run: list[int] | None = None  # records outside chunks: [offset, end, first time, last time]

    def close_run(self) -> None:
        if self.run is not None:
            offset, end, t0, t1 = self.run
            self.scan.blocks.append(Block(offset, end - offset, "", end - offset, 0, t0, t1))
            self.run = None

    def loose_message(self, pos: int, end: int, rec: memoryview) -> None:
        try:
            cid, _, log_time, _ = _MESSAGE.unpack_from(rec, 0)
        except struct.error:
            self.scan.damaged.append(f"a Message record at byte {pos} is too short")
            return
        self.scan.counts[cid] += 1
        if self.run is None:
            self.run = [pos, end, log_time, log_time]
        self.run[1] = end
        self.run[2], self.run[3] = min(self.run[2], log_time), max(self.run[3], log_time)

    def chunk(self, pos: int, rec: memoryview, partial: bool = False) -> int:
        """Check one Chunk record and keep it as a block; returns its messages. A damaged chunk
        is noted and skipped (its length is intact, so the records after it can still be
        read). A `partial` chunk is the first part of one the file's end cuts: its complete
        records are kept."""
        self.close_run()
        scan = self.scan
        try:
            _, _, usize, crc = _CHUNK.unpack_from(rec, 0)
            compression, p = _string(rec, _CHUNK.size)
            n, = struct.unpack_from("<Q", rec, p)
            p += 8
            if p + n > len(rec) and not partial:
                raise _Malformed("its records run past the record")
            stored = bytes(rec[p:p + n])
            records = memoryview(_decompressed(stored, compression, usize, crc, partial))
            schemas, channels = dict(scan.schemas), dict(scan.channels)
            counts: Counter = Counter()
            t0, t1 = _TIME_MAX, -1
            for cid, t, _ in _block_records(records, schemas, channels, partial):
                counts[cid] += 1
                t0, t1 = min(t0, t), max(t1, t)
        except (_Malformed, struct.error, UnicodeDecodeError) as e:
            if not partial:  # (a cut chunk header or stream: nothing of it is readable)
                scan.damaged.append(f"the chunk at byte {pos} is damaged ({e}) and was skipped")
            return 0
        scan.schemas, scan.channels = schemas, channels
        scan.counts.update(counts)
        if counts:
            scan.blocks.append(Block(pos + _RECORD.size + p, len(stored), compression, usize, crc, t0, t1, partial))
        return sum(counts.values())


def scan_mcap(path: str | Path) -> McapScan:
    """Read the data section of an MCAP file up to its end or its cut; raises BagError when
    the file is no MCAP file or ends before its header record is complete."""
    path = Path(path)
    try:
        f = path.open("rb")
    except OSError as e:
        raise BagError(f"{path}: cannot open ({e.strerror})") from None
    with f:
        size = f.seek(0, 2)
        f.seek(0)
        head = f.read(len(MAGIC))
        if not head:
            raise BagError(f"{path}: the file is empty")
        if head != MAGIC:
            if MAGIC.startswith(head):
                raise BagError(f"{path}: the file ends at byte {size}, inside the MCAP magic bytes")
            raise BagError(f"{path}: not an MCAP file (it does not start with the MCAP magic bytes)")
        pos = len(MAGIC)
        header = f.read(_RECORD.size)
        if len(header) < _RECORD.size or (op := header[0]) != OP_HEADER:
            if len(header) == _RECORD.size:
                raise BagError(f"{path}: not a valid MCAP file (no Header record after the magic bytes)")
            raise BagError(f"{path}: the file ends at byte {size}, inside its MCAP header, before any message")
        _, n = _RECORD.unpack(header)
        if pos + _RECORD.size + n > size:
            raise BagError(f"{path}: the file ends at byte {size}, inside its MCAP header, before any message")
        pos += _RECORD.size + n
        scan = McapScan(path, size, pos, False, "")
        walk = _Walk(scan)
        f.seek(pos)
        while True:
            head = f.read(_RECORD.size)
            if len(head) < _RECORD.size:
                scan.end = (f"ends at byte {size} after its last complete record, without a summary section"
                            if not head else f"ends at byte {size}, inside the header of a record at byte {pos}")
                break
            op, n = _RECORD.unpack(head)
            name = RECORD_NAMES.get(op, f"0x{op:02x}")
            if op == 0:
                scan.end = f"holds no MCAP record at byte {pos} (opcode 0); the remaining {size - pos} bytes are unreadable"
                break
            if n > size - pos - _RECORD.size:
                if n >= 2**40:  # a length no recorder writes: the bytes there are not a record
                    scan.end = (f"holds no valid MCAP record at byte {pos} (a {name} record of {n} bytes); "
                                f"the remaining {size - pos} bytes are unreadable")
                    break
                scan.end = f"ends at byte {size}, inside a {name} record of {n} bytes that starts at byte {pos}"
                if op == OP_CHUNK and (kept := walk.chunk(pos, memoryview(f.read()), partial=True)):
                    scan.end += f" ({kept} complete message{'s' * (kept != 1)} read from its first {size - pos} bytes)"
                break
            if op in (OP_DATA_END, OP_FOOTER):
                scan.complete = True
                break
            end = pos + _RECORD.size + n
            if op == OP_CHUNK:
                walk.chunk(pos, memoryview(f.read(n)))
            elif op == OP_MESSAGE:
                walk.loose_message(pos, end, memoryview(f.read(n)))
            elif op in (OP_SCHEMA, OP_CHANNEL):
                try:
                    rec = memoryview(f.read(n))
                    if op == OP_SCHEMA:
                        s = _schema(rec)
                        scan.schemas[s.id] = s
                    else:
                        c = _channel(rec)
                        scan.channels[c.id] = c
                except (_Malformed, struct.error, UnicodeDecodeError) as e:
                    scan.damaged.append(f"the {name} record at byte {pos} is damaged ({e})")
            else:  # indexes, attachments, metadata: nothing a replay needs
                walk.close_run()
                f.seek(end)
            pos = scan.readable = end
        walk.close_run()
    return scan
