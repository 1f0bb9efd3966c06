"""Run ids: integers from an atomic counter, above any id Sacred's own observer left, never handed out twice."""

from __future__ import annotations

import threading

from sacred_gpu import GpuMongoObserver, schema
from sacred_gpu.record.writer import MongoWriter
from tests.support.experiments import run_experiment


def test_ids_continue_above_runs_written_by_sacreds_observer(client, db):
    db.runs.insert_many([{"_id": 7, "status": "COMPLETED"}, {"_id": 41, "status": "FAILED"}, {"_id": "named-run"}])
    first = run_experiment(lambda: None, GpuMongoObserver(client=client))
    second = run_experiment(lambda: None, GpuMongoObserver(client=client))
    assert (first._id, second._id) == (42, 43)


def test_ids_stay_above_runs_inserted_behind_the_counters_back(client, db):
    writer = MongoWriter(db)
    assert writer.insert_run({"status": "RUNNING"}) == 1
    db.runs.insert_one({"_id": 2, "status": "RUNNING"})  # Sacred's observer uses "max + 1"
    assert writer.insert_run({"status": "RUNNING"}) == 3


def test_an_id_taken_in_between_is_skipped(db, monkeypatch):
    writer = MongoWriter(db)
    db.runs.insert_one({"_id": 1})
    monkeypatch.setattr(writer, "_highest_run_id", lambda: 0)  # a stale view: another writer inserted 1 meanwhile
    assert writer.insert_run({"status": "RUNNING"}) == 2


def test_concurrent_starters_get_distinct_ids(client, db):
    """8 writers starting 20 runs each at once get 160 distinct ids.

    The threads share one mongomock client, the stand-in for 8 processes on one server. On a real MongoDB server
    the allocation is atomic because each step is a single-document atomic operation: ``$max`` raises the counter
    and ``find_one_and_update`` with ``$inc`` returns the incremented value to exactly one caller; the unique
    ``_id`` index is the last guard, and a clash there makes the loser allocate again. (mongomock's
    ``find_one_and_update`` is not atomic across threads, so here that last guard does real work and an id may
    be skipped; ids are distinct, not necessarily contiguous, on a server too, where a failed insert burns one.)
    """
    barrier = threading.Barrier(8)
    ids: list[int] = []
    lock = threading.Lock()

    def starter() -> None:
        writer = MongoWriter(db)
        barrier.wait()
        for _ in range(20):
            run_id = writer.insert_run({"status": "RUNNING"})
            with lock:
                ids.append(run_id)

    threads = [threading.Thread(target=starter) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 160 and len(set(ids)) == 160 and min(ids) == 1
    assert sorted(doc["_id"] for doc in db.runs.find({}, {"_id": 1})) == sorted(ids)
    assert db[schema.COUNTERS].find_one({"_id": "runs"})["seq"] == max(ids)


def test_each_prefix_has_its_own_counter(client):
    db = client["sacred"]
    a, b = MongoWriter(db, schema.Collections("a")), MongoWriter(db, schema.Collections("b"))
    assert [a.insert_run({}), a.insert_run({}), b.insert_run({})] == [1, 2, 1]
