"""Nothing a user can log makes a record unencodable: keys (NUL, dots, ``$``), roll-up keys that never collide, and
values past MongoDB's 16 MB limit moved to GridFS and read back through the store."""

from __future__ import annotations

import datetime as dt
import itertools

import bson
import gridfs
import pandas as pd
import pytest
from bson import ObjectId
from sacred.observers.mongo import force_valid_bson_key

import sacred_gpu
from sacred_gpu import schema

MB = 1024 * 1024


# -- keys ---------------------------------------------------------------------------------------------------------
def test_nul_in_keys_is_replaced_so_the_record_encodes():
    config = schema.flatten({"a\x00b": {"c\x00": 1, "ok": "value\x00kept"}, "lr": 0.1})
    assert config == {"a\u2400b": {"c\u2400": 1, "ok": "value\x00kept"}, "lr": 0.1}  # NUL in values is legal BSON
    assert bson.decode(bson.encode({"config": config}))["config"] == config
    rollups = {schema.rollup_key("x\x00y"): {"max": 1.0}}
    assert rollups == {"x%00y": {"max": 1.0}} and bson.encode({schema.METRIC_ROLLUPS_FIELD: rollups})


@pytest.mark.parametrize("key", ["plain", "a.b", "$x", "$a.b.$c", "x$", "@y", ",", "", 7, 1.5, None])
def test_bson_key_is_still_sacreds_where_sacreds_encodes(key):
    assert schema.bson_key(key) == force_valid_bson_key(key) and schema.bson_key is schema.bson_key


def test_values_and_keys_bson_cannot_hold_become_storable():
    class Hostile:
        def __str__(self):
            raise RuntimeError("no")

    cyclic: dict = {}
    cyclic["self"] = cyclic
    deep: list = []
    for _ in range(300):
        deep = [deep]
    safe = schema.bson_safe({"path": "bad\udcffname", "bad\udcffkey": 1, Hostile(): 2, "cyclic": cyclic,
                            "deep": deep})
    assert safe["path"] == "bad\\udcffname" and safe["bad\\udcffkey"] == 1 and safe["<unprintable Hostile>"] == 2
    assert bson.encode(safe)
    level, depth = safe["deep"], 0
    while isinstance(level, list):
        level, depth = level[0], depth + 1
    assert depth == schema.MAX_DEPTH - 1 and isinstance(level, str)  # MongoDB refuses over 100 levels
    assert schema.metric_value(10**400) is None and schema.metric_value(2**70) == float(2**70)
    assert schema.metric_value(Hostile()) is None and schema.metric_value(3) == 3


# -- roll-up keys -------------------------------------------------------------------------------------------------
COLLIDING = [("val.loss", "val,loss"), ("a%2Eb", "a.b"), ("$x", "%24x"), ("x\x00y", "x%00y"), ("@x", "$x"),
             ("", "%"), ("a.b", "a%2Eb"), ("%", "%25"), ("\udcff", "%ED%B3%BF")]


@pytest.mark.parametrize(("one", "other"), COLLIDING)
def test_rollup_keys_never_collide(one, other):
    assert schema.rollup_key(one) != schema.rollup_key(other)
    for name in (one, other):
        assert schema.rollup_name(schema.rollup_key(name)) == name


def test_rollup_key_is_injective_on_every_short_name_and_keeps_plain_names():
    """Every name of up to 4 characters from an alphabet of the characters that matter: a left inverse exists, so
    no two names share a key; and every key is a field name MongoDB can address by a dotted path."""
    alphabet = ["a", ".", ",", "%", "$", "@", "\x00", "2", "E", "4", "\udcff", "é"]
    keys: dict[str, str] = {}
    for length in range(5):
        for chars in itertools.product(alphabet, repeat=length):
            name = "".join(chars)
            key = schema.rollup_key(name)
            assert schema.rollup_name(key) == name and keys.setdefault(key, name) == name
            assert key and "." not in key and "\x00" not in key and not key.startswith("$")
    assert len(keys) == sum(len(alphabet) ** n for n in range(5))
    for name in ("loss", "val_loss", "train/acc", "a,b", "@x", "x$y", "épsilon", "sys/gpu0/util_pct"):
        assert schema.rollup_key(name) == name == schema.bson_key(name)
    assert bson.encode({schema.rollup_key(name): 1 for name in keys.values()})


@pytest.mark.parametrize("key", ["50%", "%2e", "%41", "%FF", "$x", "a.b", "%2", "x\x00"])
def test_rollup_name_refuses_keys_rollup_key_cannot_make(key):
    with pytest.raises(ValueError):
        schema.rollup_name(key)


def test_find_rollup_falls_back_to_the_old_key_only_for_old_runs():
    old_run = {"val,loss": {"min": 0.1}, "50%": {"min": 0.5}, "@x": {"min": 0.9}}
    assert schema.find_rollup(old_run, "val.loss", ["val.loss"]) == {"min": 0.1}
    assert schema.find_rollup(old_run, "50%", ["50%"]) == {"min": 0.5}
    assert schema.find_rollup(old_run, "$x", None) == {"min": 0.9}
    new_run = {"val,loss": {"min": 0.2}, "val%2Eloss": {"min": 0.3}}
    assert schema.find_rollup(new_run, "val.loss", ["val.loss", "val,loss"]) == {"min": 0.3}
    assert schema.find_rollup(new_run, "val,loss", ["val.loss", "val,loss"]) == {"min": 0.2}
    only_comma = {"val,loss": {"min": 0.2}}  # a newer run that never logged val.loss
    assert schema.find_rollup(only_comma, "val.loss", ["val,loss"]) is None
    assert schema.find_rollup(only_comma, "val.loss", ["val.loss", "val,loss"]) is None  # val,loss owns the key
    assert schema.find_rollup(None, "loss") is None and schema.find_rollup({}, "loss", []) is None


# -- large values -------------------------------------------------------------------------------------------------
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


# -- the store ----------------------------------------------------------------------------------------------------
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


def _legacy_runs(db) -> None:
    """Run 1 recorded before roll-up keys (``val.loss`` under ``val,loss``), run 2 after, run 3 a newer run that only
    logged ``val,loss``."""
    start = dt.datetime(2026, 1, 1)
    for run_id, metrics, rollups in [
        (1, ["val.loss", "50%"], {"val,loss": {"min": 0.1}, "50%": {"min": 5.0}}),
        (2, ["val.loss", "val,loss", "50%"], {"val%2Eloss": {"min": 0.2}, "val,loss": {"min": 0.7},
                                              "50%25": {"min": 6.0}}),
        (3, ["val,loss"], {"val,loss": {"min": 0.05}}),
    ]:
        db.runs.insert_one({"_id": run_id, "format": schema.FORMAT, "status": "COMPLETED", "config": {},
                            "experiment": {"name": "e"}, "start_time": start + dt.timedelta(minutes=run_id),
                            "info": {"metrics": [{"name": name, "id": str(ObjectId())} for name in metrics]},
                            schema.METRIC_ROLLUPS_FIELD: rollups})


def test_roll_ups_of_runs_recorded_before_rollup_keys_are_still_read(client, db):
    _legacy_runs(db)
    store = sacred_gpu.connect(client=client)
    table = store.runs(metrics={"val.loss": "min", "val,loss": "min", "50%": "min"})
    assert table.loc[1, "val.loss.min"] == 0.1 and table.loc[2, "val.loss.min"] == 0.2
    assert pd.isna(table.loc[3, "val.loss.min"])  # run 3 never logged val.loss: its val,loss is not taken for it
    assert table.loc[2, "val,loss.min"] == 0.7 and table.loc[3, "val,loss.min"] == 0.05
    assert table.loc[1, "50%.min"] == 5.0 and table.loc[2, "50%.min"] == 6.0
    assert sorted(store.runs("val.loss.min < 0.5").index) == [1, 2]  # run 3's val,loss (0.05) is not val.loss
    assert sorted(store.runs("val.loss.min > 0.15").index) == [2]


def test_run_plots_read_roll_ups_under_both_keys():
    from sacred_gpu.read import views

    doc = {"_id": 1, "status": "COMPLETED", "info": {"metrics": [{"name": "val.loss"}, {"name": "top5%"}]},
           schema.METRIC_ROLLUPS_FIELD: {"val,loss": {"count": 4, "first_step": 0, "last_step": 30, "min": 0.1},
                                         "top5%25": {"count": 2, "first_step": 1, "last_step": 2}}}
    assert views.plot_context(doc)["rollups"] == {"val.loss": {"count": 4, "first_step": 0, "last_step": 30},
                                                  "top5%": {"count": 2, "first_step": 1, "last_step": 2}}


def test_sacred_keys_rewrite_as_sacred_does_and_never_make_two_keys_one():
    doc = {"x.y": 1, "x,y": 2, "$z": [{"a.b": 3}], "@z": 4, "plain": {"$in": 5}, "ok": "v.$"}
    assert schema.sacred_keys(doc) == {"x%2Ey": 1, "x,y": 2, "%24z": [{"a,b": 3}], "@z": 4, "plain": {"@in": 5},
                                      "ok": "v.$"}
    assert schema.sacred_keys({"a.b": 1}) == {"a,b": 1} and schema.sacred_keys([1, "a.b"]) == [1, "a.b"]
    assert schema.bson_safe({"a.b": {"$c": 1}}) == {"a.b": {"$c": 1}}  # kept as logged until a server refuses
