"""The filter language and dict-filter whitelist of ``sacred_gpu.read.query``: compilation, errors, injection, mongomock."""

from __future__ import annotations

import datetime
import random
import re
from typing import Any, Callable

import bson
import mongomock
import pytest
from bson.code import Code
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.regex import Regex

from sacred_gpu import schema
from sacred_gpu.read.query import MetricCondition, Query, QueryError, check_filter, compile_filter, parse

NOW = datetime.datetime(2026, 1, 2, 12, 0, 0)
DEAD_BEFORE = NOW - datetime.timedelta(seconds=120)
COMPILED = {"$and", "$or", "$nor", "$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$nin", "$exists", "$regex",
            "$options"}


def dollar_keys(value: Any) -> set[str]:
    """Every key starting with '$' anywhere in a compiled filter."""
    if isinstance(value, dict):
        return {k for k in value if k.startswith("$")}.union(*(dollar_keys(v) for v in value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(*(dollar_keys(v) for v in value))
    return set()


def runs(text: str, **kwargs: Any) -> dict:
    query = parse(text, now=NOW, **kwargs)
    assert query.metrics == ()
    return query.runs


# --- compilation ------------------------------------------------------------------------------------------------------

def test_the_example_compiles_to_runs_filter_and_metric_condition() -> None:
    query = parse('status == COMPLETED and config.lr < 0.01 and tags contains "baseline" and val_loss.min < 0.3')
    assert query == Query(
        runs={"$and": [{"status": "COMPLETED"}, {"config.lr": {"$lt": 0.01}}, {"omniboard.tags": "baseline"}]},
        metrics=(MetricCondition(name="val_loss", rollup="min", op="$lt", value=0.3),),
        fields=(("config.lr", "$lt", 0.01), ("omniboard.tags", "contains", "baseline")),
    )


@pytest.mark.parametrize("text, expected", [
    ("config.lr == 0.1", {"config.lr": 0.1}),
    ("config.lr != 0.1", {"config.lr": {"$ne": 0.1}}),
    ("config.lr < 0.1", {"config.lr": {"$lt": 0.1}}),
    ("config.lr <= 0.1", {"config.lr": {"$lte": 0.1}}),
    ("config.lr > 0.1", {"config.lr": {"$gt": 0.1}}),
    ("config.lr >= 0.1", {"config.lr": {"$gte": 0.1}}),
    ("config.lr>=0.1", {"config.lr": {"$gte": 0.1}}),
    ("config.lr<-1", {"config.lr": {"$lt": -1}}),
    ('config.opt in [adam, "sgd", 1, 2.5, null]', {"config.opt": {"$in": ["adam", "sgd", 1, 2.5, None]}}),
    ("config.opt in []", {"config.opt": {"$in": []}}),
    ("config.opt in [1, 2,]", {"config.opt": {"$in": [1, 2]}}),
    ("config.opt not in [adam]", {"config.opt": {"$nin": ["adam"]}}),
    ("config.lr exists", {"config.lr": {"$exists": True}}),
    ("config.lr not exists", {"config.lr": {"$exists": False}}),
    ('comment matches "^ab+c$"', {"meta.comment": {"$regex": "^ab+c$"}}),
    (r'comment matches "\d+\.\d"', {"meta.comment": {"$regex": r"\d+\.\d"}}),
    ('experiment contains "mn.st*"', {"experiment.name": {"$regex": re.escape("mn.st*")}}),
    ("tags contains baseline", {"omniboard.tags": "baseline"}),
    ("tags contains 2024", {"omniboard.tags": "2024"}),
    ("tags == baseline", {"omniboard.tags": "baseline"}),
    ("tags in [a, b]", {"omniboard.tags": {"$in": ["a", "b"]}}),
])
def test_each_operator_compiles(text: str, expected: dict) -> None:
    assert runs(text) == expected


@pytest.mark.parametrize("literal, value", [
    ("1", 1), ("-7", -7), ("+3", 3), ("2.5", 2.5), (".5", 0.5), ("-0.25", -0.25), ("1e-3", 0.001), ("2E3", 2000.0),
    ('"double"', "double"), ("'single'", "single"), (r'"say \"hi\""', 'say "hi"'), (r"'it\'s'", "it's"),
    (r'"back\\slash"', "back\\slash"), (r'"kept \d"', r"kept \d"), ('""', ""), ('"and"', "and"),
    ("COMPLETED", "COMPLETED"), ("node-1.cluster/a_b", "node-1.cluster/a_b"), ("1.5.3", "1.5.3"),
    ("true", True), ("false", False), ("null", None), ("TRUE", True), ("Null", None), ('"true"', "true"),
])
def test_value_types(literal: str, value: Any) -> None:
    compiled = runs(f"config.x == {literal}")["config.x"]
    assert compiled == value and type(compiled) is type(value)


def test_numbers_keep_int_or_float() -> None:
    assert type(runs("config.x == 3")["config.x"]) is int
    assert type(runs("config.x == 3.0")["config.x"]) is float


@pytest.mark.parametrize("field, path", [
    ("id", "_id"), ("status", "status"), ("experiment", "experiment.name"), ("command", "command"),
    ("tags", "omniboard.tags"), ("host", "host.hostname"),
    ("comment", "meta.comment"), ("config.a.b", "config.a.b"), ("info.x", "info.x"), ("meta.x", "meta.x"),
    ("host.cpu", "host.cpu"), ("experiment.base_dir", "experiment.base_dir"), ("system.gpu-0/x", "system.gpu-0/x"),
    ("config.min", "config.min"),
])
def test_field_names_map_to_paths(field: str, path: str) -> None:
    assert runs(f"{field} != 1") == {path: {"$ne": 1}}


def test_notes_and_result_compare_what_the_table_shows() -> None:
    """``notes`` falls back to Sacred's comment where Omniboard has none; a result Sacred stored as a jsonpickle'd
    numpy scalar compares by its value (``!=`` as the negation of ``==``)."""
    notes = {"$regex": "x"}
    assert runs("notes contains x") == {"$or": [{"omniboard.notes": notes}, {
        "$and": [{"omniboard.notes": {"$exists": False}}, {"meta.comment": notes}]}]}
    either = {"$or": [{"result": 1}, {"$and": [{"result.py/object": {"$regex": r"^numpy\."}}, {"result.value": 1}]}]}
    assert runs("result == 1") == either and runs("result != 1") == {"$nor": [either]}


def test_keywords_are_case_insensitive() -> None:
    lower = runs("status == A and config.x in [1] or not tags contains x and config.y not exists")
    upper = runs("status == A AND config.x IN [1] Or NOT tags CONTAINS x And config.y NOT EXISTS")
    assert lower == upper == {"$or": [
        {"$and": [{"status": "A"}, {"config.x": {"$in": [1]}}]},
        {"$and": [{"$nor": [{"omniboard.tags": "x"}]}, {"config.y": {"$exists": False}}]},
    ]}


def test_and_binds_tighter_than_or() -> None:
    assert runs("status == A or status == B and config.c == 1") == {
        "$or": [{"status": "A"}, {"$and": [{"status": "B"}, {"config.c": 1}]}]}


def test_parentheses_override_precedence() -> None:
    assert runs("(status == A or status == B) and config.c == 1") == {
        "$and": [{"$or": [{"status": "A"}, {"status": "B"}]}, {"config.c": 1}]}


def test_nested_chains_of_the_same_kind_are_flattened() -> None:
    assert runs("(config.a == 1 and config.b == 2) and (config.c == 3)") == {
        "$and": [{"config.a": 1}, {"config.b": 2}, {"config.c": 3}]}
    assert runs("config.a == 1 or (config.b == 2 or config.c == 3)") == {
        "$or": [{"config.a": 1}, {"config.b": 2}, {"config.c": 3}]}


def test_same_field_twice_keeps_both_conditions() -> None:
    assert runs("config.lr > 0.1 and config.lr < 0.5") == {
        "$and": [{"config.lr": {"$gt": 0.1}}, {"config.lr": {"$lt": 0.5}}]}


def test_not_binds_tighter_than_and_and_nests() -> None:
    assert runs("not status == A and config.b == 1") == {"$and": [{"$nor": [{"status": "A"}]}, {"config.b": 1}]}
    assert runs("not (status == A and config.b == 1)") == {"$nor": [{"$and": [{"status": "A"}, {"config.b": 1}]}]}
    assert runs("not not status == A") == {"$nor": [{"$nor": [{"status": "A"}]}]}


def test_time_fields_take_dates_as_naive_utc() -> None:
    assert runs('start >= "2026-01-02"') == {"start_time": {"$gte": datetime.datetime(2026, 1, 2)}}
    assert runs("stop < '2026-01-02T10:00:00'") == {"stop_time": {"$lt": datetime.datetime(2026, 1, 2, 10)}}
    assert runs('heartbeat > "2026-01-02T10:00:00+02:00"') == {"heartbeat": {"$gt": datetime.datetime(2026, 1, 2, 8)}}
    assert runs('start > "2026-01-02T10:00:00Z"') == {"start_time": {"$gt": datetime.datetime(2026, 1, 2, 10)}}
    assert runs('start in ["2026-01-02", "2026-01-03"]') == {
        "start_time": {"$in": [datetime.datetime(2026, 1, 2), datetime.datetime(2026, 1, 3)]}}
    assert runs("stop == null") == {"stop_time": None}
    assert runs('config.date == "2026-01-02"') == {"config.date": "2026-01-02"}  # not a time field: a string


def cutoff_of(query: Query) -> datetime.datetime:
    """The time before which a RUNNING run's last sign of life makes it PROBABLY_DEAD, in a compiled filter."""
    [by_heartbeat, by_start] = query.runs["$or"]
    assert by_heartbeat["heartbeat"]["$lt"] == by_start["start_time"]["$lt"]
    return by_heartbeat["heartbeat"]["$lt"]


def test_probably_dead_is_the_schemas_rule_at_now() -> None:
    dead = schema.probably_dead_filter(NOW)
    assert runs("status == PROBABLY_DEAD") == dead
    assert runs("status != PROBABLY_DEAD") == {"$nor": [dead]}
    assert runs("status == 'probably_dead' or status == FAILED") == {"$or": [dead, {"status": "FAILED"}]}
    assert cutoff_of(parse("status == PROBABLY_DEAD", now=NOW)) == DEAD_BEFORE
    assert cutoff_of(parse("status == PROBABLY_DEAD", now=NOW, dead_after=60)) == NOW - datetime.timedelta(seconds=60)
    aware = NOW.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=2)))  # 12:00+02:00 is 10:00 UTC
    cutoff = cutoff_of(parse("status == PROBABLY_DEAD", now=aware))
    assert cutoff == DEAD_BEFORE - datetime.timedelta(hours=2) and cutoff.tzinfo is None


def test_probably_dead_defaults_to_utc_now() -> None:
    before = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    cutoff = cutoff_of(parse("status == PROBABLY_DEAD"))
    after = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert cutoff.tzinfo is None
    assert before - datetime.timedelta(seconds=120) <= cutoff <= after - datetime.timedelta(seconds=120)


def test_statuses_mean_what_the_table_shows_in_any_case() -> None:
    dead = schema.probably_dead_filter(NOW)
    alive = {"$and": [{"status": "RUNNING"}, {"$nor": [dead]}]}
    assert runs("status == RUNNING") == alive  # a run the table shows PROBABLY_DEAD is not RUNNING here either
    assert runs("status != running") == {"$nor": [alive]}
    assert runs("status in [completed, FAILED]") == {"status": {"$in": ["COMPLETED", "FAILED"]}}
    assert runs("status in [PROBABLY_DEAD, failed]") == {"$or": [dead, {"status": "FAILED"}]}
    assert runs("status not in [RUNNING]") == {"$nor": [alive]}
    assert runs("status == Other") == {"status": "Other"}  # not a status: as it is stored


def test_ids_are_integers() -> None:
    assert runs("id == 3") == {"_id": 3}
    assert runs("id in [1, 2]") == {"_id": {"$in": [1, 2]}}


def test_blank_text_selects_everything() -> None:
    assert parse("") == parse("  \n ") == Query({})


# --- metric conditions --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, condition", [
    ("val_loss.min < 0.3", MetricCondition("val_loss", "min", "$lt", 0.3)),
    ("sys/gpu0/util_pct.mean >= 50", MetricCondition("sys/gpu0/util_pct", "mean", "$gte", 50.0)),
    ("train.acc.last > 0.9", MetricCondition("train.acc", "last", "$gt", 0.9)),
    ("loss.first != 1", MetricCondition("loss", "first", "$ne", 1.0)),
    ("loss.max == -2e-1", MetricCondition("loss", "max", "$eq", -0.2)),
    ("loss.MAX <= 3", MetricCondition("loss", "max", "$lte", 3.0)),
])
def test_metric_conditions_are_extracted(text: str, condition: MetricCondition) -> None:
    query = parse(text)
    assert query.runs == {} and query.metrics == (condition,)
    assert isinstance(query.metrics[0].value, float)


def test_metric_conditions_join_the_top_level_and_chain() -> None:
    query = parse("val_loss.min < 0.3 and (status == COMPLETED and acc.max > 0.9) and config.lr < 1")
    assert query.runs == {"$and": [{"status": "COMPLETED"}, {"config.lr": {"$lt": 1}}]}
    assert query.metrics == (MetricCondition("val_loss", "min", "$lt", 0.3), MetricCondition("acc", "max", "$gt", 0.9))


@pytest.mark.parametrize("text, position", [
    ("status == A or val_loss.min < 0.3", 15),
    ("val_loss.min < 0.3 or status == A", 0),
    ("not val_loss.min < 0.3", 4),
    ("config.a == 1 and not (status == A and loss.max > 1)", 39),
    ("(status == A or (config.b == 1 and loss.last > 2)) and config.c == 1", 35),
])
def test_metric_conditions_under_or_or_not_are_refused(text: str, position: int) -> None:
    with pytest.raises(QueryError, match="metric conditions can only be combined with 'and'") as info:
        parse(text)
    assert info.value.position == position


@pytest.mark.parametrize("text", [
    "val_loss.min in [1, 2]", "val_loss.min not in [1]", "val_loss.min contains 1", "val_loss.min matches x",
    "val_loss.min exists", "val_loss.min not exists",
])
def test_metric_conditions_only_take_numeric_comparisons(text: str) -> None:
    with pytest.raises(QueryError, match="only supports ==, !=, <, <=, >, >="):
        parse(text)


@pytest.mark.parametrize("text", ["val_loss.min < low", 'val_loss.min < "0.3"', "val_loss.min == null",
                                  "val_loss.min == true"])
def test_metric_conditions_need_a_number(text: str) -> None:
    with pytest.raises(QueryError, match="needs a number") as info:
        parse(text)
    assert info.value.position == text.rindex(" ") + 1


# --- malformed queries --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, position, message", [
    ("status == A)", 11, "unexpected ')'"),
    ("status = A", 7, "unknown operator '='"),
    ("config.lr ! 3", 10, "unknown operator '!'"),
    ("config.lr <> 3", 10, "unknown operator '<>'"),
    ("status like A", 7, "unknown operator 'like'"),
    ("status == 'abc", 10, "unterminated string"),
    ('status == "abc\\"', 10, "unterminated string"),
    ("status ==", 9, "expected a value after '=='"),
    ("tags contains", 13, "expected a value after 'contains'"),
    ("status == A B", 12, "unexpected 'B'"),
    ("status == A and", 15, "expected a field name, found end of query"),
    ("and status == A", 0, "expected a field name, found 'and'"),
    ("status == A and or", 16, "expected a field name, found 'or'"),
    ("()", 0, "empty parentheses"),
    ("status == A and ( )", 16, "empty parentheses"),
    ("(status == A", 12, "expected ')' to close the '(' at position 0"),
    ("config.$where == 1", 7, "field names may not contain '$'"),
    ("$where == 1", 0, "field names may not contain '$'"),
    ("config..lr == 1", 7, "empty segment"),
    ("config. == 1", 7, "empty segment"),
    ("lr < 0.1", 0, "unknown field 'lr'"),
    ("config.lr not 3", 14, "expected 'in' or 'exists' after 'not'"),
    ("config.lr in 3", 13, "expected a list"),
    ("config.lr in [1, 2", 18, "expected ',' or ']' in the list opened at position 13, found end"),
    ("config.lr in [1,", 16, "expected a value after 'in', found end of query"),
    ("config.lr in [1 2]", 16, "expected ',' or ']'"),
    ("config.lr in [[1]]", 14, "lists cannot be nested"),
    ("config.lr == [1]", 13, "a list is only allowed after 'in'"),
    ("id == abc", 6, "id must be an integer"),
    ("id in [1, 2.5]", 10, "id must be an integer"),
    ("start > 'yesterday'", 8, "expected a date"),
    ("start > '2026-13-01'", 8, "expected a date"),
    ("start > 5", 8, "expected a date"),
    ("start contains 2026", 6, "does not apply"),
    ("comment matches '('", 16, "invalid regular expression"),
    ("comment contains 'a\x00b'", 17, "NUL"),
    ("status == A\x00", 11, "unexpected character"),
    ("config.x == -", 12, "unexpected character '-'"),
    ("config.x == 99999999999999999999", 12, "integer out of range"),
    ("not", 3, "expected a field name"),
    ("status < PROBABLY_DEAD", 9, "PROBABLY_DEAD can only be compared with ==, !=, in or not in"),
])
def test_malformed_queries_raise_with_position(text: str, position: int, message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)) as info:
        parse(text)
    assert info.value.position == position
    assert info.value.path is None


def test_error_message_has_position_and_caret_line() -> None:
    text = "(status == A))"
    with pytest.raises(QueryError) as info:
        parse(text)
    lines = str(info.value).splitlines()
    assert lines[0] == "unexpected ')' at position 13"
    assert lines[1] == "  " + text
    assert lines[2] == "  " + " " * 13 + "^"
    assert info.value.reason == "unexpected ')'" and isinstance(info.value, ValueError)


def test_caret_stays_under_the_position_in_long_queries() -> None:
    text = "config.a == 1 and " * 20 + "config.b = 2"
    with pytest.raises(QueryError) as info:
        parse(text)
    position = info.value.position
    assert position == text.index(" = ") + 1
    _, shown, caret = str(info.value).splitlines()
    assert shown[caret.index("^")] == "=" and len(shown) < 100


def test_over_long_query_is_refused() -> None:
    text = " or ".join(["status == A"] * 1000)
    assert len(text) > 10_000
    with pytest.raises(QueryError, match="too long"):
        parse(text)
    assert parse(text[:9_998].rsplit(" or", 1)[0]).runs["$or"][0] == {"status": "A"}


@pytest.mark.parametrize("opening, levels", [("(", 50), ("not ", 50), ("not (", 25), ("(not ", 25),
                                            ("(config.a == 1 or ", 50)])
def test_deep_nesting_is_refused_not_a_recursion_error(opening: str, levels: int) -> None:
    def nested(count: int) -> str:
        return opening * count + "status == A" + ")" * (opening.count("(") * count)

    assert dollar_keys(parse(nested(levels)).runs) <= {"$nor", "$or"}
    with pytest.raises(QueryError, match="nested too deeply") as info:
        parse(nested(levels + 1))
    assert info.value.position == len(opening) * levels  # the first token past level 50


@pytest.mark.parametrize("text", ["(" * 5000, "not " * 2400, "(" * 3000 + ")" * 3000, "[" * 5000])
def test_pathological_nesting_raises_query_error(text: str) -> None:
    with pytest.raises(QueryError):
        parse(text)


def test_many_conditions_in_a_flat_chain_are_fine() -> None:
    query = parse(" and ".join(f"config.x{i} == {i}" for i in range(400)))
    assert len(query.runs["$and"]) == 400


# --- injection ------------------------------------------------------------------------------------------------------

REFUSED = ["$where", "$function", "$accumulator", "$expr", "$jsonSchema", "$text", "$lookup", "$merge", "$out"]
PAYLOADS: dict[str, Any] = {
    "$where": "sleep(10000) || true",
    "$function": {"body": "function() { return true }", "args": [], "lang": "js"},
    "$accumulator": {"init": "function() {}", "lang": "js"},
    "$expr": {"$function": {"body": "return true", "args": [], "lang": "js"}},
    "$jsonSchema": {"required": ["status"]},
    "$text": {"$search": "x"},
    "$lookup": {"from": "users", "as": "u"},
    "$merge": {"into": "x"},
    "$out": "x",
}
#: Places to hide an operator: (builder of a filter around {op: payload}, the path the error names).
NESTINGS: dict[str, tuple[Callable[[dict], dict], str]] = {
    "top level": (lambda bad: {"status": "COMPLETED", **bad}, ""),
    "field value": (lambda bad: {"config": bad}, "config."),
    "under $and": (lambda bad: {"$and": [{"status": "A"}, bad]}, "$and[1]."),
    "$or in $and": (lambda bad: {"$and": [{"$or": [{"status": "A"}, bad]}]}, "$and[0].$or[1]."),
    "$elemMatch": (lambda bad: {"omniboard.tags": {"$elemMatch": bad}}, "omniboard.tags.$elemMatch."),
    "$not": (lambda bad: {"config.lr": {"$not": bad}}, "config.lr.$not."),
    "nested value": (lambda bad: {"config.a": {"b": {"c": bad}}}, "config.a.b.c."),
    "$nor deep": (lambda bad: {"$nor": [{"x": {"$elemMatch": {"$and": [bad]}}}]}, "$nor[0].x.$elemMatch.$and[0]."),
}


@pytest.mark.parametrize("nesting", list(NESTINGS))
@pytest.mark.parametrize("operator", REFUSED)
def test_refused_operators_at_any_depth(operator: str, nesting: str) -> None:
    build, prefix = NESTINGS[nesting]
    document = build({operator: PAYLOADS[operator]})
    for attempt in (lambda: check_filter(document), lambda: compile_filter(document)):
        with pytest.raises(QueryError, match=re.escape(repr(operator))) as info:
            attempt()
        assert info.value.path == prefix + operator and info.value.position is None
        assert operator in str(info.value) and "not allowed" in str(info.value)


def test_operator_hidden_in_payload_of_allowed_one_is_refused() -> None:
    with pytest.raises(QueryError, match="'\\$function'"):
        check_filter({"config.a": {"$in": [{"$function": {"body": "x"}}]}})
    with pytest.raises(QueryError, match="'\\$where'"):
        check_filter({"x": [[{"$where": "1"}]]})


@pytest.mark.parametrize("document, path", [
    ({"$where": Code("sleep(1)")}, "$where"),
    ({"config": Code("function() {}")}, "config"),
    ({"config": {"$eq": Code("return 1", {"a": 1})}}, "config.$eq"),
    ({"$and": [{"config": {"$in": ["a", Code("x")]}}]}, "$and[0].config.$in[1]"),
    ({"$or": [{"x": {"$elemMatch": {"y": Code("z")}}}]}, "$or[0].x.$elemMatch.y"),
])
def test_javascript_code_values_are_refused(document: dict, path: str) -> None:
    with pytest.raises(QueryError) as info:
        check_filter(document)
    assert info.value.path == path
    if path != "$where":
        assert "bson.code.Code" in str(info.value)


@pytest.mark.parametrize("value", [{1, 2}, len, b"bytes", object(), datetime.date(2026, 1, 2), 1j, frozenset()])
def test_other_value_types_are_refused(value: Any) -> None:
    with pytest.raises(QueryError, match="not allowed") as info:
        check_filter({"$and": [{"config.x": {"$eq": value}}]})
    assert info.value.path == "$and[0].config.x.$eq"


def test_str_subclass_posing_as_bson_code_is_refused() -> None:
    class Sneaky(str):
        _type_marker = 13  # what pymongo encodes as JavaScript

    with pytest.raises(QueryError, match="not allowed"):
        check_filter({"x": Sneaky("return true")})


@pytest.mark.parametrize("document, message", [
    ({1: "a"}, "field names must be strings"),
    ({"conf\x00ig": 1}, "NUL"),
    ({"config.$where": 1}, "part starting with '\\$'"),
    ({"$and": {"a": 1}}, "non-empty list of documents"),
    ({"$or": []}, "non-empty list of documents"),
    ({"$nor": ["a"]}, "non-empty list of documents"),
    ({"$comment": "x"}, "'\\$comment' is not allowed"),
])
def test_bad_dict_filter_shapes(document: dict, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        check_filter(document)


def test_dict_filter_depth_and_size_are_limited() -> None:
    deep: dict = {"x": 1}
    for _ in range(60):
        deep = {"$and": [deep]}
    with pytest.raises(QueryError, match="nested too deeply"):
        check_filter(deep)
    with pytest.raises(QueryError, match="too large"):
        check_filter({"_id": {"$in": list(range(200_000))}})
    with pytest.raises(QueryError, match="must be a document"):
        check_filter(["$where"])  # type: ignore[arg-type]


def test_allowed_dict_filters_are_returned_unchanged() -> None:
    document = {
        "$and": [{"status": {"$in": ["COMPLETED", "FAILED"]}}, {"$or": [{"config.lr": {"$lt": 0.1}},
                                                                        {"config.lr": {"$exists": False}}]}],
        "$nor": [{"omniboard.tags": {"$all": ["a", "b"], "$size": 2}}],
        "config.layers": {"$elemMatch": {"$gte": 1, "$mod": [2, 0]}, "$type": "array"},
        "experiment.name": {"$not": re.compile("^x"), "$regex": "mn", "$options": "i"},
        "_id": {"$ne": ObjectId("0123456789ab0123456789ab")}, "meta.n": Int64(3), "meta.r": Regex("^a", "i"),
        "start_time": {"$gte": datetime.datetime(2026, 1, 1)}, "result": None, "info.t": (1, 2.5, True),
    }
    checked = check_filter(document)
    assert checked == document and checked is not document
    assert checked["$and"] is not document["$and"] and isinstance(checked["info.t"], tuple)


@pytest.mark.parametrize("text", [
    'config.x == "$where"', "config.x == $where", "config.x in [$where, '$function']",
    'comment contains "{\\"$where\\": \\"sleep(1)\\"}"', 'comment matches "$where"',
    'tags contains "$expr"', "config.x == '{$function: 1}'",
])
def test_dollar_values_in_text_stay_plain_strings(text: str) -> None:
    compiled = runs(text)
    assert dollar_keys(compiled) <= COMPILED
    assert "$where" not in dollar_keys(compiled) and "$function" not in dollar_keys(compiled)
    assert check_filter(compiled) == compiled


@pytest.mark.parametrize("text", ["config.$where == 1", "config.a.$function exists", "$expr == 1",
                                  "info.$text contains x"])
def test_dollar_in_text_field_names_is_refused(text: str) -> None:
    with pytest.raises(QueryError, match="may not contain") as info:
        parse(text)
    assert text[info.value.position] == "$"


HOSTILE = ["<script>alert(1)</script>", "'; db.dropDatabase(); '", 'quote " and \' both', "back\\slash\\",
           "ünïcødé ✓ 日本語 🚀", "nul\x00byte", "{\"$gt\": \"\"}", "a.b.c", "  spaced  ", "\n\t", "-- or 1=1"]


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_compile_to_plain_values(value: str) -> None:
    assert runs(f"config.name == {quote(value)}") == {"config.name": value}
    assert runs(f"config.name in [{quote(value)}, 'x']") == {"config.name": {"$in": [value, "x"]}}
    assert runs(f"tags contains {quote(value)}") == {"omniboard.tags": value}
    if "\x00" not in value:
        pattern = runs(f"comment contains {quote(value)}")["meta.comment"]["$regex"]
        assert re.search(pattern, f"xx{value}yy") and not re.search(pattern, value[:-1] + "\x01")


def test_random_inputs_compile_or_raise_query_error() -> None:
    """A property test without hypothesis: seeded random texts from the language's pieces and stray characters."""
    pieces = ["status", "config.lr", "tags", "id", "start", "loss.min", "==", "!=", "<", ">=", "=", "in", "not",
              "and", "or", "contains", "matches", "exists", "(", ")", "[", "]", ",", '"', "'", "\\", "1", "-2.5e3",
              "COMPLETED", "PROBABLY_DEAD", '"2026-01-02"', "$where", "true", "null", " ", "\x00", "é", ".", "*("]
    rng = random.Random(1234)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(3000):
        if rng.random() < 0.2:
            text = "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(0, 30)))
        else:
            text = " ".join(rng.choice(pieces) for _ in range(rng.randrange(0, 12)))
        try:
            query = parse(text, now=NOW)
        except QueryError as exc:
            assert exc.position is None or 0 <= exc.position <= len(text)
            outcomes["error"] += 1
        else:
            assert dollar_keys(query.runs) <= COMPILED
            assert check_filter(query.runs) == query.runs
            bson.encode(query.runs)  # a document pymongo can send
            outcomes["ok"] += 1
    assert outcomes["ok"] > 50 and outcomes["error"] > 50


# --- compile_filter -------------------------------------------------------------------------------------------------

def test_compile_filter_dispatches_on_type() -> None:
    assert compile_filter(None) == compile_filter("") == compile_filter("   ") == Query({})
    assert compile_filter("status == PROBABLY_DEAD", now=NOW, dead_after=10).runs == schema.probably_dead_filter(
        NOW, 10)
    assert compile_filter({"status": "COMPLETED"}) == Query({"status": "COMPLETED"})
    with pytest.raises(QueryError, match="must be text, a document"):
        compile_filter(42)  # type: ignore[arg-type]


# --- against mongomock ----------------------------------------------------------------------------------------------

DAY = datetime.timedelta(days=1)
DOCUMENTS = [
    {"_id": 1, "status": "COMPLETED", "config": {"lr": 0.001, "opt": "adam"}, "omniboard": {"tags": ["baseline", "r"]},
     "start_time": NOW - 3 * DAY, "heartbeat": NOW - 2 * DAY, "experiment": {"name": "mnist"}, "result": 0.2},
    {"_id": 2, "status": "COMPLETED", "config": {"lr": 0.01, "opt": "sgd"}, "omniboard": {"tags": ["r"]},
     "start_time": NOW - 2 * DAY, "heartbeat": NOW - DAY, "experiment": {"name": "mnist-large"}, "result": 0.4},
    {"_id": 3, "status": "FAILED", "config": {"lr": 0.1, "opt": "sgd"}, "omniboard": {"tags": []},
     "start_time": NOW - DAY, "heartbeat": NOW - DAY, "experiment": {"name": "cifar"}},
    {"_id": 4, "status": "RUNNING", "config": {"lr": 0.001}, "omniboard": {"tags": ["baseline"]},
     "start_time": NOW - datetime.timedelta(hours=1), "heartbeat": NOW - datetime.timedelta(seconds=10),
     "experiment": {"name": "cifar"}},
    {"_id": 5, "status": "RUNNING", "config": {"lr": 0.05}, "start_time": NOW - datetime.timedelta(hours=2),
     "heartbeat": NOW - datetime.timedelta(hours=1), "experiment": {"name": "Mnist"}},
    {"_id": 6, "status": "INTERRUPTED", "config": {}, "start_time": NOW, "heartbeat": NOW,
     "experiment": {"name": "a.b (c)"}, "meta": {"comment": "<script> it's"}},
]


@pytest.fixture(scope="module")
def collection() -> Any:
    runs_collection = mongomock.MongoClient()["sacred"]["runs"]
    runs_collection.insert_many(DOCUMENTS)
    return runs_collection


@pytest.mark.parametrize("filter, ids", [
    ("", [1, 2, 3, 4, 5, 6]),
    ("status == COMPLETED", [1, 2]),
    ("status != COMPLETED", [3, 4, 5, 6]),
    ("config.lr < 0.01", [1, 4]),
    ("config.lr <= 0.01 and status == COMPLETED", [1, 2]),
    ("config.lr >= 0.05 or tags contains baseline", [1, 3, 4, 5]),
    ("status == FAILED or status == RUNNING and config.lr < 0.01", [3, 4]),
    ("(status == FAILED or status == RUNNING) and config.lr < 0.01", [4]),
    ("not status == COMPLETED and not config.lr exists", [6]),
    ("config.lr not exists", [6]),
    ("config.opt in [adam, sgd]", [1, 2, 3]),
    ("config.opt not in [adam]", [2, 3, 4, 5, 6]),
    ("not config.lr < 0.01", [2, 3, 5, 6]),
    ("tags contains baseline", [1, 4]),
    ("tags in [r, nothing]", [1, 2]),
    ("experiment contains 'mnist'", [1, 2]),
    ("experiment contains 'a.b (c'", [6]),
    ("experiment matches '(?i)^mnist$'", [1, 5]),
    ("experiment matches '^mnist'", [1, 2]),
    ("comment contains \"<script> it's\"", [6]),
    ("status == PROBABLY_DEAD", [5]),
    ("status != PROBABLY_DEAD", [1, 2, 3, 4, 6]),
    (f"start >= '{(NOW - 2 * DAY).date()}'", [2, 3, 4, 5, 6]),
    (f"start >= '{(NOW - 2 * DAY).isoformat()}'", [2, 3, 4, 5, 6]),
    (f"start > '{(NOW - 2 * DAY).isoformat()}'", [3, 4, 5, 6]),
    (f"start < '{(NOW - DAY).isoformat()}'", [1, 2]),
    ("id in [2, 4, 99]", [2, 4]),
    ("id > 4", [5, 6]),
    ("result exists and result < 0.3", [1]),
    ("val_loss.min < 0.3 and status == COMPLETED", [1, 2]),  # the metric part is for the store to apply
    ({"config.lr": {"$gt": 0.001}, "omniboard.tags": {"$size": 0}}, [3]),
    ({"$or": [{"status": "FAILED"}, {"omniboard.tags": {"$all": ["baseline", "r"]}}]}, [1, 3]),
    ({"omniboard.tags": {"$elemMatch": {"$regex": "^base"}}}, [1, 4]),
    ({"config.lr": {"$not": {"$lt": 0.01}}}, [2, 3, 5, 6]),
    ({"_id": {"$gt": 1}, "status": {"$nin": ["RUNNING"]}}, [2, 3, 6]),
])
def test_compiled_filters_select_the_right_runs(collection: Any, filter: str | dict, ids: list[int]) -> None:
    query = compile_filter(filter, now=NOW)
    bson.encode(query.runs)
    assert sorted(doc["_id"] for doc in collection.find(query.runs)) == ids
