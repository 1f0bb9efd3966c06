"""The wire-protocol test server (tests/support/wire_server.py), driven by real pymongo clients.

Each test asserts what a client sees (results, exception classes and codes) and what the server stored
(through ``server.client``, the mongomock client behind it).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import bson
import gridfs
import pymongo
import pytest
from pymongo import ReturnDocument, WriteConcern
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    CollectionInvalid,
    ConnectionFailure,
    DuplicateKeyError,
    NotPrimaryError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteError,
)

from tests.support.mongo_commands import MAX_BSON_SIZE
from tests.support.wire_protocol import CHECKSUM_PRESENT, OP_MSG, decode_op_msg, encode_op_msg
from tests.support.wire_server import WireServer

logger = logging.getLogger(__name__)

CLIENT_OPTIONS: dict[str, Any] = {"serverSelectionTimeoutMS": 2000, "connectTimeoutMS": 2000,
                                  "socketTimeoutMS": 5000}


@pytest.fixture
def server() -> Iterator[WireServer]:
    with WireServer() as running:
        yield running


def _connect(server: WireServer, **options: Any) -> pymongo.MongoClient[dict[str, Any]]:
    return pymongo.MongoClient(server.url, **{**CLIENT_OPTIONS, **options})


@pytest.fixture
def client(server: WireServer) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    connected = _connect(server)
    yield connected
    if not server.closed:  # a test may leave a fault on: the client's endSessions must be answered
        server.restore()
        server.accept_connections()
    connected.close()


def _stored(server: WireServer, collection: str, db: str = "t") -> list[dict[str, Any]]:
    with server.lock:
        return list(server.client[db][collection].find())


# -- the protocol ------------------------------------------------------------------------------------------------------
def test_op_msg_codec_merges_document_sequences_and_skips_the_checksum() -> None:
    body = bson.encode({"insert": "runs", "$db": "t"})
    docs = b"".join(bson.encode({"_id": i}) for i in range(3))
    sequence = struct.pack("<i", 4 + len(b"documents\x00") + len(docs)) + b"documents\x00" + docs
    data = struct.pack("<I", CHECKSUM_PRESENT) + b"\x00" + body + b"\x01" + sequence + b"CRC!"
    request = decode_op_msg(7, data)
    assert request.name == "insert"
    assert request.body["documents"] == [{"_id": 0}, {"_id": 1}, {"_id": 2}]
    assert request.wants_reply

    reply = encode_op_msg(1, 7, {"ok": 1.0})
    length, _, response_to, op_code = struct.unpack_from("<iiii", reply)
    assert (length, response_to, op_code) == (len(reply), 7, OP_MSG)


def test_legacy_op_query_handshake_gets_an_op_reply(server: WireServer) -> None:
    """Drivers older than pymongo 4.20 open connections with an OP_QUERY isMaster; only loopback is listened on."""
    assert server.url == f"mongodb://127.0.0.1:{server.port}/?directConnection=true"
    query = bson.encode({"isMaster": 1, "helloOk": True})
    message = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + query
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(struct.pack("<iiii", 16 + len(message), 42, 0, 2004) + message)
        header = _receive(sock, 16)
        length, _, response_to, op_code = struct.unpack("<iiii", header)
        body = _receive(sock, length - 16)
    assert (response_to, op_code) == (42, 1)
    flags, cursor_id, _, returned = struct.unpack_from("<iqii", body)
    reply = bson.decode(body[20:])
    assert (flags, cursor_id, returned) == (0, 0, 1)
    assert reply["ismaster"] is True and reply["maxWireVersion"] == 17 and reply["ok"] == 1.0
    assert server.commands == ["isMaster"]


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "server closed the connection"
        data += chunk
    return data


# -- commands a client uses ----------------------------------------------------------------------------------------
def test_insert_and_find_with_sort_limit_projection_and_get_more(server: WireServer, client: Any) -> None:
    runs = client.t.runs
    assert runs.insert_one({"_id": "first", "i": -1}).inserted_id == "first"
    assert len(runs.insert_many([{"i": i, "pad": "x"} for i in range(250)]).inserted_ids) == 250

    top = list(runs.find({"i": {"$gte": 0}}, {"_id": 0, "i": 1}).sort("i", pymongo.DESCENDING).skip(1).limit(3))
    assert top == [{"i": 248}, {"i": 247}, {"i": 246}]

    every = list(runs.find({"i": {"$gte": 0}}).sort("i", 1).batch_size(100))
    assert [doc["i"] for doc in every] == list(range(250))
    assert server.commands.count("getMore") == 2  # 100 + 100 + 50
    assert runs.find_one({"_id": "first"}) == {"_id": "first", "i": -1}
    cursor = runs.find().batch_size(10)
    next(cursor)
    cursor.close()  # an open server cursor: pymongo kills it
    assert server.commands[-1] == "killCursors"
    assert server.backend.open_cursors == 0
    assert len(_stored(server, "runs")) == 251


def test_update_upsert_with_push_each_set_on_insert_inc_and_max(server: WireServer, client: Any) -> None:
    runs = client.t.runs
    update = {"$setOnInsert": {"status": "RUNNING"}, "$push": {"log": {"$each": ["a", "b"]}}, "$inc": {"beats": 1},
              "$max": {"peak": 5}}
    first = runs.update_one({"_id": 7}, update, upsert=True)
    assert (first.matched_count, first.upserted_id) == (0, 7)
    second = runs.update_one({"_id": 7}, {**update, "$setOnInsert": {"status": "IGNORED"}, "$max": {"peak": 3}},
                             upsert=True)
    assert (second.matched_count, second.modified_count, second.upserted_id) == (1, 1, None)
    assert _stored(server, "runs") == [{"_id": 7, "status": "RUNNING", "log": ["a", "b", "a", "b"], "beats": 2,
                                        "peak": 5}]
    assert runs.update_many({}, {"$set": {"done": True}}).modified_count == 1
    assert runs.delete_one({"_id": 7}).deleted_count == 1
    assert _stored(server, "runs") == []


def test_find_one_and_update_counter(server: WireServer, client: Any) -> None:
    counters = client.t.counters
    values = [counters.find_one_and_update({"_id": "runs"}, {"$inc": {"seq": 1}}, upsert=True,
                                           return_document=ReturnDocument.AFTER)["seq"] for _ in range(3)]
    assert values == [1, 2, 3]
    before = counters.find_one_and_update({"_id": "runs"}, {"$inc": {"seq": 10}}, projection={"_id": 0})
    assert before == {"seq": 3}
    assert counters.find_one_and_update({"_id": "none"}, {"$inc": {"seq": 1}}) is None
    assert _stored(server, "counters") == [{"_id": "runs", "seq": 13}]


def test_indexes_and_collections(server: WireServer, client: Any) -> None:
    db = client.t
    db.metrics.create_index([("run_id", 1), ("name", 1)], unique=True)
    info = db.metrics.index_information()
    assert info["run_id_1_name_1"]["key"] == [("run_id", 1), ("name", 1)]
    assert info["run_id_1_name_1"]["unique"] is True
    assert "_id_" in info
    assert db.missing.index_information() == {}

    db.create_collection("samples", timeseries={"timeField": "t", "metaField": "run"})
    with pytest.raises(CollectionInvalid):
        db.create_collection("samples")
    assert db.list_collection_names(filter={"name": "samples"}) == ["samples"]
    assert db.list_collection_names(filter={"name": "absent"}) == []
    assert sorted(db.list_collection_names()) == ["metrics", "samples"]
    listed = next(db.list_collections(filter={"name": "samples"}))
    assert listed["type"] == "timeseries"
    assert listed["options"]["timeseries"] == {"timeField": "t", "metaField": "run"}
    db.samples.insert_one({"t": 1, "run": 1})
    assert len(_stored(server, "samples")) == 1

    db.drop_collection("samples")
    db.drop_collection("samples")  # a missing collection: ns not found, which pymongo accepts
    assert db.list_collection_names() == ["metrics"]
    client.drop_database("t")
    assert server.client.t.list_collection_names() == []


def test_gridfs_round_trip_of_one_megabyte(server: WireServer, client: Any) -> None:
    data = os.urandom(1_000_000)
    fs = gridfs.GridFS(client.t)
    file_id = fs.put(data, filename="artifact.bin", metadata={"run": 1})
    assert fs.get(file_id).read() == data
    assert client.t["fs.files"].find_one({"filename": "artifact.bin"}, {"_id": 1}) == {"_id": file_id}
    assert len(_stored(server, "fs.chunks")) == 4  # 255 KiB chunks
    fs.delete(file_id)
    assert _stored(server, "fs.chunks") == [] and _stored(server, "fs.files") == []


def test_aggregate_count_and_distinct(client: Any) -> None:
    samples = client.t.samples
    samples.insert_many([{"run": run, "v": v} for run in (1, 2) for v in range(5)])
    grouped = list(samples.aggregate([{"$match": {"v": {"$gte": 1}}},
                                      {"$group": {"_id": "$run", "total": {"$sum": "$v"}}},
                                      {"$sort": {"_id": 1}}]))
    assert grouped == [{"_id": 1, "total": 10}, {"_id": 2, "total": 10}]
    assert samples.count_documents({"run": 1}) == 5
    assert samples.estimated_document_count() == 10
    assert sorted(samples.distinct("run")) == [1, 2]


def test_unacknowledged_writes_get_no_reply(server: WireServer, client: Any) -> None:
    runs = client.t.get_collection("runs", write_concern=WriteConcern(w=0))
    assert runs.insert_one({"_id": 1}).acknowledged is False
    deadline = time.monotonic() + 2
    while not _stored(server, "runs") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.t.runs.find_one() == {"_id": 1}
    assert server.commands.count("insert") == 1


def test_duplicate_key(server: WireServer, client: Any) -> None:
    runs = client.t.runs
    runs.insert_one({"_id": 1})
    with pytest.raises(DuplicateKeyError) as caught:
        runs.insert_one({"_id": 1})
    assert caught.value.code == 11000
    with pytest.raises(BulkWriteError) as bulk:
        runs.insert_many([{"_id": 2}, {"_id": 3}, {"_id": 1}, {"_id": 4}])
    assert bulk.value.details["nInserted"] == 2
    assert bulk.value.details["writeErrors"][0]["index"] == 2
    assert bulk.value.details["writeErrors"][0]["code"] == 11000
    assert sorted(doc["_id"] for doc in _stored(server, "runs")) == [1, 2, 3]


def test_documents_over_16_mib_are_refused(server: WireServer, client: Any) -> None:
    big = "x" * (MAX_BSON_SIZE // 2)
    runs = client.t.runs
    runs.insert_one({"_id": 1, "a": big})
    with pytest.raises(WriteError) as caught:
        runs.update_one({"_id": 1}, {"$set": {"b": big}})
    assert caught.value.code == 17419
    assert set(_stored(server, "runs")[0]) == {"_id", "a"}  # the update was undone

    # pymongo leaves the 16 MiB limit to the server (it raises DocumentTooLarge only past maxMessageSizeBytes).
    overhead = len(bson.encode({"_id": 2, "a": ""}))
    with pytest.raises(WriteError) as too_large:
        runs.insert_one({"_id": 2, "a": "x" * (MAX_BSON_SIZE - overhead + 1)})
    assert too_large.value.code == 2
    assert too_large.value.details["errmsg"].startswith("object to insert too large. size in bytes: 16777217")
    runs.insert_one({"_id": 3, "a": "x" * (MAX_BSON_SIZE - overhead)})  # exactly at the limit: stored
    assert [doc["_id"] for doc in _stored(server, "runs")] == [1, 3]


# -- faults ----------------------------------------------------------------------------------------------------------
def test_refuse_connections_then_accept_again(server: WireServer) -> None:
    client = _connect(server, serverSelectionTimeoutMS=1000)
    try:
        client.t.runs.insert_one({"_id": 1})
        server.refuse_connections()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        with pytest.raises(ConnectionFailure):  # the pooled connection was dropped: AutoReconnect
            client.t.runs.find_one()
        started = time.monotonic()  # now pymongo knows the server is gone: no server within the timeout
        with pytest.raises(ServerSelectionTimeoutError):
            client.t.runs.find_one()
        assert 0.9 <= time.monotonic() - started < 3.0

        server.accept_connections()
        assert client.t.runs.find_one() == {"_id": 1}
    finally:
        client.close()


def test_hang_after_hello_times_out_and_restore_releases(server: WireServer, client: Any) -> None:
    client.admin.command("ping")
    server.hang_after_hello()
    started = time.monotonic()
    with pytest.raises(PyMongoError) as caught:
        with pymongo.timeout(1.0):
            client.t.runs.insert_one({"_id": "late"})
    elapsed = time.monotonic() - started
    assert caught.value.timeout, caught.value
    assert 0.9 <= elapsed < 2.5
    assert _stored(server, "runs") == []  # held, unanswered

    server.restore()  # the held insert is answered now (to a client that gave up): it is stored, as on a server
    deadline = time.monotonic() + 2
    while not _stored(server, "runs") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _stored(server, "runs") == [{"_id": "late"}]
    assert client.t.runs.find_one() == {"_id": "late"}


def test_close_releases_held_commands(server: WireServer) -> None:
    server.hang_after_hello()
    errors: list[BaseException] = []
    client = _connect(server, socketTimeoutMS=20_000, retryReads=False)

    def read() -> None:
        try:
            client.t.runs.find_one()
        except PyMongoError as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 2
    while "find" not in server.commands and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    server.close()
    reader.join(5)
    assert not reader.is_alive()
    assert time.monotonic() - started < 2
    assert len(errors) == 1 and isinstance(errors[0], AutoReconnect)
    assert [t.name for t in threading.enumerate() if t.name.startswith(f"wire-server-{server.port}-")] == []
    client.close()


def test_slow_delays_every_command(server: WireServer, client: Any) -> None:
    client.admin.command("ping")
    server.slow(0.5)
    started = time.monotonic()
    client.t.runs.insert_one({"_id": 1})
    assert time.monotonic() - started >= 0.5
    server.restore()
    started = time.monotonic()
    assert client.t.runs.find_one() == {"_id": 1}
    assert time.monotonic() - started < 0.4


def test_close_mid_batch_stores_a_prefix_then_drops_the_connection(server: WireServer) -> None:
    client = _connect(server, retryWrites=False)
    try:
        server.close_mid_batch(after=3)
        with pytest.raises(ConnectionFailure) as caught:
            client.t.samples.insert_many([{"_id": i} for i in range(10)])
        assert isinstance(caught.value, AutoReconnect)
        assert [doc["_id"] for doc in _stored(server, "samples")] == [0, 1, 2]
        client.t.samples.insert_many([{"_id": i} for i in range(10, 15)])  # once only: the next batch is whole
        assert len(_stored(server, "samples")) == 8
    finally:
        client.close()


def test_close_mid_batch_is_healed_by_a_retryable_write(server: WireServer, client: Any) -> None:
    server.close_mid_batch(after=3, collection="samples")
    client.t.samples.insert_many([{"_id": i} for i in range(10)])
    assert server.commands.count("insert") == 2  # the cut batch, and pymongo's retry of it
    assert [doc["_id"] for doc in _stored(server, "samples")] == list(range(10))


def test_refuse_write_answers_a_write_error_for_that_collection_only(server: WireServer, client: Any) -> None:
    server.refuse_write("runs", match=lambda doc: doc.get("bad", False) or "u" in doc)
    with pytest.raises(WriteError) as caught:
        client.t.runs.insert_one({"_id": 1, "bad": True})
    assert caught.value.code == 121
    assert caught.value.details["errmsg"] == "Document failed validation"
    client.t.runs.insert_one({"_id": 2, "bad": False})  # not matched
    client.t.other.insert_one({"_id": 3, "bad": True})  # another collection
    with pytest.raises(WriteError) as update:
        client.t.runs.update_one({"_id": 2}, {"$set": {"x": 1}})
    assert update.value.code == 121
    with pytest.raises(OperationFailure) as find_and_modify:
        client.t.runs.find_one_and_update({"_id": 2}, {"$set": {"x": 1}})
    assert find_and_modify.value.code == 121
    assert _stored(server, "runs") == [{"_id": 2, "bad": False}]
    assert _stored(server, "other") == [{"_id": 3, "bad": True}]

    server.restore()
    server.refuse_write("t.runs", code=2, errmsg="nope", times=1)
    with pytest.raises(WriteError) as once:
        client.t.runs.insert_one({"_id": 4})
    assert (once.value.code, once.value.details["errmsg"]) == (2, "nope")
    client.t.runs.insert_one({"_id": 4})
    assert [doc["_id"] for doc in _stored(server, "runs")] == [2, 4]


def test_step_down_once_is_retried_by_pymongo(server: WireServer, client: Any) -> None:
    server.step_down(times=1)
    client.t.runs.insert_one({"_id": 1})
    assert server.commands.count("insert") == 2
    assert _stored(server, "runs") == [{"_id": 1}]


def test_step_down_outlasting_the_retry_raises_not_primary(server: WireServer, client: Any) -> None:
    server.step_down(times=5)
    with pytest.raises(NotPrimaryError) as caught:
        client.t.runs.insert_one({"_id": 1})
    assert caught.value.details["code"] == 10107
    assert caught.value.details["codeName"] == "NotWritablePrimary"
    assert server.commands.count("insert") == 2
    assert _stored(server, "runs") == []
    server.restore()
    client.t.runs.insert_one({"_id": 1})
    assert _stored(server, "runs") == [{"_id": 1}]


def test_a_standalone_server_gets_no_retryable_writes() -> None:
    with WireServer(replica_set=None) as standalone:
        client = _connect(standalone)
        try:
            assert "setName" not in client.admin.command("hello")
            standalone.step_down(times=1)
            with pytest.raises(NotPrimaryError):
                client.t.runs.insert_one({"_id": 1})
            assert standalone.commands.count("insert") == 1
        finally:
            client.close()
