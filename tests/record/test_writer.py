"""The writer (``record/writer.py``): run ids from an atomic counter, records applied once however often they are
replayed, a time-series collection for samples where the server has them; indexes created idempotently."""

from __future__ import annotations

import datetime
import datetime as dt
import threading
import time

import bson
import gridfs
from pymongo.errors import CollectionInvalid

from sacred_gpu import GpuMongoObserver, schema
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.writer import MongoWriter, record
from sacred_gpu.testing.fake_nvml import FakeNvml, two_gpus
from tests.support.experiments import run_experiment
from tests.support.faulty_client import FaultyClient


class ServerDatabase:
    """A database as a MongoDB server of a given version answers, recording collection creation (an explicit fake:
    mongomock has no time-series collections)."""

    def __init__(self, inner, version: tuple[int, ...], exists: bool = False) -> None:
        self.inner, self.version, self.exists, self.created = inner, version, exists, []
        self.client = self

    def server_info(self) -> dict:
        return {"versionArray": list(self.version) + [0, 0]}

    def list_collection_names(self, filter=None) -> list[str]:  # noqa: A002 - pymongo's keyword
        return [filter["name"]] if self.exists else []

    def create_collection(self, name, **options):
        self.created.append((name, options))
        if len(self.created) > 1:
            raise CollectionInvalid("collection exists")

    def __getitem__(self, name):
        return self.inner[name]


def test_samples_go_to_a_time_series_collection_on_mongodb_5(db):
    server = ServerDatabase(db, (7, 0))
    MongoWriter(server)._create_samples_collection()
    assert server.created == [("system_samples", {"timeseries": {"timeField": "t", "metaField": "run_id",
                                                                 "granularity": "seconds"}})]


def test_older_servers_and_existing_collections_get_no_time_series(db):
    old = ServerDatabase(db, (4, 4))
    MongoWriter(old)._create_samples_collection()
    existing = ServerDatabase(db, (7, 0), exists=True)
    MongoWriter(existing)._create_samples_collection()
    assert old.created == [] and existing.created == []


def test_a_concurrent_creation_is_not_an_error(db):
    server = ServerDatabase(db, (6, 0))
    server.created.append(("by another process", {}))
    MongoWriter(server)._create_samples_collection()  # raises CollectionInvalid inside: tolerated
    assert [name for name, _ in server.created] == ["by another process", "system_samples"]  # it was tried


def test_samples_are_indexed_and_stored_flat(db):
    writer = MongoWriter(db, schema.Collections("p"))
    writer.ensure_indexes()
    when = dt.datetime(2026, 1, 1)
    writer.insert_samples(7, [(when, {"sys/gpu0/util_pct": 50.0, "sys/cpu/util_pct": 3.0})])
    assert db.p_system_samples.find_one({}, {"_id": 0}) == {"t": when, "run_id": 7, "gpu0/util_pct": 50.0,
                                                            "cpu/util_pct": 3.0}
    keys = {tuple(index["key"]) for index in db.p_system_samples.index_information().values()}
    assert (("run_id", 1), ("t", 1)) in keys


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


def test_replayed_records_are_applied_once(db, tmp_path):
    writer = MongoWriter(db)
    journal = Journal.create(tmp_path / "spool", {})
    stamp = datetime.datetime(2026, 1, 1)
    metric = record("metric", metric_id=bson.ObjectId(), name="loss", seq=1, steps=[0, 1],
                    values=[1.0, 0.5], timestamps=[stamp, stamp])
    samples = record("samples", samples=[{"t": stamp, "values": {"sys/cpu/util_pct": 5.0}}])
    (tmp_path / "a.txt").write_text("artifact")
    artifact = record("file", kind="artifact", file_id=bson.ObjectId(),
                      spooled=journal.spool_file(tmp_path / "a.txt"), name="a.txt")
    for retry in (False, True, True):
        for rec in (metric, samples, artifact):
            writer.apply(7, rec, journal.files, {}, retry=retry)
    assert db.metrics.find_one()["steps"] == [0, 1]
    assert db.system_samples.count_documents({}) == 1
    assert db.fs.files.count_documents({}) == 1 and gridfs.GridFS(db).find_one({}).read() == b"artifact"


def test_write_error_mid_batch_is_retried_without_duplicates(db, monkeypatch):
    faulty = FaultyClient(db.client)
    obs = GpuMongoObserver(client=faulty, nvml=FakeNvml(two_gpus()), sample_interval=0.02, slow_sample_interval=0.1)

    def main():
        time.sleep(0.15)
        faulty.fail_next_batch_after(3)  # the next bulk insert stores 3 samples, then fails
        time.sleep(0.4)

    run = run_experiment(main, obs, options={"--beat-interval": 0.1})
    assert faulty._batch_failure is None  # the injected failure happened
    times = [s["t"] for s in db.system_samples.find({"run_id": run._id})]
    assert len(times) == len(set(times)) == db.runs.find_one({"_id": run._id})["system"]["samples"]


def test_indexes_are_created_idempotently(client, db):
    run_experiment(lambda: None, GpuMongoObserver(client=client))
    run_experiment(lambda: None, GpuMongoObserver(client=client))
    run_keys = {tuple(index["key"]) for index in db.runs.index_information().values()}
    assert {(("start_time", -1), ("_id", -1)), (("status", 1),), (("experiment.name", 1),),
            (("heartbeat", -1),)} <= run_keys
    metric_keys = {tuple(index["key"]) for index in db.metrics.index_information().values()}
    assert (("run_id", 1), ("name", 1)) in metric_keys
