"""Bags cut short or damaged (bag/reader.py, bag/mcap_scan.py, bag/repair.py): a bag the test
writes is cut at many byte offsets, stripped of its metadata.yaml, overwritten with random
bytes or given a damaged chunk; what is read back is checked against the intact bag as
rosbags reads it. The oracle: messages have strictly increasing stamps and are stored in that
order, uncompressed, each ending with its CDR bytes; so a cut at byte X keeps exactly the
messages whose bytes, found in the intact file, end at or before X."""
from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin

from cigocc_ros.bag.errors import BagError
from cigocc_ros.bag.messages import bag_qos
from cigocc_ros.bag.reader import IndexedBag, SalvagedBag, open_bag, salvage_bag
from cigocc_ros.bag.repair import repair_bag
from cigocc_ros.bag.types import typestore

T0 = 1_000_000_000 * 10**9
STRING = "std_msgs/msg/String"


def write_bag(path: Path, storage: StoragePlugin = StoragePlugin.MCAP, zstd: bool = False) -> Path:
    """Messages on /small (latched) and /large, 10 ms apart: payloads of 1 to 90 kB, two of
    1.5 MB (a chunk of their own). rosbags closes a chunk after 1 MiB: about 8 chunks,
    compressed with zstd when asked."""
    store = typestore()
    rng = np.random.default_rng(7)
    sizes = rng.integers(1_000, 90_000, 120).tolist()
    sizes[30] = sizes[77] = 1_500_000
    writer = Writer(path, version=9, storage_plugin=storage)
    if zstd:
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        writer.set_custom_data("test.key", "kept by bag-repair")
        conns = {"/small": writer.add_connection("/small", STRING, typestore=store,
                                                 offered_qos_profiles=[bag_qos(transient_local=True, depth=1)]),
                 "/large": writer.add_connection("/large", STRING, typestore=store, offered_qos_profiles=[bag_qos()])}
        for i, n in enumerate(sizes):
            topic = "/large" if n > 20_000 else "/small"
            text = f"{i:05d}" + "".join(map(chr, rng.integers(97, 123, n)))  # not all one letter: zstd has work
            writer.write(conns[topic], T0 + i * 10**7, store.serialize_cdr(store.types[STRING](data=text), STRING))
    return path


def messages_of(reader) -> list[tuple[str, int, bytes]]:
    return [(c.topic, t, bytes(d)) for c, t, d in reader.messages()]


def read_intact(bag: Path) -> tuple[list, list[tuple[int, int]], set[str], bytes]:
    """(messages in time order, (end offset, message count) of each chunk, the chunks'
    compressions, the file's bytes) of an intact one-file mcap bag, as rosbags reads it."""
    with AnyReader([bag]) as reader:
        msgs = messages_of(reader)
    file = next(bag.glob("*.mcap"))
    reader = Reader(file)
    reader.open()
    chunks = [(c.chunk_start_offset + c.chunk_length, sum(c.channel_count.values())) for c in reader.storage.chunks]
    compressions = {c.compression for c in reader.storage.chunks}
    reader.close()
    return msgs, chunks, compressions, file.read_bytes()


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> dict:
    """The intact mcap bag, its messages in time order, the file offset where each ends, and
    the end offset and message count of each chunk (rosbags' index)."""
    root = tmp_path_factory.mktemp("recover")
    path = write_bag(root / "whole")
    msgs, chunks, compressions, data = read_intact(path)
    header_end = 8 + 9 + struct.unpack_from("<Q", data, 9)[0]
    ends = [data.find(raw) + len(raw) for _, _, raw in msgs]
    # The oracle's premises: strictly increasing stamps, each message found once, in order.
    assert len(chunks) >= 6 and compressions == {""} and [t for _, t, _ in msgs] == sorted({t for _, t, _ in msgs})
    assert all(data.count(raw) == 1 for _, _, raw in msgs) and ends == sorted(ends)
    return {"root": root, "path": path, "data": data, "msgs": msgs, "chunks": chunks,
            "header_end": header_end, "ends": ends}


def kept_by_cut(bag: dict, offset: int) -> int:
    """Messages whose bytes end at or before `offset`."""
    return sum(end <= offset for end in bag["ends"])


def in_whole_chunks(bag: dict, offset: int) -> int:
    """Messages in the chunks that end at or before `offset` (rosbags' chunk index)."""
    return sum(n for end, n in bag["chunks"] if end <= offset)


def cut_copy(bag: dict, offset: int, dst: Path, metadata: bool = True) -> Path:
    dst.mkdir(parents=True)
    (dst / "whole.mcap").write_bytes(bag["data"][:offset])
    if metadata:
        shutil.copy(bag["path"] / "metadata.yaml", dst / "metadata.yaml")
    return dst


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def cut_offsets(bag: dict) -> list[int]:
    """Just past the header, every chunk's end and a byte on either side of it, the middle of
    every chunk, the end of some messages inside chunks and a byte on either side, inside the
    summary, one byte short of the end, and 12 random offsets."""
    size, ends = len(bag["data"]), [end for end, _ in bag["chunks"]]
    starts = [bag["header_end"]] + ends[:-1]
    offsets = {bag["header_end"], bag["header_end"] + 1, size - 1, ends[-1] + 200}
    offsets |= {e + d for e in ends for d in (-1, 0, 1)} | {(s + e) // 2 for s, e in zip(starts, ends, strict=True)}
    offsets |= {e + d for e in bag["ends"][5::17] for d in (-1, 0, 1)}
    offsets |= set(np.random.default_rng(25).integers(bag["header_end"], size, 12).tolist())
    return sorted(o for o in offsets if bag["header_end"] <= o < size)


def test_a_cut_recording_keeps_every_complete_message(bag, tmp_path):
    """At any offset past the header: exactly the messages complete before the cut, in order,
    byte for byte, those of a chunk the cut runs through too; the input is not changed; the
    recovery line says where the file ends."""
    offsets = cut_offsets(bag)
    assert len(offsets) > 40
    for offset in offsets:
        folder = cut_copy(bag, offset, tmp_path / str(offset))
        before = digest(folder)
        with open_bag(folder) as reader:
            assert isinstance(reader, SalvagedBag), offset
            got = messages_of(reader)
            rec = reader.recovery
            assert rec is not None and rec.messages == len(got)
            line = rec.line()
        k = kept_by_cut(bag, offset)
        assert got == bag["msgs"][:k], (offset, len(got), k)
        assert "\n" not in line and f"recovered {k} " in line, line
        if offset < bag["chunks"][-1][0]:
            assert f"ends at byte {offset}" in line, line
        assert digest(folder) == before, offset  # nothing written to the input


def test_a_cut_zstd_recording_keeps_its_complete_chunks_and_more(tmp_path):
    """Chunks compressed with zstd: a cut keeps every complete chunk and what the decompressor
    makes of the first part of the cut one: always the messages in order, up to some point."""
    msgs, chunks, compressions, data = read_intact(write_bag(tmp_path / "whole", zstd=True))
    assert compressions == {"zstd"}
    starts = [c[0] for c in chunks]
    rng = np.random.default_rng(3)
    last = 0
    for offset in sorted({*(s + 40 for s in starts), *rng.integers(starts[0], chunks[-1][0], 10).tolist()}):
        (tmp_path / "cut.mcap").write_bytes(data[:offset])
        with open_bag(tmp_path / "cut.mcap") as cut:
            got = messages_of(cut)
        whole_chunks = sum(n for end, n in chunks if end <= offset)
        next_chunk = next((n for end, n in chunks if end > offset), 0)
        assert whole_chunks <= len(got) <= whole_chunks + next_chunk and got == msgs[: len(got)], offset
        last = max(last, len(got) - whole_chunks)
    assert last > 0  # some first part of a cut chunk gave messages


def test_the_recovered_connections_keep_type_definition_and_qos(bag, tmp_path):
    folder = cut_copy(bag, bag["chunks"][2][0] + 5, tmp_path / "cut")
    with open_bag(folder) as reader:
        topics = reader.topics
        assert set(topics) == {"/small", "/large"} and topics["/small"].msgtype == STRING
        small = topics["/small"].connections[0]
        assert "string data" in small.msgdef.data
        assert small.ext.offered_qos_profiles == [bag_qos(transient_local=True, depth=1)]
        assert sum(t.msgcount for t in topics.values()) == kept_by_cut(bag, bag["chunks"][2][0])
        assert reader.start_time == T0 and reader.end_time == bag["msgs"][kept_by_cut(bag, bag["chunks"][2][0]) - 1][1] + 1


def test_start_and_stop_select_by_time(bag, tmp_path):
    folder = cut_copy(bag, bag["chunks"][-2][0], tmp_path / "cut")
    start, stop = T0 + 25 * 10**7, T0 + 61 * 10**7
    with open_bag(folder) as reader:
        got = [(c.topic, t, bytes(d)) for c, t, d in reader.messages(start=start, stop=stop)]
        small = [c for c in reader.connections if c.topic == "/small"]
        only_small = [(c.topic, t) for c, t, _ in reader.messages(small)]
    assert got == [m for m in bag["msgs"] if start <= m[1] < stop]
    k = kept_by_cut(bag, bag["chunks"][-2][0])
    assert only_small == [(m[0], m[1]) for m in bag["msgs"][:k] if m[0] == "/small"]


def test_a_whole_bag_is_read_through_its_index(bag):
    with open_bag(bag["path"]) as reader:
        assert isinstance(reader, IndexedBag) and reader.recovery is None
        assert messages_of(reader) == bag["msgs"]


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3], ids=["mcap", "sqlite3"])
def test_a_bag_without_metadata_is_reindexed(storage, tmp_path):
    whole = write_bag(tmp_path / "whole", storage)
    with AnyReader([whole]) as reader:
        want = messages_of(reader)
    (whole / "metadata.yaml").unlink()
    with open_bag(whole) as reader:
        assert messages_of(reader) == want
        assert "no metadata.yaml" in reader.recovery.line() and not reader.recovery.cut
        assert {t: i.msgcount for t, i in reader.topics.items()} == {
            t: sum(1 for m in want if m[0] == t) for t in ("/small", "/large")}


def test_a_cut_sqlite3_file_is_one_error(tmp_path):
    whole = write_bag(tmp_path / "whole", StoragePlugin.SQLITE3)
    db = whole / "whole.db3"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    with pytest.raises(BagError, match=f"^{db}: .*malformed"), open_bag(whole):
        pass


@pytest.mark.parametrize("name", ["whole.mcap", "random.bin"])
def test_random_bytes_are_one_error(name, bag, tmp_path):
    folder = tmp_path / "bag"
    folder.mkdir()
    shutil.copy(bag["path"] / "metadata.yaml", folder)
    noise = folder / name
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    for path in (noise, folder) if name.endswith(".mcap") else (noise,):
        with pytest.raises(BagError, match=f"^{noise}: not a rosbag2 storage file"), open_bag(path):
            pass


def test_cut_inside_the_header_is_one_error(bag, tmp_path):
    folder = cut_copy(bag, bag["header_end"] - 3, tmp_path / "cut")
    with pytest.raises(BagError, match="inside its MCAP header"), open_bag(folder):
        pass


def test_a_damaged_chunk_is_skipped_and_the_rest_kept(bag, tmp_path):
    """A chunk whose first record claims more bytes than the chunk holds: the index is intact,
    so rosbags opens the bag and fails at that chunk (one BagError); salvage_bag skips it."""
    with_index = tmp_path / "damaged"
    shutil.copytree(bag["path"], with_index)
    data = bytearray(bag["data"])
    second = bag["chunks"][0][0]
    while data[second] != 0x06:  # the message index records after chunk 0: to the next chunk
        second += 9 + struct.unpack_from("<Q", data, second + 1)[0]
    records = second + 9 + 28 + 4 + struct.unpack_from("<I", data, second + 9 + 28)[0] + 8
    struct.pack_into("<Q", data, records + 1, 2**40)
    (with_index / "whole.mcap").write_bytes(bytes(data))
    n0, n1 = bag["chunks"][0][1], bag["chunks"][1][1]
    with pytest.raises(BagError, match="bag-repair"), open_bag(with_index) as reader:
        messages_of(reader)
    bag_ = salvage_bag(with_index)
    try:
        assert messages_of(bag_) == bag["msgs"][:n0] + bag["msgs"][n0 + n1:]
        assert len(bag_.recovery.files[0].damaged) == 1 and f"chunk at byte {second}" in bag_.recovery.line()
    finally:
        bag_.close()


def test_repair_writes_a_bag_other_tools_open(bag, tmp_path):
    offset = (bag["chunks"][3][0] + bag["chunks"][4][0]) // 2
    folder = cut_copy(bag, offset, tmp_path / "cut")
    before = digest(folder)
    summary = repair_bag(folder, tmp_path / "repaired")
    assert digest(folder) == before
    k = kept_by_cut(bag, offset)
    assert sum(summary.written.values()) == k and summary.storage == "mcap" and not summary.skipped_topics
    with AnyReader([tmp_path / "repaired"]) as reader:  # rosbags reads it through its index
        assert messages_of(reader) == bag["msgs"][:k]
        small = reader.topics["/small"].connections[0]
        assert small.ext.offered_qos_profiles == [bag_qos(transient_local=True, depth=1)]
        for conn, _, raw in reader.messages():
            assert reader.deserialize(raw, conn.msgtype).data  # the recorded definition works
    meta = (tmp_path / "repaired" / "metadata.yaml").read_text()
    assert "kept by bag-repair" in meta and f"message_count: {k}" in meta


def test_repair_to_sqlite3_and_back(tmp_path):
    whole = write_bag(tmp_path / "whole", StoragePlugin.SQLITE3)
    with AnyReader([whole]) as reader:
        want = messages_of(reader)
    (whole / "metadata.yaml").unlink()
    repair_bag(whole, tmp_path / "as-mcap", "mcap")
    repair_bag(tmp_path / "as-mcap" / "as-mcap.mcap", tmp_path / "as-sqlite", "sqlite3")
    with AnyReader([tmp_path / "as-sqlite"]) as reader:
        assert messages_of(reader) == want


def test_repair_never_writes_over_or_into_its_input(bag, tmp_path):
    folder = cut_copy(bag, bag["chunks"][1][0], tmp_path / "cut")
    before = digest(folder)
    with pytest.raises(BagError, match="exists"):
        repair_bag(folder, folder)
    with pytest.raises(BagError, match="inside the input bag"):
        repair_bag(folder, folder / "repaired")
    assert digest(folder) == before
    noise = tmp_path / "noise.mcap"
    noise.write_bytes(b"\x01" * 5000)
    with pytest.raises(BagError, match="not a rosbag2 storage file"):
        repair_bag(noise, tmp_path / "out")
    empty = cut_copy(bag, bag["header_end"] + 20, tmp_path / "early")  # inside the first chunk's header
    with pytest.raises(BagError, match="no complete message"):
        repair_bag(empty, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_bag_repair_command(bag, tmp_path, capsys):
    from cigocc_ros.cli.main import main

    offset = bag["chunks"][2][0] + 1000
    folder = cut_copy(bag, offset, tmp_path / "cut")
    k = kept_by_cut(bag, offset)
    assert main(["bag-repair", str(folder), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"recovered {k} complete messages") and f"ends at byte {offset}," in out[0]
    assert out[1] == f"wrote {tmp_path / 'out'} (mcap): {k} messages on 2 topics"
    assert main(["bag-repair", str(folder), str(tmp_path / "out")]) == 2  # never over an existing bag
    assert capsys.readouterr().err == f"error: {tmp_path / 'out'}: exists; bag-repair writes a new bag\n"
