"""A MongoDB server for fault tests: speaks the wire protocol to a real pymongo client, stores into mongomock.

    with WireServer() as server:                   # listens on 127.0.0.1:<free port>, in background threads
        client = pymongo.MongoClient(server.url, serverSelectionTimeoutMS=2000)
        client.db.runs.insert_one({"_id": 1})
        server.client.db.runs.find_one()           # the mongomock client behind it: inspect what was stored

Faults (each until :meth:`WireServer.restore`, unless it says otherwise):

``refuse_connections()``
    Stop listening and drop every open connection: connects get "connection refused". An operation on a pooled
    connection fails first with AutoReconnect (its connection was dropped; pymongo raises that rather than the
    retry's selection error), later ones with ServerSelectionTimeoutError. ``accept_connections()`` listens again
    on the same port.
``hang_after_hello(only=None)``
    Answer hello/isMaster (so the server stays selectable and connections complete their handshake) but hold
    every other command (or those named in ``only``, on ``collection`` if given) unanswered, the connection open,
    until ``restore()`` (then it is answered) or shutdown.
``slow(seconds)``
    Answer every command, hello included, only after ``seconds``.
``close_mid_batch(after=k, collection=None)``
    Once: the next insert of more than ``k`` documents (into ``collection``, if given) stores its first ``k``,
    then the connection closes without a reply. With retryable writes (pymongo's default), pymongo retries the
    batch and the retry stores the rest (the server skips statements it stored, as mongod does); with
    ``retryWrites=False`` the client sees AutoReconnect and exactly ``k`` documents are stored.
``refuse_write(collection, code=121, errmsg=..., times=None, match=None)``
    Inserts and updates (findAndModify included) into ``collection`` ("runs" or "db.runs") fail with a write
    error of ``code`` (pymongo: WriteError; findAndModify: OperationFailure). ``match(item)`` picks which: the
    document for an insert, the statement ``{"q", "u", "upsert", "multi"}`` for an update. ``times``: how many
    statements to refuse (None: all).
``step_down(times=1)``
    The next ``times`` write commands (insert, update, delete, findAndModify) fail with 10107 NotWritablePrimary,
    labelled RetryableWriteError when they are retryable writes (carry a txnNumber), as a stepped-down primary
    answers. pymongo retries a retryable write once: with ``times=1`` the retry succeeds.

``server.commands`` lists the command names received (the monitor's hellos included), in order.

The server presents itself as the primary of a one-member replica set (``replica_set="rs0"``): pymongo supports
retryable writes on replica sets and mongos only, not on a standalone. ``WireServer(replica_set=None)`` answers
as a standalone. Use the URL given (``directConnection=true``). Protocol details: :mod:`.wire_protocol`; the
commands and their replies: :mod:`.mongo_commands`.

Every wait is bounded: idle connections poll for shutdown every 0.1 s, a held command waits at most
``HOLD_LIMIT_S``; ``close()`` (or leaving the ``with`` block) releases held commands, closes every connection and
joins every thread. Nothing listens on anything but 127.0.0.1.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import mongomock
from bson import ObjectId

from tests.support.mongo_commands import MAX_BSON_SIZE, CommandBackend, CommandError
from tests.support.wire_protocol import ConnectionClosed, MessageReader, ProtocolError, Request, encode_reply

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
HELLO_COMMANDS = frozenset({"hello", "isMaster", "ismaster"})
WRITE_COMMANDS = frozenset({"insert", "update", "delete", "findAndModify"})
#: The longest a command is held by hang_after_hello before its connection is dropped.
HOLD_LIMIT_S = 60.0
IO_TIMEOUT_S = 10.0  # one message's read or write, once begun
JOIN_TIMEOUT_S = 5.0


@dataclass
class _Connection:
    id: int
    sock: socket.socket
    dropped: threading.Event = field(default_factory=threading.Event)

    def drop(self) -> None:
        """Shut the socket down (the serving thread closes it): the client sees the connection close."""
        self.dropped.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@dataclass
class _Refusal:
    collection: str
    code: int
    errmsg: str
    times: int | None
    match: Callable[[dict[str, Any]], bool] | None


@dataclass
class _Faults:
    hang: bool = False
    hang_only: frozenset[str] | None = None
    hang_collection: str | None = None
    slow_s: float = 0.0
    mid_batch: tuple[int, str | None] | None = None
    refusals: list[_Refusal] = field(default_factory=list)
    step_downs: int = 0


class WireServer:
    """A MongoDB wire-protocol server on 127.0.0.1 answering from a mongomock client; see the module docstring."""

    def __init__(self, client: mongomock.MongoClient | None = None, replica_set: str | None = "rs0") -> None:
        self.backend = CommandBackend(client, write_check=self._refused)
        self.replica_set = replica_set
        self.port = 0
        self.commands: list[str] = []  #: names of the commands received, in order
        self._lock = threading.Lock()  # guards the fault state, the connection table and ``commands``
        self._faults = _Faults()
        self._wake = threading.Event()  # set (and replaced) by restore() and close(): releases held commands
        self._stopping = threading.Event()
        self._connections: dict[int, _Connection] = {}
        self._threads: list[threading.Thread] = []
        self._connection_ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._listener: threading.Thread | None = None
        self._listener_stop = threading.Event()

    # -- what tests use ---------------------------------------------------------------------------------------------
    @property
    def client(self) -> mongomock.MongoClient:
        """The mongomock client behind the server (inspect it while no operation is in flight, or under lock)."""
        return self.backend.client

    @property
    def lock(self) -> threading.RLock:
        """Held while a command runs against :attr:`client`."""
        return self.backend.lock

    @property
    def url(self) -> str:
        return f"mongodb://{HOST}:{self.port}/?directConnection=true"

    @property
    def closed(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> WireServer:
        self.accept_connections()
        return self

    def close(self) -> None:
        """Stop listening, release held commands, close every connection and join every thread."""
        self._stopping.set()
        self._stop_listening()
        with self._lock:
            self._wake.set()
            connections = list(self._connections.values())
            threads = list(self._threads)
        for connection in connections:
            connection.drop()
        for thread in threads:
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                logger.warning("wire server: %s did not stop within %.0f s", thread.name, JOIN_TIMEOUT_S)

    def __enter__(self) -> WireServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- faults -----------------------------------------------------------------------------------------------------
    def refuse_connections(self) -> None:
        """Stop listening and drop every open connection (pymongo's pool and monitor included)."""
        self._stop_listening()
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            connection.drop()

    def accept_connections(self) -> None:
        """Listen (again, on the same port once it has one); a no-op while listening."""
        with self._lock:
            if self._stopping.is_set():
                raise RuntimeError("the wire server is closed")
            if self._listener is not None:
                return
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self.port))
            sock.listen(64)
            sock.settimeout(0.1)
            self.port = sock.getsockname()[1]
            self._listener_stop = threading.Event()
            self._listener = threading.Thread(target=self._accept_loop, args=(sock, self._listener_stop),
                                              name=f"wire-server-{self.port}-listen", daemon=True)
            self._listener.start()

    def hang_after_hello(self, only: set[str] | None = None, collection: str | None = None) -> None:
        """Answer hellos only; hold every other command (or the commands named in ``only``, e.g. ``{"insert"}``, on
        ``collection`` if given) unanswered until :meth:`restore`."""
        with self._lock:
            self._faults.hang = True
            self._faults.hang_only = frozenset(only) if only is not None else None
            self._faults.hang_collection = collection

    def slow(self, seconds: float) -> None:
        """Answer every command only after ``seconds``."""
        with self._lock:
            self._faults.slow_s = seconds

    def close_mid_batch(self, after: int, collection: str | None = None) -> None:
        """The next insert of more than ``after`` documents stores ``after`` of them, then drops the connection."""
        with self._lock:
            self._faults.mid_batch = (after, collection)

    def refuse_write(self, collection: str, code: int = 121, errmsg: str = "Document failed validation",
                     times: int | None = None, match: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """Inserts and updates into ``collection`` (those ``match`` accepts) fail with a write error ``code``."""
        with self._lock:
            self._faults.refusals.append(_Refusal(collection, code, errmsg, times, match))

    def step_down(self, times: int = 1) -> None:
        """The next ``times`` write commands answer 10107 NotWritablePrimary."""
        with self._lock:
            self._faults.step_downs = times

    def restore(self) -> None:
        """Clear every fault and release held commands (listening again is :meth:`accept_connections`)."""
        with self._lock:
            self._faults = _Faults()
            self._wake.set()
            self._wake = threading.Event()

    # -- connections ------------------------------------------------------------------------------------------------
    def _stop_listening(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            self._listener_stop.set()
        if listener is not None:
            listener.join(JOIN_TIMEOUT_S)  # the listening socket is closed once it returns

    def _accept_loop(self, sock: socket.socket, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    client_sock, _ = sock.accept()
                except socket.timeout:
                    continue
                client_sock.settimeout(IO_TIMEOUT_S)
                client_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with self._lock:
                    if stop.is_set():
                        client_sock.close()
                        break
                    connection = _Connection(next(self._connection_ids), client_sock)
                    self._connections[connection.id] = connection
                    thread = threading.Thread(target=self._serve, args=(connection,), daemon=True,
                                              name=f"wire-server-{self.port}-conn-{connection.id}")
                    self._threads = [t for t in self._threads if t.is_alive()] + [thread]
                thread.start()
        except OSError as exc:
            logger.warning("wire server: listener stopped: %s", exc)
        finally:
            sock.close()

    def _serve(self, connection: _Connection) -> None:
        reader = MessageReader(connection.sock, connection.dropped)
        try:
            while True:
                request = reader.read_request()
                reply = self._handle(connection, request)
                if request.wants_reply:
                    connection.sock.sendall(encode_reply(next(self._request_ids), request, reply))
        except (ConnectionClosed, OSError) as exc:
            logger.debug("wire server: connection %d closed: %s", connection.id, exc)
        except ProtocolError as exc:
            logger.warning("wire server: connection %d: %s", connection.id, exc)
        except Exception:  # a bug here: log it, drop the connection, keep serving the others
            logger.exception("wire server: connection %d failed", connection.id)
        finally:
            with self._lock:
                self._connections.pop(connection.id, None)
            connection.sock.close()

    # -- commands ---------------------------------------------------------------------------------------------------
    def _handle(self, connection: _Connection, request: Request) -> dict[str, Any]:
        name = request.name
        with self._lock:
            self.commands.append(name)
            faults, wake = self._faults, self._wake
            slow_s, hang = faults.slow_s, faults.hang and name not in HELLO_COMMANDS and (
                faults.hang_only is None or name in faults.hang_only) and (
                faults.hang_collection is None or request.body.get(name) == faults.hang_collection)
        if slow_s:
            self._hold(connection, wake, slow_s)
        if hang and not self._hold(connection, wake, HOLD_LIMIT_S):
            raise ConnectionClosed("held command was never released")
        if name in HELLO_COMMANDS:
            return self._hello(connection)
        if name in WRITE_COMMANDS and self._take_step_down():
            labels = ["RetryableWriteError"] if "txnNumber" in request.body else None
            return CommandError(10107, "not primary", labels).reply()
        cut = self._take_mid_batch(request.body) if name == "insert" else None
        if cut is not None:
            self.backend.run(dict(request.body, documents=request.body["documents"][:cut]))
            raise ConnectionClosed(f"close_mid_batch after {cut} documents")
        return self.backend.run(request.body)

    def _hold(self, connection: _Connection, wake: threading.Event, seconds: float) -> bool:
        """Wait ``seconds``: True if :meth:`restore` released the wait early, False if the time ran out.

        Raises ConnectionClosed as soon as the connection is dropped or the server stops.
        """
        deadline = time.monotonic() + seconds
        while True:
            if self._stopping.is_set() or connection.dropped.is_set():
                raise ConnectionClosed("connection dropped while a command was held")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if wake.wait(min(remaining, 0.1)) and not (self._stopping.is_set() or connection.dropped.is_set()):
                return True

    def _take_step_down(self) -> bool:
        with self._lock:
            if self._faults.step_downs <= 0:
                return False
            self._faults.step_downs -= 1
            return True

    def _take_mid_batch(self, body: dict[str, Any]) -> int | None:
        with self._lock:
            cue = self._faults.mid_batch
            if cue is None or len(body.get("documents", [])) <= cue[0]:
                return None
            if cue[1] is not None and cue[1] not in (body["insert"], f"{body.get('$db')}.{body['insert']}"):
                return None
            self._faults.mid_batch = None
            return cue[0]

    def _refused(self, database: str, collection: str, kind: str, item: dict[str, Any]) -> dict[str, Any] | None:
        """The backend's write check: the write error for a refused insert document or update statement."""
        with self._lock:
            for refusal in self._faults.refusals:
                if refusal.collection not in (collection, f"{database}.{collection}"):
                    continue
                if refusal.times is not None and refusal.times <= 0:
                    continue
                if refusal.match is not None and not refusal.match(item):
                    continue
                if refusal.times is not None:
                    refusal.times -= 1
                return {"code": refusal.code, "errmsg": refusal.errmsg}
        return None

    def _hello(self, connection: _Connection) -> dict[str, Any]:
        reply: dict[str, Any] = {
            "ismaster": True, "isWritablePrimary": True, "helloOk": True,
            "maxBsonObjectSize": MAX_BSON_SIZE, "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000,
            "localTime": datetime.datetime.now(datetime.timezone.utc), "logicalSessionTimeoutMinutes": 30,
            "connectionId": connection.id, "minWireVersion": 0, "maxWireVersion": 17, "readOnly": False,
        }
        if self.replica_set is not None:
            me = f"{HOST}:{self.port}"
            reply.update(setName=self.replica_set, setVersion=1, hosts=[me], primary=me, me=me, secondary=False,
                         electionId=ObjectId("7fffffff0000000000000001"))
        reply["ok"] = 1.0
        return reply
