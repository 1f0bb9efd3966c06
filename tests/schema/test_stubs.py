"""Values too large for a run document (``schema/stubs.py``): moved to GridFS behind stubs and read back."""

from __future__ import annotations

import datetime as dt
import time

import bson
import gridfs
import pytest
from bson import ObjectId

import sacred_gpu
from sacred_gpu import schema
from sacred_gpu.read.store import RunStore
from tests.support.experiments import run_experiment
from tests.support.recording import observer

MB = 1024 * 1024


def _size(doc: dict) -> int:
    return len(bson.encode(doc))


def _value(large: schema.LargeValue):
    return schema.load_stub({"sacred_gpu_stub": "gridfs", "file_id": large.file_id},
                           {large.file_id: large.data}.__getitem__)


def test_a_20_mb_config_string_is_moved_out_and_round_trips():
    blob = "x" * (20 * MB)
    doc = {"_id": 3, "status": "RUNNING", "config": {"lr": 0.1, "data": {"blob": blob}}, "info": {}}
    out, large = schema.stub_large_values(doc)
    assert _size(doc) > schema.MAX_DOCUMENT and _size(out) < schema.STUB_BUDGET < schema.MAX_DOCUMENT
    assert doc["config"]["data"]["blob"] is blob  # the input is never changed
    stub = out["config"]["data"]["blob"]
    assert [item.path for item in large] == ["config.data.blob"] and schema.is_stub(stub)
    assert stub == {"sacred_gpu_stub": "gridfs", "file_id": large[0].file_id, "bytes": len(large[0].data),
                    "type": "str", "path": "config.data.blob"}
    assert out["config"]["lr"] == 0.1 and out["_id"] == 3 and out["status"] == "RUNNING"
    assert _value(large[0]) == blob
    assert schema.load_stub(stub, {large[0].file_id: large[0].data}.__getitem__) == blob


def test_a_small_document_comes_back_unchanged():
    doc = {"config": {"lr": 0.1, "text": "y" * 200_000}, "info": {"metrics": []}}
    out, large = schema.stub_large_values(doc)
    assert out is doc and large == []


def test_only_as_many_values_as_needed_are_moved_the_largest_first():
    config = {f"v{i}": "y" * (4 * MB + i * 1000) for i in range(6)}  # about 24 MB in all
    out, large = schema.stub_large_values({"config": config, "info": {"tiny": "z" * 100_000}})
    assert [item.path for item in large] == ["config.v5", "config.v4", "config.v3"]
    assert _size(out) <= schema.STUB_BUDGET
    assert [key for key, value in out["config"].items() if not schema.is_stub(value)] == ["v0", "v1", "v2"]
    assert out["info"] == {"tiny": "z" * 100_000}
    assert [_value(item) for item in large] == [config["v5"], config["v4"], config["v3"]]


def test_a_17_mb_fail_trace_and_dotted_set_fields():
    trace = ["Traceback (most recent call last):\n", '  File "train.py", line 3\n', "E" * (17 * MB)]
    out, large = schema.stub_large_values({"status": "FAILED", "fail_trace": trace})
    assert out["fail_trace"][:2] == trace[:2] and out["fail_trace"][2]["path"] == "fail_trace.2"
    assert _value(large[0]) == trace[2] and _size(out) < schema.STUB_BUDGET
    lines = [f"line {i} " + "e" * 90 + "\n" for i in range(180_000)]  # no single line is large: the list moves
    out, large = schema.stub_large_values({"fail_trace": lines})
    assert schema.is_stub(out["fail_trace"]) and out["fail_trace"]["type"] == "list" and _value(large[0]) == lines
    dotted = {"info.weird": {"blob": b"\x00" * (17 * MB)}, "heartbeat": dt.datetime(2026, 1, 1)}
    out, large = schema.stub_large_values(dotted)
    assert out["info.weird"]["blob"]["path"] == "info.weird.blob" and _value(large[0]) == b"\x00" * (17 * MB)
    out, large = schema.stub_large_values({"captured_out": "o" * (17 * MB)})
    assert out["captured_out"]["type"] == "str" and _value(large[0]) == "o" * (17 * MB)


def test_a_value_holding_moved_values_is_moved_whole_once():
    history = ["s" * 100] * 170_000 + ["B" * (3 * MB)]  # 3 MB item moved first, then the list is still too large
    out, large = schema.stub_large_values({"info": {"history": history}})
    assert [item.path for item in large] == ["info.history"] and _value(large[0]) == history
    assert out["info"]["history"]["bytes"] == len(large[0].data)


def test_seeded_ids_give_the_same_stub_for_the_same_value():
    doc = {"config": {"blob": "q" * (17 * MB)}}
    (first, [a]), (again, [b]) = schema.stub_large_values(doc, seed=7), schema.stub_large_values(doc, seed=7)
    assert a.file_id == b.file_id and first == again
    assert schema.stub_large_values(doc, seed=8)[1][0].file_id != a.file_id
    assert schema.stub_large_values(doc)[1][0].file_id != schema.stub_large_values(doc)[1][0].file_id
    assert schema.stub_file_ids(first) == [a.file_id]


def test_a_custom_budget_and_the_id_field():
    doc = {"_id": "x" * 300_000, "config": {"a": "a" * 200_000, "b": "b" * 100_000}}
    out, large = schema.stub_large_values(doc, budget=450_000)
    assert out["_id"] == doc["_id"] and [item.path for item in large] == ["config.a"]


class _Odd:
    pass


@pytest.mark.parametrize("doc", [None, [], "text", 3, {"a\x00": "x" * (17 * MB)}, {"x": _Odd()}, {1: 2},
                                 {"a": {"b": {1, 2}}}, {"big": "x" * (17 * MB), "odd": _Odd()}])
def test_stub_large_values_never_raises(doc):
    out, large = schema.stub_large_values(doc)
    assert out is doc and large == []


def test_resolve_stubs_reads_nested_values_and_leaves_unreadable_stubs():
    inner, _ = schema.stub_large_values({"v": "i" * (17 * MB)})
    files = {}
    outer, large = schema.stub_large_values({"config": {"deep": ["keep", {"blob": "d" * (17 * MB)}]},
                                            "result": inner, "lost": {"sacred_gpu_stub": "gridfs",
                                                                      "file_id": ObjectId()}})
    files.update((item.file_id, item.data) for item in large)
    resolved = schema.resolve_stubs(outer, files.__getitem__)
    assert resolved["config"]["deep"] == ["keep", {"blob": "d" * (17 * MB)}]
    assert schema.is_stub(resolved["lost"]) and schema.is_stub(outer["config"]["deep"][1]["blob"])
    with pytest.raises(ValueError):
        schema.load_stub({"file_id": "nope"}, files.__getitem__)


def test_the_store_reads_moved_values_back_from_gridfs(client, db):
    blob = "b" * (17 * MB)
    trace = ["Traceback\n", "E" * (18 * MB)]
    doc, large = schema.stub_large_values({"_id": 1, "format": schema.FORMAT, "status": "FAILED",
                                          "experiment": {"name": "big"}, "start_time": dt.datetime(2026, 1, 1),
                                          "config": {"lr": 0.1, "data": {"blob": blob}}, "fail_trace": trace,
                                          "result": {"values": list(range(2_000_000))}}, seed=1)
    assert [item.path for item in large] == ["result.values", "fail_trace.1", "config.data.blob"]  # largest first
    fs = gridfs.GridFS(db, collection=schema.GRIDFS_BUCKET)
    for item in large:
        fs.put(item.data, _id=item.file_id, filename=schema.stub_filename("runs", 1, item.path))
    db.runs.insert_one(doc)
    store = sacred_gpu.connect(client=client)
    run = store.run(1)
    assert run["config"] == {"lr": 0.1, "data": {"blob": blob}} and run["fail_trace"] == trace
    assert run["result"] == {"values": list(range(2_000_000))}
    assert store.run(1, ["config.data"])["config"]["data"]["blob"] == blob
    assert schema.is_stub(store.run(1, resolve=False)["config"]["data"]["blob"])
    table = store.runs(columns=["fail_trace"])  # the table reads no file: a cell says what was moved
    assert table.loc[1, "config.lr"] == 0.1
    assert table.loc[1, "config.data.blob"] == f"[str, {len(large[2].data):,} bytes in GridFS]"
    assert table.loc[1, "result"] == {"values": f"[list, {len(large[0].data):,} bytes in GridFS]"}
    assert table.loc[1, "fail_trace"] == ["Traceback\n", f"[str, {len(large[1].data):,} bytes in GridFS]"]
    assert "config.data.blob" in store.config_keys()


def test_a_twenty_megabyte_config_value_is_stored_in_gridfs_and_read_back(client, db):
    blob = "c" * (20 * 1024 * 1024)

    def main(_run):
        _run.info["notes"] = "n" * (17 * 1024 * 1024)
        _run.log_scalar("loss", 1.0, 0)
        time.sleep(0.2)  # several heartbeats carry the same large info value
        raise ValueError("E" * (17 * 1024 * 1024))

    with pytest.raises(ValueError):
        run_experiment(main, observer(client), config={"data": {"blob": blob}})
    doc = db.runs.find_one({})
    assert doc["status"] == "FAILED" and len(bson.encode(doc)) < 16 * 1024 * 1024
    assert doc["config"]["data"]["blob"]["sacred_gpu_stub"] == "gridfs"
    run = RunStore(db).run(doc["_id"])
    assert run["config"]["data"]["blob"] == blob and run["info"]["notes"] == "n" * (17 * 1024 * 1024)
    assert "E" * 1000 in "".join(run["fail_trace"])
    assert db["fs.files"].count_documents({"filename": {"$regex": "^stub://"}}) == 3  # each value uploaded once
