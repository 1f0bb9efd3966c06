"""The journal's frames on disk: ``MAGIC`` (4 bytes), the payload's length (uint32 LE), a CRC-32 of length and
payload (uint32 LE), then the payload, one BSON document; and the readers that check every frame, report a damaged or
torn region (:class:`Damage`) and resynchronise on the next valid frame (legacy 0.1 segments: unframed BSON)."""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import bson

#: The first bytes of every frame.
MAGIC = b"\xa7SGJ"
_HEADER = struct.Struct("<4sII")  # magic, payload length, CRC-32 of the length's bytes and the payload
#: Largest payload a frame may announce (a larger length is damage): 1 GiB.
MAX_PAYLOAD = 1 << 30
SUFFIX, LEGACY_SUFFIX = ".log", ".bson"

Position = tuple[int, int]  # (segment number, byte offset in it)


@dataclass(frozen=True)
class Damage:
    """A region of a segment that holds no valid record: ``data`` is its bytes, ``reason`` says what was wrong."""

    segment: int
    start: int
    end: int
    reason: str
    data: bytes


Entry = Union[dict, Damage]


def frame(rec: dict[str, Any]) -> bytes:
    """A record as the journal stores it. Raises ``bson.errors.InvalidDocument`` (or ``OverflowError``) when the
    record cannot be encoded."""
    payload = bson.encode(rec)
    length = struct.pack("<I", len(payload))
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload, zlib.crc32(length))) + payload


def read_segment(path: Path, segment: int, offset: int, limit: int | None,
                  tail_is_damage: bool) -> Iterator[tuple[Entry, int]]:
    """The entries of one segment file from ``offset``, each with the offset after it (see :meth:`Journal.read`)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size if limit is None else limit
            if size <= offset:
                return
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                reader = _read_legacy if path.suffix == LEGACY_SUFFIX else _read_frames
                yield from reader(data, segment, offset, min(size, len(data)), tail_is_damage)
    except FileNotFoundError:  # trimmed meanwhile by the acknowledging reader
        return


def _valid_frame(data: mmap.mmap, at: int, size: int) -> tuple[int, str, bytes]:
    """``(end, "", payload)`` for a valid frame at ``at``, else ``(0, why not, b"")``; ``"torn"`` when it runs past
    ``size``."""
    if size - at < _HEADER.size:
        return 0, "torn", b""
    magic, length, crc = _HEADER.unpack_from(data, at)
    if magic != MAGIC:
        return 0, "no record starts here", b""
    if length > MAX_PAYLOAD:
        return 0, f"impossible length {length}", b""
    end = at + _HEADER.size + length
    if end > size:
        return 0, "torn", b""
    payload = data[at + _HEADER.size:end]
    if zlib.crc32(payload, zlib.crc32(data[at + 4:at + 8])) != crc:
        return 0, "checksum mismatch", b""
    return end, "", payload


def _read_frames(data: mmap.mmap, segment: int, offset: int, size: int,
                 tail_is_damage: bool) -> Iterator[tuple[Entry, int]]:
    at = offset
    while at < size:
        end, problem, payload = _valid_frame(data, at, size)
        if not problem:
            try:
                yield bson.decode(payload), end
                at = end
                continue
            except (bson.errors.InvalidBSON, ValueError) as exc:  # checksummed yet undecodable: written so
                problem = f"undecodable record ({exc})"
        following = _next_frame(data, at + 1, size)
        if following is None and problem == "torn" and not tail_is_damage:
            return  # a record being appended right now
        stop = size if following is None else following
        if following is None and problem != "torn":
            problem += " (and nothing valid after it)"
        yield Damage(segment, at, stop, problem, bytes(data[at:stop])), stop
        at = stop


def _next_frame(data: mmap.mmap, start: int, size: int) -> int | None:
    """The offset of the first valid frame at or after ``start``, or None."""
    at = data.find(MAGIC, start, size)
    while at != -1:
        if not _valid_frame(data, at, size)[1]:
            return at
        at = data.find(MAGIC, at + 1, size)
    return None


def _read_legacy(data: mmap.mmap, segment: int, offset: int, size: int,
                 tail_is_damage: bool) -> Iterator[tuple[Entry, int]]:
    """Segments of sacred-gpu 0.1: BSON documents back to back; after a damaged one nothing can be trusted."""
    at = offset
    while at < size:
        problem = ""
        if size - at < 5:
            problem = "torn"
        else:
            (length,) = struct.unpack_from("<i", data, at)
            if length < 5 or at + length > size:
                problem = "torn" if length >= 5 else f"impossible length {length}"
            else:
                try:
                    yield bson.decode(data[at:at + length]), at + length
                    at += length
                    continue
                except (bson.errors.InvalidBSON, ValueError) as exc:
                    problem = f"undecodable record ({exc})"
        if problem == "torn" and not tail_is_damage:
            return
        yield Damage(segment, at, size, problem + " (unchecksummed journal: the rest of the segment is set aside)",
                     bytes(data[at:size])), size
        return


def cut_message(position: Position, written: tuple) -> str:
    """What a journal cut short is missing: where it ends and where its run wrote up to."""
    return (f"the journal ends at {position[0]:06d}:{position[1]}, its run wrote up to "
            f"{written[0]:06d}:{written[1]}")
