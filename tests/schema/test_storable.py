"""Nothing a user can log makes a record unencodable (``schema/storable.py``): keys (NUL, dots, ``$``), values BSON
cannot hold stored as Sacred stores them, roll-up keys that never collide."""

from __future__ import annotations

import datetime as dt
import itertools
import time

import bson
import numpy as np
import pandas as pd
import pytest
from bson import ObjectId
from sacred.observers.mongo import force_valid_bson_key
from sacred.serializer import flatten as sacred_flatten

import sacred_gpu
from sacred_gpu import schema
from tests.support.experiments import run_experiment


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


# -- the store ----------------------------------------------------------------------------------------------------

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


# -- through real runs and bson_safe ------------------------------------------------------------------------------

def test_unstorable_values_are_stored_as_sacred_stores_them(observer, db):
    weird = {
        "array": np.arange(3),
        "scalar": np.float32(1.5),
        "pair": (1, 2),
        7: "int key",
        "dotted.key": {"$dollar": 1},
        "nothing": object(),
    }

    def main(_run, arr):
        _run.info["weird"] = weird
        _run.log_scalar("np_loss", np.float32(0.25), 0)
        _run.log_scalar("np_loss", np.int64(3), 1)
        _run.log_scalar("np_loss", "not a number", 2)
        return np.float32(0.5)

    run = run_experiment(main, observer, config={"arr": np.arange(4)})
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and run._failed_observers == []
    stored = doc["info"]["weird"]
    assert stored["array"] == {"py/object": "numpy.ndarray", "dtype": "int64", "values": [0, 1, 2]}
    assert stored["scalar"] == {"py/object": "numpy.float32", "dtype": "float32", "value": 1.5}
    assert stored["pair"] == {"py/tuple": [1, 2]}
    assert stored["json://7"] == "int key"
    assert stored["dotted.key"] == {"$dollar": 1}  # as the stock observer sends it: a server that refuses gets
    # Sacred's form instead (tests/end_to_end/test_faults_wire.py)
    assert stored["nothing"] == {"py/object": "builtins.object"}
    assert doc["result"] == 0.5  # a numpy scalar result is stored as the number it is: filtered and sorted by value
    assert doc["config"]["arr"] == sacred_flatten(np.arange(4))
    series = db.metrics.find_one({"run_id": run._id, "name": "np_loss"})
    assert series["values"] == [0.25, 3] and series["steps"] == [0, 1]  # the string is dropped, not stored


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": (1, 2)}, {"a": [1, 2]}),
        ({"x.y": 1, "$z": 2, "n\x00l": 3}, {"x.y": 1, "$z": 2, "n\u2400l": 3}),
        ({3: np.int64(4)}, {"3": 4}),
        (2**80, str(2**80)),
        ({"s": {1, 2}}, {"s": [1, 2]}),
        (np.float64(0.5), 0.5),
    ],
)
def test_bson_safe(value, expected):
    assert schema.bson_safe(value) == expected


def test_bson_safe_never_raises_on_unprintable_objects():
    class Hostile:
        def __str__(self):
            raise RuntimeError("no")

    assert schema.bson_safe(Hostile()) == "<unprintable Hostile>"


def test_nul_in_a_config_key_and_a_metric_name_never_stops_the_run(observer, db, client):
    """BSON keys cannot hold NUL: the config key is stored with ␀, the metric's roll-ups are still read."""

    def main(_run):
        _run.info["odd\x00key"] = "value\x00kept"
        _run.log_scalar("x\x00y", 1.0, 0)
        _run.log_scalar("x\x00y", 3.0, 1)
        time.sleep(0.15)  # heartbeats with the metric's roll-ups

    run = run_experiment(main, observer, config={"params": {"a\x00b": 1}})
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and run._failed_observers == []
    assert doc["config"]["params"] == {"a\u2400b": 1} and doc["info"]["odd\u2400key"] == "value\x00kept"
    series = db.metrics.find_one({"run_id": run._id})
    assert series["name"] == "x\x00y" and series["values"] == [1.0, 3.0]
    table = sacred_gpu.connect(client=client).runs(metrics={"x\x00y": ["max", "last"]})
    assert table.loc[run._id, "x\x00y.max"] == 3.0 and table.loc[run._id, "x\x00y.last"] == 3.0


def test_a_nul_in_a_metric_name_and_names_that_differ_by_dot_or_comma(observer, db):
    def main(_run):
        _run.log_scalar("x\x00y", 1.0, 0)
        _run.log_scalar("val.loss", 1.0, 0)
        _run.log_scalar("val,loss", 5.0, 0)
        time.sleep(0.15)

    run = run_experiment(main, observer)
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and doc["heartbeat"] is not None
    assert {m["name"] for m in db.metrics.find({"run_id": run._id})} == {"x\x00y", "val.loss", "val,loss"}
    assert doc["metric_rollups"]["val%2Eloss"]["max"] == 1.0 and doc["metric_rollups"]["val,loss"]["max"] == 5.0
    assert doc["metric_rollups"]["x%00y"]["count"] == 1
