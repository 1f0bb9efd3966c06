"""Shared fixtures: an in-memory MongoDB (mongomock, through the real pymongo API) and real Sacred experiments."""

from __future__ import annotations

from typing import Any

import mongomock
import pytest

from sacred_gpu import GpuMongoObserver, connection
from sacred_gpu.testing.fake_nvml import FakeNvml


@pytest.fixture(autouse=True)
def spool(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every test journals into its own spool directory, never the user's."""
    folder = tmp_path_factory.mktemp("spool")
    monkeypatch.setenv("SACRED_GPU_SPOOL", str(folder))
    monkeypatch.delenv("SACRED_GPU_OFFLINE", raising=False)
    return folder


@pytest.fixture
def client() -> Any:
    return connection.open_client(client=mongomock.MongoClient())


@pytest.fixture
def db(client: Any) -> Any:
    return client["sacred"]


@pytest.fixture
def observer(client: Any) -> GpuMongoObserver:
    """Our observer on the in-memory database, reading GPUs from a simulated NVML without any device."""
    return GpuMongoObserver(client=client, db_name="sacred", nvml=FakeNvml([]))
