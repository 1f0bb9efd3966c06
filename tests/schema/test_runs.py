"""The schema's rules on run documents: whose a series is (the user's or the observer's), the dead rule (its
predicate and its MongoDB filter)."""

from __future__ import annotations

import datetime

import mongomock
import pytest

from sacred_gpu import schema

ENTRIES = [{"name": "loss", "id": "a"}, {"name": "sys/cpu/util_pct", "id": "b"},
           {"name": "sys/cpu/util_pct", "id": "c", "origin": "system"}, {"name": "loss", "id": "d"},
           {"name": "sys/gpu0/util_pct", "id": "e", "origin": "system"}, "not an entry", {"id": "no name"}]


@pytest.mark.parametrize(("doc", "expected"), [
    ({"format": schema.FORMAT, "info": {"metrics": ENTRIES}},
     (["loss", "sys/cpu/util_pct"], ["sys/cpu/util_pct", "sys/gpu0/util_pct"])),
    # format 1 marked nothing: its sys/ series were the observer's
    ({"format": "GpuMongoObserver-1", "info": {"metrics": [{"name": "loss"}, {"name": "sys/proc/rss_mib"}]}},
     (["loss"], ["sys/proc/rss_mib"])),
    # Sacred's own observer has no system series: a sys/ name there is the user's
    ({"format": "MongoObserver-0.7.0", "info": {"metrics": [{"name": "sys/x"}]}}, (["sys/x"], [])),
    ({"format": schema.FORMAT}, ([], [])),
    ({"info": None}, ([], [])),
])
def test_series_names_split_a_runs_series_by_owner(doc, expected):
    assert schema.series_names(doc) == expected


def test_series_filter_selects_the_documents_series_names_names():
    metrics = mongomock.MongoClient().db.metrics
    metrics.insert_many([{"run_id": 1, "name": "sys/cpu/util_pct"},
                         {"run_id": 1, "name": "sys/cpu/util_pct", "origin": "system"},
                         {"run_id": 1, "name": "loss"}, {"run_id": 2, "name": "loss"}])
    user = sorted(doc["name"] for doc in metrics.find(schema.series_filter(1, system=False)))
    own = [doc["name"] for doc in metrics.find(schema.series_filter(1, system=True))]
    assert user == ["loss", "sys/cpu/util_pct"] and own == ["sys/cpu/util_pct"]


NOW = datetime.datetime(2026, 1, 2, 12, 0, 0)


# --- the dead rule: one rule, as a predicate and as a filter ---------------------------------------------------------

def test_the_dead_rule_as_a_predicate_and_as_a_filter_agree_on_every_case() -> None:
    """Every combination of status, heartbeat and start time (missing, null, recent, old): the documents MongoDB
    selects with ``probably_dead_filter`` are those ``is_probably_dead`` calls dead (the table and the filter of the
    runs page used to disagree on a RUNNING run without a heartbeat)."""
    import itertools

    recent, old = NOW - datetime.timedelta(seconds=30), NOW - datetime.timedelta(seconds=600)
    times = {"missing": ..., "null": None, "recent": recent, "old": old}
    collection = mongomock.MongoClient().db.runs
    docs = []
    for i, (status, heartbeat, start) in enumerate(itertools.product(["RUNNING", "COMPLETED", "QUEUED"], times,
                                                                       times)):
        doc = {"_id": i, "status": status}
        for field, kind in (("heartbeat", heartbeat), ("start_time", start)):
            if kind != "missing":
                doc[field] = times[kind]
        docs.append(doc)
    collection.insert_many(docs)
    for dead_after in (60.0, schema.DEAD_AFTER, 3600.0):
        selected = {doc["_id"] for doc in collection.find(schema.probably_dead_filter(NOW, dead_after))}
        assert selected == {doc["_id"] for doc in docs if schema.is_probably_dead(doc, NOW, dead_after)}
    # an old heartbeat, whatever the start (4); no heartbeat (missing or null) and an old start (2)
    assert len({doc["_id"] for doc in collection.find(schema.probably_dead_filter(NOW))}) == 6
