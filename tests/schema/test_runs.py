"""The schema's rules on run documents: whose a series is (the user's or the observer's)."""

from __future__ import annotations

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
