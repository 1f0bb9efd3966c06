"""The MongoDB wire protocol as far as :mod:`tests.support.wire_server` needs it: OP_MSG in, OP_MSG out.

A message is a 16-byte header (``messageLength``, ``requestID``, ``responseTo``, ``opCode``; little-endian int32)
and a body. An OP_MSG (opcode 2013) body is ``flagBits`` (uint32) and sections:

* kind 0: one BSON document, the command body;
* kind 1: a document sequence: int32 size (counting itself), a cstring identifier ("documents", "updates",
  "deletes"), then BSON documents up to the section's end. Drivers send bulk writes this way; the sequence is
  merged into the command body under its identifier, as the server does.

Flag bit 0 (checksumPresent) means a CRC-32C trails the sections; it is skipped, not checked. Flag bit 1
(moreToCome) on a request means the client wants no reply (an unacknowledged write).

PyMongo 4.20 sends nothing but OP_MSG, its handshake included, and reads nothing but OP_MSG. Older drivers
(pymongo before 4.1x) open each connection with an OP_QUERY (opcode 2004) ``isMaster`` on ``admin.$cmd`` and
expect an OP_REPLY (opcode 1): that much of the legacy protocol is spoken too, for commands only. OP_COMPRESSED
is not (the server advertises no compressors); any other opcode is a :class:`ProtocolError`.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

import bson
from bson.codec_options import CodecOptions, DatetimeConversion

OP_MSG = 2013
OP_QUERY = 2004
OP_REPLY = 1
CHECKSUM_PRESENT = 1
MORE_TO_COME = 1 << 1
#: The largest message accepted (the server's maxMessageSizeBytes, plus room for the header).
MAX_MESSAGE_SIZE = 48_000_000 + 16 * 1024

_HEADER = struct.Struct("<iiii")
_INT32 = struct.Struct("<i")
_UINT32 = struct.Struct("<I")
_QUERY_COUNTS = struct.Struct("<ii")  # numberToSkip, numberToReturn
_REPLY_FIELDS = struct.Struct("<iqii")  # responseFlags, cursorID, startingFrom, numberReturned

#: How documents are decoded: plain dicts; dates outside datetime's range kept as DatetimeMS, not an error.
CODEC_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO)


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed OP_MSG request."""


class ConnectionClosed(Exception):
    """The peer closed the connection, or this server is shutting the connection down."""


@dataclass
class Request:
    """One decoded OP_MSG request."""

    request_id: int
    flags: int
    body: dict[str, Any]  #: the kind-0 document, with every kind-1 sequence merged in under its identifier
    sequences: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    op_code: int = OP_MSG  #: OP_QUERY for a legacy command (answered with an OP_REPLY)

    @property
    def name(self) -> str:
        """The command name: the body's first key."""
        return next(iter(self.body), "")

    @property
    def wants_reply(self) -> bool:
        return self.op_code == OP_QUERY or not self.flags & MORE_TO_COME


def decode_op_msg(request_id: int, data: bytes) -> Request:
    """Decode an OP_MSG body (everything after the header)."""
    if len(data) < 5:
        raise ProtocolError("OP_MSG too short")
    (flags,) = _UINT32.unpack_from(data, 0)
    end = len(data) - (4 if flags & CHECKSUM_PRESENT else 0)
    pos = 4
    body: dict[str, Any] | None = None
    sequences: dict[str, list[dict[str, Any]]] = {}
    while pos < end:
        kind = data[pos]
        pos += 1
        if kind == 0:
            (size,) = _INT32.unpack_from(data, pos)
            if body is not None:
                raise ProtocolError("OP_MSG with two kind-0 sections")
            body = bson.decode(data[pos:pos + size], CODEC_OPTIONS)
            pos += size
        elif kind == 1:
            (size,) = _INT32.unpack_from(data, pos)
            section_end = pos + size
            name_end = data.index(b"\x00", pos + 4)
            identifier = data[pos + 4:name_end].decode()
            sequences[identifier] = bson.decode_all(data[name_end + 1:section_end], CODEC_OPTIONS)
            pos = section_end
        else:
            raise ProtocolError(f"unknown OP_MSG section kind {kind}")
    if pos != end or body is None:
        raise ProtocolError("malformed OP_MSG sections")
    for identifier, documents in sequences.items():
        body[identifier] = documents
    return Request(request_id, flags, body, sequences)


def decode_op_query(request_id: int, data: bytes) -> Request:
    """Decode a legacy OP_QUERY command (``<db>.$cmd``); its body gets ``$db`` as an OP_MSG's has."""
    (flags,) = _INT32.unpack_from(data, 0)
    name_end = data.index(b"\x00", 4)
    namespace = data[4:name_end].decode()
    pos = name_end + 1 + _QUERY_COUNTS.size
    (size,) = _INT32.unpack_from(data, pos)
    query = bson.decode(data[pos:pos + size], CODEC_OPTIONS)
    if not namespace.endswith(".$cmd"):
        raise ProtocolError(f"OP_QUERY on {namespace!r}: only commands are spoken in the legacy protocol")
    body = query["$query"] if isinstance(query.get("$query"), dict) else query
    body.setdefault("$db", namespace[:-len(".$cmd")])
    return Request(request_id, flags, body, op_code=OP_QUERY)


def encode_reply(request_id: int, request: Request, document: dict[str, Any]) -> bytes:
    """The reply to ``request``: an OP_MSG, or an OP_REPLY to a legacy OP_QUERY."""
    if request.op_code == OP_QUERY:
        payload = bson.encode(document)
        length = _HEADER.size + _REPLY_FIELDS.size + len(payload)
        return (_HEADER.pack(length, request_id, request.request_id, OP_REPLY) + _REPLY_FIELDS.pack(0, 0, 0, 1)
                + payload)
    return encode_op_msg(request_id, request.request_id, document)


def encode_op_msg(request_id: int, response_to: int, document: dict[str, Any]) -> bytes:
    """A complete OP_MSG reply message (header included) carrying ``document`` in one kind-0 section."""
    payload = bson.encode(document)
    length = _HEADER.size + 4 + 1 + len(payload)
    return _HEADER.pack(length, request_id, response_to, OP_MSG) + _UINT32.pack(0) + b"\x00" + payload


class MessageReader:
    """Reads whole messages from a connected socket; waits for the next one in short, interruptible slices.

    The socket must have a timeout (it bounds each read once a message has begun). While idle, the reader polls
    ``stopping`` every ``poll_s`` seconds, so a server shutdown never waits on a silent client.
    """

    def __init__(self, sock: socket.socket, stopping: threading.Event, poll_s: float = 0.1) -> None:
        self.sock = sock
        self.stopping = stopping
        self.poll_ms = int(poll_s * 1000)
        self._poller = select.poll()  # not select.select: that fails on descriptors past FD_SETSIZE (1024)
        self._poller.register(sock, select.POLLIN | select.POLLPRI)

    def wait_readable(self) -> None:
        """Return once data (or EOF) is waiting; raise ConnectionClosed when the server is stopping."""
        while True:
            if self.stopping.is_set():
                raise ConnectionClosed("server stopping")
            if self._poller.poll(self.poll_ms):  # data, EOF, or an error: the read that follows tells which
                return

    def read_exact(self, size: int) -> bytes:
        chunks: list[bytes] = []
        remaining = size
        while remaining:
            try:
                chunk = self.sock.recv(min(remaining, 1 << 20))
            except OSError as exc:  # includes socket.timeout: a client stalled mid-message
                raise ConnectionClosed(str(exc)) from exc
            if not chunk:
                raise ConnectionClosed("peer closed the connection")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def read_request(self) -> Request:
        """Wait for and decode the next request."""
        self.wait_readable()
        length, request_id, _response_to, op_code = _HEADER.unpack(self.read_exact(_HEADER.size))
        if not _HEADER.size < length <= MAX_MESSAGE_SIZE:
            raise ProtocolError(f"bad message length {length}")
        data = self.read_exact(length - _HEADER.size)
        if op_code == OP_MSG:
            return decode_op_msg(request_id, data)
        if op_code == OP_QUERY:
            return decode_op_query(request_id, data)
        raise ProtocolError(f"unsupported opcode {op_code} (OP_MSG and OP_QUERY commands are spoken)")
