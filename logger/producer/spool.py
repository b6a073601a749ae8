"""An append-only disk spool: events Kafka cannot take now wait here, in order, until replayed.

On disk, a spool directory holds:

- `segment-<number, 20 digits>.spool`: records in append order; a new segment starts when the
  next record would take the current one past `segment_bytes`, so names sort in replay order.
- `cursor`: the (segment number, byte offset) of the oldest record not yet committed, as two u64
  and their crc32, replaced atomically on every commit. Segments before the cursor's are deleted.
- `lock`: held with `flock` while a `DiskSpool` is open; it holds the owner's pid.
- `quarantine.spool`: records Kafka refused for good, set aside with the reason so that replay
  goes on past them; never replayed, bounded by `quarantine_max_bytes`, read with
  `read_quarantine`. Its frames have their own magic byte, and their payload is
  `quarantined at (f64 unix time) | reason (u32 length, UTF-8) | record` (the record as above).

A record is one frame: `magic (u8) | payload length (u32) | crc32(payload) (u32) | payload`, and
the payload is `topic | key | headers | value`, each string or bytes preceded by its u32 length
(key length `0xFFFFFFFF` means no key, unlike an empty key; headers by their u32 count). All
integers are little-endian.

Recovery, on open, reads every retained segment once. A frame that ends past the end of its file
(the process was killed mid-write) or whose header is unreadable ends the segment: the file is
truncated there. A frame whose checksum fails is skipped if the frame after it is intact, so one
damaged record costs only itself; otherwise it ends the segment too. Records before the cursor
are never replayed again; everything after it is, so a crash between sending a batch and
committing it sends that batch twice, and nothing is lost.

Appends are written straight to the OS (no user-space buffer), so a SIGKILL loses nothing that
`append` returned True for. Nothing is fsynced except the cursor: this survives process crashes,
not power loss.

>>> import tempfile
>>> with DiskSpool(Path(tempfile.mkdtemp()), max_bytes=1 << 20) as spool:
...     spool.append(SpooledRecord("events", None, b"{}", (("ce_id", b"1"),)))
...     batch = spool.read_batch(max_records=100)
...     spool.commit(len(batch))
...     (len(batch), spool.pending_records)
True
(1, 0)
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import re
import struct
import time
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

# High nibble marks a frame (A: a spooled record, B: a quarantined one), low nibble is the
# format version (1).
_MAGIC = 0xA1
_QUARANTINE_MAGIC = 0xB1
_QUARANTINE_PREFIX = struct.Struct("<dI")  # quarantined at (unix time), reason length
QUARANTINE_FILE_NAME = "quarantine.spool"
_FRAME_HEADER = struct.Struct("<BII")  # magic, payload length, crc32 of the payload
_U32 = struct.Struct("<I")
_NO_KEY = 0xFFFF_FFFF
_POSITION = struct.Struct("<QQ")  # the cursor: segment number, byte offset
_SEGMENT_NAME = re.compile(r"segment-(\d{20})\.spool")
# Large enough that one pread serves hundreds of typical (~1 KiB) events.
_READ_CHUNK_BYTES = 1024 * 1024
# The spool holds inference payloads: readable by the owner only.
_FILE_MODE = 0o600


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """One Kafka record waiting in the spool."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """A record Kafka refused for good, as `read_quarantine` finds it."""

    record: SpooledRecord
    reason: str
    quarantined_at: float  # unix time


class SpoolCorruptError(Exception):
    """The spool cannot be read without guessing; recoverable damage is repaired instead."""


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    size_bytes: int  # bytes of intact frames; appends go after them
    skipped_offsets: frozenset[int] = field(default_factory=frozenset)  # damaged frames


@dataclass(frozen=True, slots=True)
class _SegmentScan:
    valid_end: int
    skipped_offsets: frozenset[int]
    resume_offset: int  # the first frame boundary at or before the cursor
    pending_records: int
    pending_bytes: int


class DiskSpool:
    """A bounded, crash-safe FIFO of `SpooledRecord`s in a directory. Not thread-safe.

    `max_bytes` bounds the uncommitted frames; committed ones stay on disk until their whole
    segment is consumed, so the directory can hold up to `segment_bytes` more.
    """

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int = 64 * 1024 * 1024,
        quarantine_max_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        if max_bytes <= 0 or segment_bytes <= 0 or quarantine_max_bytes <= 0:
            raise ValueError(
                f"max_bytes ({max_bytes}), segment_bytes ({segment_bytes}) and "
                f"quarantine_max_bytes ({quarantine_max_bytes}) must be positive"
            )
        self._directory = directory
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._cursor_path = directory / "cursor"
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(directory / "lock")
        self._closed = False
        self._quarantine_path = directory / QUARANTINE_FILE_NAME
        self._quarantine_max_bytes = quarantine_max_bytes
        self._quarantine_bytes = 0
        self._quarantine_fd: int | None = None  # opened on first use
        self._segments: list[_Segment] = []  # [0] holds the cursor, [-1] takes appends
        self._read_offset = 0
        self._pending_records = 0
        self._pending_bytes = 0
        # (segment number, frame end, cumulative frame bytes) for each record of the last batch
        self._batch: list[tuple[int, int, int]] = []
        self._active_damaged = False  # a failed write left bytes we could not truncate away
        self._write_failing = False
        try:
            self._recover()
            self._quarantine_bytes = _recover_quarantine(self._quarantine_path)
            self._fd = _open_segment(self._segments[-1].path)
        except BaseException:
            os.close(self._lock_fd)
            raise

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def pending_records(self) -> int:
        return self._pending_records

    @property
    def quarantine_bytes(self) -> int:
        """Bytes in the quarantine file."""
        return self._quarantine_bytes

    @property
    def pending_bytes(self) -> int:
        """On-disk bytes (frame headers included) of the records not yet committed."""
        return self._pending_bytes

    def append(self, record: SpooledRecord) -> bool:
        """Write `record` after all others; False, writing nothing, if it does not fit."""
        self._check_open()
        payload = _encode(record)
        frame_bytes = _FRAME_HEADER.size + len(payload)
        if self._pending_bytes + frame_bytes > self._max_bytes:
            return False
        active = self._segments[-1]
        try:
            if self._active_damaged or (
                active.size_bytes and active.size_bytes + frame_bytes > self._segment_bytes
            ):
                self._roll()
                active = self._segments[-1]
            header = _FRAME_HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload))
            # Written through, unbuffered: measured on 1 KiB frames, writev takes 0.75 µs where
            # a buffered file takes 0.63 µs (both ~4 µs while the kernel allocates fresh page
            # cache). For ~0.1 µs, a SIGKILL loses nothing even between flush() calls.
            written = os.writev(self._fd, (header, payload))
            if written != frame_bytes:
                raise OSError(f"short write: {written} of {frame_bytes} bytes")
        except OSError as error:
            self._undo_write(error)
            return False
        self._write_failing = False
        active.size_bytes += frame_bytes
        self._pending_records += 1
        self._pending_bytes += frame_bytes
        return True

    def quarantine(self, record: SpooledRecord, reason: str) -> bool:
        """Set `record` aside in the quarantine file with `reason`, never to be replayed;
        False, writing nothing, if it does not fit (or the write fails)."""
        self._check_open()
        reason_bytes = reason.encode()
        prefix = _QUARANTINE_PREFIX.pack(time.time(), len(reason_bytes))
        payload = b"".join((prefix, reason_bytes, _encode(record)))
        frame_bytes = _FRAME_HEADER.size + len(payload)
        if self._quarantine_bytes + frame_bytes > self._quarantine_max_bytes:
            return False
        header = _FRAME_HEADER.pack(_QUARANTINE_MAGIC, len(payload), zlib.crc32(payload))
        try:
            if self._quarantine_fd is None:
                self._quarantine_fd = _open_segment(self._quarantine_path)
            written = os.writev(self._quarantine_fd, (header, payload))
            if written != frame_bytes:
                raise OSError(f"short write: {written} of {frame_bytes} bytes")
        except OSError as error:
            log.warning("spool %s: could not quarantine a record: %s", self._directory, error)
            with contextlib.suppress(OSError):  # a torn frame would hide the ones after it
                os.truncate(self._quarantine_path, self._quarantine_bytes)
            return False
        self._quarantine_bytes += frame_bytes
        return True

    def read_batch(self, max_records: int, max_bytes: int = 4 * 1024 * 1024) -> list[SpooledRecord]:
        """The oldest uncommitted records, at most `max_records` and `max_bytes` (but at least
        one); reading again before `commit` returns the same ones."""
        self._check_open()
        if max_records <= 0 or max_bytes <= 0:
            raise ValueError(f"max_records ({max_records}) and max_bytes must be positive")
        records: list[SpooledRecord] = []
        self._batch = []
        batch_bytes = 0
        with contextlib.closing(self._pending_frames()) as frames:
            for segment_number, start, end, payload in frames:
                frame_bytes = end - start
                if records and batch_bytes + frame_bytes > max_bytes:
                    break
                records.append(_decode(payload))
                batch_bytes += frame_bytes
                self._batch.append((segment_number, end, batch_bytes))
                if len(records) == max_records:
                    break
        return records

    def commit(self, count: int) -> None:
        """Mark the first `count` records of the last `read_batch` as delivered, durably."""
        self._check_open()
        if not 0 <= count <= len(self._batch):
            raise ValueError(
                f"commit({count}), but the last read_batch returned {len(self._batch)} record(s)"
            )
        if count == 0:
            return
        segment_number, offset, committed_bytes = self._batch[count - 1]
        index = next(i for i, s in enumerate(self._segments) if s.number == segment_number)
        last = len(self._segments) - 1
        while index < last and offset == self._segments[index].size_bytes:
            index, offset = index + 1, 0
        if count == self._pending_records and self._segments[-1].size_bytes:
            # Drained: start afresh so the consumed segment can go and the spool stays small.
            self._roll()
            index, offset = len(self._segments) - 1, 0
        _write_cursor(self._cursor_path, self._segments[index].number, offset)
        for segment in self._segments[:index]:
            segment.path.unlink(missing_ok=True)
        del self._segments[:index]
        self._read_offset = offset
        self._pending_records -= count
        self._pending_bytes -= committed_bytes
        self._batch = []

    def flush(self) -> None:
        """Nothing to do: appends are written through to the OS (see `append`)."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.close(self._fd)
        if self._quarantine_fd is not None:
            os.close(self._quarantine_fd)
        os.close(self._lock_fd)  # releases the flock

    def __enter__(self) -> DiskSpool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"spool {self._directory} is closed")

    def _segment_path(self, number: int) -> Path:
        return self._directory / f"segment-{number:020d}.spool"

    def _roll(self) -> None:
        number = self._segments[-1].number + 1
        path = self._segment_path(number)
        fd = _open_segment(path)
        os.close(self._fd)
        self._fd = fd
        self._segments.append(_Segment(number, path, 0))
        self._active_damaged = False

    def _undo_write(self, error: OSError) -> None:
        """Cut off whatever part of a failed frame reached the file (a full disk, mostly)."""
        if not self._write_failing:
            log.warning("spool %s: write failed, refusing events: %s", self._directory, error)
        self._write_failing = True
        try:
            os.ftruncate(self._fd, self._segments[-1].size_bytes)
        except OSError:
            # Appending after a torn frame would hide the records behind it from recovery.
            self._active_damaged = True
        else:
            self._active_damaged = False

    def _pending_frames(self) -> Generator[tuple[int, int, int, bytes], None, None]:
        """(segment number, frame start, frame end, payload) of each uncommitted record."""
        offset = self._read_offset
        for segment in self._segments:
            if offset < segment.size_bytes:
                fd = os.open(segment.path, os.O_RDONLY)
                try:
                    for start, end, payload in _read_frames(fd, segment, offset):
                        if start not in segment.skipped_offsets:
                            yield segment.number, start, end, payload
                finally:
                    os.close(fd)
            offset = 0

    def _recover(self) -> None:
        numbers = sorted(
            int(match[1])
            for path in self._directory.iterdir()
            if (match := _SEGMENT_NAME.fullmatch(path.name))
        )
        cursor = _read_cursor(self._cursor_path)
        cursor_number, cursor_offset = cursor or (numbers[0] if numbers else 1, 0)
        for number in numbers:
            if number < cursor_number:  # consumed; the process died before deleting it
                self._segment_path(number).unlink(missing_ok=True)
        numbers = [number for number in numbers if number >= cursor_number]
        if not numbers or numbers[0] != cursor_number:
            cursor_offset = 0
        if not numbers:
            numbers = [cursor_number]
            os.close(_open_segment(self._segment_path(cursor_number)))
        for number in numbers:
            path = self._segment_path(number)
            scan = _scan_segment(path, cursor_offset if not self._segments else 0)
            if not self._segments:
                self._read_offset = scan.resume_offset
            self._segments.append(_Segment(number, path, scan.valid_end, scan.skipped_offsets))
            self._pending_records += scan.pending_records
            self._pending_bytes += scan.pending_bytes


def read_quarantine(directory: Path) -> Iterator[QuarantinedRecord]:
    """The records set aside in a spool directory's quarantine file, oldest first; a torn
    or damaged frame ends the reading (a `DiskSpool` opened on the directory cuts it off)."""
    path = directory / QUARANTINE_FILE_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    offset = 0
    while (frame := _frame_at(data, offset, _QUARANTINE_MAGIC)) is not None and frame[1]:
        end = frame[0]
        payload = data[offset + _FRAME_HEADER.size : end]
        quarantined_at, reason_length = _QUARANTINE_PREFIX.unpack_from(payload)
        record_start = _QUARANTINE_PREFIX.size + reason_length
        reason = payload[_QUARANTINE_PREFIX.size : record_start].decode(errors="replace")
        yield QuarantinedRecord(_decode(payload[record_start:]), reason, quarantined_at)
        offset = end


def _recover_quarantine(path: Path) -> int:
    """Bytes of intact frames in the quarantine file; anything after them is cut off."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        offset = 0
        while (frame := _frame_at(data, offset, _QUARANTINE_MAGIC)) is not None and frame[1]:
            offset = frame[0]
    if offset < size:
        log.warning("quarantine %s: dropping %d damaged byte(s) at its end", path, size - offset)
        os.truncate(path, offset)
    return offset


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise BlockingIOError(
            error.errno,
            f"spool directory {path.parent} is in use by another process (pid {owner})",
            str(path),
        ) from None
    except BaseException:
        os.close(fd)
        raise
    # Only for the message above: the flock, not this pid, is what guards the directory.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _open_segment(path: Path) -> int:
    # O_APPEND: after a failed write is truncated away, the next one lands at the new end.
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _FILE_MODE)


def _read_cursor(path: Path) -> tuple[int, int] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SpoolCorruptError(f"cannot read the spool cursor {path}: {error}") from error
    position, checksum = data[: _POSITION.size], data[_POSITION.size :]
    if len(checksum) == _U32.size and _U32.pack(zlib.crc32(position)) == checksum:
        number, offset = _POSITION.unpack(position)
        return number, offset
    log.warning("spool cursor %s is damaged; replaying from the oldest segment", path)
    return None


def _write_cursor(path: Path, segment_number: int, offset: int) -> None:
    position = _POSITION.pack(segment_number, offset)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    try:
        os.write(fd, position + _U32.pack(zlib.crc32(position)))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _scan_segment(path: Path, cursor_offset: int) -> _SegmentScan:
    """Check every frame of a segment once; truncate the file after its last intact frame."""
    size = path.stat().st_size
    if size == 0:
        return _SegmentScan(0, frozenset(), 0, 0, 0)
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        scan = _scan(data, cursor_offset)
    if scan.valid_end < size:
        log.warning(
            "spool segment %s: dropping %d damaged byte(s) at its end",
            path,
            size - scan.valid_end,
        )
        os.truncate(path, scan.valid_end)
    if scan.skipped_offsets:
        log.warning(
            "spool segment %s: skipping %d damaged record(s)", path, len(scan.skipped_offsets)
        )
    return scan


def _scan(data: mmap.mmap | bytes, cursor_offset: int) -> _SegmentScan:
    offset = 0
    skipped: set[int] = set()
    resume_offset: int | None = None
    records = frame_bytes = 0
    while (frame := _frame_at(data, offset)) is not None:
        end, intact = frame
        if not intact:
            following = _frame_at(data, end)
            if following is None or not following[1]:
                break
            skipped.add(offset)
        # A cursor inside a frame (it should never be) replays that frame: a duplicate, not a loss.
        if end > cursor_offset:
            if resume_offset is None:
                resume_offset = offset
            if intact:
                records += 1
                frame_bytes += end - offset
        offset = end
    resume = offset if resume_offset is None else resume_offset
    return _SegmentScan(offset, frozenset(skipped), resume, records, frame_bytes)


def _frame_at(
    data: mmap.mmap | bytes, offset: int, expected_magic: int = _MAGIC
) -> tuple[int, bool] | None:
    """(frame end, checksum matches) if a whole frame starts at `offset`, else None."""
    payload_start = offset + _FRAME_HEADER.size
    if payload_start > len(data):
        return None
    magic, length, checksum = _FRAME_HEADER.unpack_from(data, offset)
    end = payload_start + length
    if magic != expected_magic or end > len(data):
        return None
    return end, zlib.crc32(data[payload_start:end]) == checksum


def _read_frames(fd: int, segment: _Segment, offset: int) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, payload) of the frames from `offset` to the segment's end, read in chunks.

    Checksums are not verified again: recovery checked older frames, and this process wrote
    the newer ones through the page cache.
    """
    end_of_data = segment.size_bytes
    chunk = b""
    chunk_start = offset
    while offset < end_of_data:
        if offset + _FRAME_HEADER.size > chunk_start + len(chunk):
            chunk = _pread(fd, segment, offset, min(_READ_CHUNK_BYTES, end_of_data - offset))
            chunk_start = offset
        _, length, _ = _FRAME_HEADER.unpack_from(chunk, offset - chunk_start)
        end = offset + _FRAME_HEADER.size + length
        if end > chunk_start + len(chunk):
            size = min(max(_READ_CHUNK_BYTES, end - offset), end_of_data - offset)
            chunk = _pread(fd, segment, offset, size)
            chunk_start = offset
        yield offset, end, chunk[offset - chunk_start + _FRAME_HEADER.size : end - chunk_start]
        offset = end


def _pread(fd: int, segment: _Segment, offset: int, size: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise SpoolCorruptError(f"{segment.path} is shorter than written; was it changed?")
    return data


def _encode(record: SpooledRecord) -> bytes:
    topic = record.topic.encode()
    parts = [_U32.pack(len(topic)), topic]
    if record.key is None:
        parts.append(_U32.pack(_NO_KEY))
    else:
        parts += (_U32.pack(len(record.key)), record.key)
    parts.append(_U32.pack(len(record.headers)))
    for name, value in record.headers:
        name_bytes = name.encode()
        parts += (_U32.pack(len(name_bytes)), name_bytes, _U32.pack(len(value)), value)
    parts.append(record.value)
    return b"".join(parts)


def _decode(payload: bytes) -> SpooledRecord:
    # Written out field by field: a helper call per field made replay half as fast.
    unpack = _U32.unpack_from
    (length,) = unpack(payload, 0)
    position = _U32.size + length
    topic = payload[_U32.size : position].decode()
    (length,) = unpack(payload, position)
    position += _U32.size
    key = None
    if length != _NO_KEY:
        key = payload[position : position + length]
        position += length
    (count,) = unpack(payload, position)
    position += _U32.size
    headers = []
    for _ in range(count):
        (length,) = unpack(payload, position)
        position += _U32.size + length
        name = payload[position - length : position].decode()
        (length,) = unpack(payload, position)
        position += _U32.size + length
        headers.append((name, payload[position - length : position]))
    return SpooledRecord(topic, key, payload[position:], tuple(headers))
