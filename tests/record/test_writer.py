"""The writer's storage choices: a time-series collection for samples where the server has them."""

from __future__ import annotations

import datetime as dt

from pymongo.errors import CollectionInvalid

from sacred_gpu import schema
from sacred_gpu.record.writer import MongoWriter


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


def test_samples_are_indexed_and_stored_flat(db):
    writer = MongoWriter(db, schema.Collections("p"))
    writer.ensure_indexes()
    when = dt.datetime(2026, 1, 1)
    writer.insert_samples(7, [(when, {"sys/gpu0/util_pct": 50.0, "sys/cpu/util_pct": 3.0})])
    assert db.p_system_samples.find_one({}, {"_id": 0}) == {"t": when, "run_id": 7, "gpu0/util_pct": 50.0,
                                                            "cpu/util_pct": 3.0}
    keys = {tuple(index["key"]) for index in db.p_system_samples.index_information().values()}
    assert (("run_id", 1), ("t", 1)) in keys
