"""The read side speaks its own errors: a reader never has to know pymongo's or gridfs's."""

from __future__ import annotations

import gridfs
import pymongo
import pytest
from pymongo.errors import PyMongoError

import sacred_gpu
from sacred_gpu.read import errors as read_errors
from sacred_gpu.read.errors import BadQuery, NotFound, ReadError, Refused, Unavailable
from tests.support.wire_server import WireServer


def test_an_unreachable_database_is_unavailable_not_a_pymongo_error():
    with WireServer() as server:
        store = sacred_gpu.connect(server.url, "sacred", serverSelectionTimeoutMS=300)
        server.refuse_connections()
        for read in (store.ping, store.runs, lambda: store.run(1), lambda: store.metrics(1), store.metric_names):
            with pytest.raises(Unavailable, match="^MongoDB unreachable: ") as caught:
                read()
            assert not isinstance(caught.value, PyMongoError) and isinstance(caught.value.__cause__, PyMongoError)


def test_what_is_not_there_is_not_found_and_a_key_error(client):
    db = client["sacred"]
    file_id = gridfs.GridFS(db).put(b"x")
    db.runs.insert_one({"_id": 1, "status": "COMPLETED", "artifacts": [{"name": "gone.bin", "file_id": file_id}]})
    gridfs.GridFS(db).delete(file_id)
    store = sacred_gpu.connect(client=client)
    for read, says in ((lambda: store.run(2), "no run 2"), (lambda: store.artifact(1, "other"), "no artifact"),
                       (lambda: store.artifact(1, "gone.bin"), "missing from GridFS"),
                       (lambda: store.set_tags(5, []), "5")):
        with pytest.raises(NotFound) as caught:
            read()
        message = str(caught.value)
        assert isinstance(caught.value, KeyError) and says in message and not message.startswith("'")


def test_a_query_that_cannot_be_read_is_a_bad_query_and_a_value_error(client):
    store = sacred_gpu.connect(client=client)
    for read in (lambda: store.runs("status =="), lambda: store.runs(sort="a$b"),
                 lambda: store.runs(metrics={"loss": "median"}), lambda: store.count("config.lr <")):
        with pytest.raises(BadQuery) as caught:
            read()
        assert isinstance(caught.value, ValueError) and str(caught.value)


def test_a_write_the_server_refuses_is_refused():
    with WireServer() as server:
        server.client["sacred"].runs.insert_one({"_id": 1, "status": "COMPLETED"})
        store = sacred_gpu.connect(server.url, "sacred", serverSelectionTimeoutMS=2000)
        server.refuse_write("runs", code=13, errmsg="not authorized on sacred to execute command")
        with pytest.raises(Unavailable, match="code 13"):  # credentials can be fixed: not the record's fault
            store.set_tags(1, ["a"])
        server.restore()
        server.refuse_write("runs", code=121, errmsg="Document failed validation")
        with pytest.raises(Refused, match="^MongoDB refused the request: .*code 121"):
            store.set_notes(1, "n")


def test_only_public_methods_are_translated_and_other_errors_pass_through():
    class Reads:
        def public(self, error):
            raise error

        def _private(self, error):
            raise error

    read_errors.translated(Reads)
    with pytest.raises(Unavailable):
        Reads().public(pymongo.errors.AutoReconnect("down"))
    with pytest.raises(pymongo.errors.AutoReconnect):
        Reads()._private(pymongo.errors.AutoReconnect("down"))
    with pytest.raises(ZeroDivisionError):
        Reads().public(ZeroDivisionError())
    assert issubclass(Unavailable, ReadError) and issubclass(NotFound, ReadError)
