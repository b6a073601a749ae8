"""The disk spool on real files: order, limits, commits, recovery after damage or SIGKILL."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from logger.producer.spool import (
    QUARANTINE_FILE_NAME,
    DiskSpool,
    SpoolCorruptError,
    SpooledRecord,
    read_quarantine,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def numbered(count: int, start: int = 0, size_bytes: int = 40) -> list[SpooledRecord]:
    return [
        SpooledRecord("events", f"k{i}".encode(), str(i).encode().ljust(size_bytes, b"."), ())
        for i in range(start, start + count)
    ]


def append_all(spool: DiskSpool, records: list[SpooledRecord]) -> None:
    for record in records:
        assert spool.append(record)


def drain(spool: DiskSpool, batch_records: int = 7) -> list[SpooledRecord]:
    drained: list[SpooledRecord] = []
    while batch := spool.read_batch(batch_records):
        drained += batch
        spool.commit(len(batch))
    return drained


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("segment-*.spool"))


def frame_offsets(path: Path) -> list[int]:
    """Start of each frame in a segment: magic (1 byte), payload length (4), crc32 (4), payload."""
    data = path.read_bytes()
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += 9 + int.from_bytes(data[offset + 1 : offset + 5], "little")
    return offsets


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    records = [
        SpooledRecord("events", None, b"no key", ()),
        SpooledRecord("events", b"", b"empty key", ()),
        SpooledRecord("events", b"key", b"", (("ce_id", b"1"),)),
        SpooledRecord(
            "tópico-ü",
            bytes(range(256)),
            bytes(reversed(range(256))) * 3,
            (
                ("ce_id", b"abc"),
                ("content-type", b"application/json"),
                ("empty", b""),
                ("ü", b"\0"),
            ),
        ),
    ]
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        append_all(spool, records)
        assert spool.read_batch(100) == records
        assert spool.pending_records == len(records)


def test_order_survives_segment_rolls(tmp_path: Path) -> None:
    records = numbered(50)
    with DiskSpool(tmp_path, max_bytes=MiB, segment_bytes=200) as spool:
        append_all(spool, records)
        assert len(segment_files(tmp_path)) > 10
        assert drain(spool) == records


def test_read_batch_repeats_until_committed(tmp_path: Path) -> None:
    records = numbered(10)
    with DiskSpool(tmp_path, max_bytes=MiB, segment_bytes=200) as spool:
        append_all(spool, records)
        assert spool.read_batch(4) == records[:4]
        assert spool.read_batch(4) == records[:4]
        spool.commit(3)
        assert spool.read_batch(4) == records[3:7]
        assert spool.pending_records == 7


def test_read_batch_stops_at_max_bytes_but_returns_at_least_one(tmp_path: Path) -> None:
    small, large = numbered(1, size_bytes=10)[0], numbered(1, start=1, size_bytes=5000)[0]
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        append_all(spool, [small, small, large, small])
        assert spool.read_batch(100, max_bytes=100) == [small, small]
        spool.commit(2)
        assert spool.read_batch(100, max_bytes=100) == [large]


def test_commit_deletes_consumed_segments(tmp_path: Path) -> None:
    with DiskSpool(tmp_path, max_bytes=MiB, segment_bytes=200) as spool:
        append_all(spool, numbered(20))
        before = segment_files(tmp_path)
        spool.commit(len(spool.read_batch(10)))
        after = segment_files(tmp_path)
        assert after == [path for path in before if path >= after[0]]
        assert len(after) < len(before)
        drain(spool)
        # Drained: one fresh, empty segment is all that is left.
        assert [path.stat().st_size for path in segment_files(tmp_path)] == [0]
        assert (spool.pending_records, spool.pending_bytes) == (0, 0)


def test_commit_more_than_was_read_is_refused(tmp_path: Path) -> None:
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        append_all(spool, numbered(5))
        spool.read_batch(2)
        with pytest.raises(ValueError, match="returned 2 record"):
            spool.commit(3)


def test_full_spool_refuses_appends_until_drained(tmp_path: Path) -> None:
    record = numbered(1)[0]
    with DiskSpool(tmp_path / "probe", max_bytes=MiB) as probe:
        probe.append(record)
        frame_bytes = probe.pending_bytes
    with DiskSpool(tmp_path / "full", max_bytes=3 * frame_bytes + frame_bytes // 2) as spool:
        assert [spool.append(record) for _ in range(4)] == [True, True, True, False]
        assert spool.pending_bytes == 3 * frame_bytes
        assert len(drain(spool)) == 3
        assert spool.append(record)
        assert spool.read_batch(10) == [record]


def test_a_quarantined_record_keeps_its_reason_and_is_never_replayed(tmp_path: Path) -> None:
    records = numbered(3)
    refused = SpooledRecord("events", b"big", b"x" * 5000, (("ce_id", b"big"),))
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        append_all(spool, records)
        assert spool.quarantine(refused, "refused by Kafka: MSG_SIZE_TOO_LARGE")
        assert spool.pending_records == 3, "the quarantine is not part of the queue"
        assert drain(spool) == records
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        assert spool.pending_records == 0
        assert spool.quarantine(records[0], "second reason ü")
    kept = list(read_quarantine(tmp_path))
    assert [entry.record for entry in kept] == [refused, records[0]]
    assert [entry.reason for entry in kept] == [
        "refused by Kafka: MSG_SIZE_TOO_LARGE",
        "second reason ü",
    ]
    assert kept[0].quarantined_at <= kept[1].quarantined_at
    assert (tmp_path / QUARANTINE_FILE_NAME).stat().st_mode & 0o777 == 0o600


def test_the_quarantine_is_bounded(tmp_path: Path) -> None:
    record = numbered(1, size_bytes=1000)[0]
    with DiskSpool(tmp_path, max_bytes=MiB, quarantine_max_bytes=2500) as spool:
        assert [spool.quarantine(record, "r") for _ in range(3)] == [True, True, False]
        assert spool.quarantine_bytes < 2500
    with DiskSpool(tmp_path, max_bytes=MiB, quarantine_max_bytes=2500) as spool:
        assert not spool.quarantine(record, "r"), "the bound holds across restarts"
    assert len(list(read_quarantine(tmp_path))) == 2


def test_a_torn_quarantine_tail_is_cut_off_on_open(tmp_path: Path) -> None:
    first, second, third = numbered(3)
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        assert spool.quarantine(first, "one") and spool.quarantine(second, "two")
    path = tmp_path / QUARANTINE_FILE_NAME
    os.truncate(path, path.stat().st_size - 3)
    assert [entry.record for entry in read_quarantine(tmp_path)] == [first]
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        assert spool.quarantine(third, "three")
    assert [entry.reason for entry in read_quarantine(tmp_path)] == ["one", "three"]


def test_no_quarantine_file_reads_as_empty(tmp_path: Path) -> None:
    with DiskSpool(tmp_path, max_bytes=MiB):
        pass
    assert list(read_quarantine(tmp_path)) == []
    assert not (tmp_path / QUARANTINE_FILE_NAME).exists(), "made only when needed"


def test_reopening_resumes_at_the_cursor(tmp_path: Path) -> None:
    records = numbered(30)
    with DiskSpool(tmp_path, max_bytes=MiB, segment_bytes=300) as spool:
        append_all(spool, records)
        spool.commit(len(spool.read_batch(12)))
        pending = (spool.pending_records, spool.pending_bytes)
    with DiskSpool(tmp_path, max_bytes=MiB, segment_bytes=300) as spool:
        assert (spool.pending_records, spool.pending_bytes) == pending
        assert drain(spool) == records[12:]


def test_uncommitted_batch_is_replayed_after_reopening(tmp_path: Path) -> None:
    records = numbered(5)
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        append_all(spool, records)
        spool.read_batch(5)
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        assert spool.read_batch(10) == records


def test_torn_tail_loses_only_the_last_record(tmp_path: Path) -> None:
    records = numbered(5)
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        append_all(spool, records)
    [segment] = segment_files(tmp_path)
    os.truncate(segment, segment.stat().st_size - 3)
    extra = numbered(1, start=99)
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        assert spool.pending_records == 4
        append_all(spool, extra)
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        assert drain(spool) == records[:4] + extra


def test_bad_checksum_mid_segment_skips_only_that_record(tmp_path: Path) -> None:
    records = numbered(5)
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        append_all(spool, records)
        frame_bytes = spool.pending_bytes // 5
    [segment] = segment_files(tmp_path)
    data = bytearray(segment.read_bytes())
    data[frame_offsets(segment)[2] + 20] ^= 0xFF  # a byte of the third record's payload
    segment.write_bytes(data)
    for _ in range(2):  # the damage is found again, and handled the same, on every open
        with DiskSpool(tmp_path, max_bytes=MiB) as spool:
            assert (spool.pending_records, spool.pending_bytes) == (4, 4 * frame_bytes)
            assert spool.read_batch(10) == records[:2] + records[3:]
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        append_all(spool, numbered(1, start=5))
        assert drain(spool) == records[:2] + records[3:] + numbered(1, start=5)


def test_unreadable_frame_header_ends_only_its_segment(tmp_path: Path) -> None:
    records = numbered(6)
    with DiskSpool(tmp_path, max_bytes=MiB, segment_bytes=210) as spool:
        append_all(spool, records)
    first = segment_files(tmp_path)[0]
    assert len(frame_offsets(first)) == 3
    data = bytearray(first.read_bytes())
    data[frame_offsets(first)[1]] = 0  # the magic byte of the second record
    first.write_bytes(data)
    with DiskSpool(tmp_path, max_bytes=MiB, segment_bytes=210) as spool:
        assert drain(spool) == records[:1] + records[3:]


def test_damaged_cursor_replays_from_the_oldest_segment(tmp_path: Path) -> None:
    records = numbered(10)
    with DiskSpool(tmp_path, max_bytes=MiB, segment_bytes=210) as spool:
        append_all(spool, records)
        assert len(frame_offsets(segment_files(tmp_path)[0])) == 3
        spool.commit(len(spool.read_batch(4)))  # mid second segment
    (tmp_path / "cursor").write_bytes(b"garbage")
    with DiskSpool(tmp_path, max_bytes=MiB, segment_bytes=210) as spool:
        # Duplicates from the start of the oldest segment kept, never a loss.
        assert drain(spool) == records[3:]


def test_cursor_that_cannot_be_read_raises(tmp_path: Path) -> None:
    DiskSpool(tmp_path, max_bytes=MiB).close()
    (tmp_path / "cursor").mkdir()
    with pytest.raises(SpoolCorruptError, match="cursor"):
        DiskSpool(tmp_path, max_bytes=MiB)


def test_second_spool_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    with (
        DiskSpool(tmp_path, max_bytes=MiB),
        pytest.raises(BlockingIOError, match=f"pid {os.getpid()}"),
    ):
        DiskSpool(tmp_path, max_bytes=MiB)
    DiskSpool(tmp_path, max_bytes=MiB).close()


def test_closed_spool_refuses_work(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=MiB)
    spool.close()
    spool.close()
    with pytest.raises(ValueError, match="closed"):
        spool.append(numbered(1)[0])


def test_failed_write_is_undone_and_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = numbered(3)
    real_writev = os.writev

    def disk_full(fd: int, buffers: Sequence[bytes]) -> int:
        real_writev(fd, [b"".join(buffers)[:7]])  # part of the frame reaches the file
        raise OSError(errno.ENOSPC, "No space left on device")

    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        assert spool.append(records[0])
        monkeypatch.setattr(os, "writev", disk_full)
        assert not spool.append(records[1])
        monkeypatch.setattr(os, "writev", real_writev)
        assert spool.append(records[2])
    with DiskSpool(tmp_path, max_bytes=MiB) as spool:
        assert drain(spool) == [records[0], records[2]]


CHILD = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path
    from logger.producer.spool import DiskSpool, SpooledRecord

    spool = DiskSpool(Path(sys.argv[1]), max_bytes=1 << 30, segment_bytes=4096)
    appended = committed = 0
    while True:
        spool.append(SpooledRecord("events", None, str(appended).encode() * 20, ()))
        spool.flush()
        appended += 1
        os.write(1, b"appended %d\\n" % appended)  # one write: a kill cannot cut a line
        if appended % 50 == 0:
            spool.commit(len(spool.read_batch(30)))
            committed += 30
            os.write(1, b"committed %d\\n" % committed)
    """
)


def test_sigkill_loses_nothing_that_was_appended(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None and child.stderr is not None
    lines = [child.stdout.readline() for _ in range(600)]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    rest = child.stdout.read()  # not communicate(): it would skip what readline() buffered
    errors = child.stderr.read().decode(errors="replace")
    child.stdout.close()
    child.stderr.close()
    counters = {"appended": 0, "committed": 0}
    for line in lines + rest.splitlines():
        fields = line.split()
        assert len(fields) == 2, f"odd line {line!r} from the child; its stderr: {errors!r}"
        counters[fields[0].decode()] = int(fields[1])
    assert counters["committed"] > 0

    with DiskSpool(tmp_path, max_bytes=1 << 30, segment_bytes=4096) as spool:
        values = [record.value for record in drain(spool, batch_records=1000)]
    first = int(values[0][: len(values[0]) // 20])
    # The cursor is at a commit: the last one printed, or one the kill stopped it printing.
    assert first in (counters["committed"], counters["committed"] + 30)
    # Every append that returned is there, in order; one more may have landed before the kill.
    expected = [str(i).encode() * 20 for i in range(first, counters["appended"] + 1)]
    assert values in (expected[:-1], expected)
