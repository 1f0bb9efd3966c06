"""Shared fixtures: an in-memory MongoDB (mongomock, through the real pymongo API) and real Sacred experiments."""

from __future__ import annotations

from typing import Any, Callable

import mongomock
import pytest
from sacred import Experiment

from sacred_gpu import GpuMongoObserver, connection
from sacred_gpu.testing.fake_nvml import FakeNvml

#: Sacred options every test run uses: frequent heartbeats, and capture that coexists with pytest's.
FAST = {"--beat-interval": 0.05, "--capture": "sys"}


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


def run_experiment(
    main: Callable[..., Any],
    *observers: Any,
    config: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    name: str = "test_experiment",
) -> Any:
    """Run ``main`` as a real Sacred experiment with the given observers; returns Sacred's ``Run``.

    An exception raised by ``main`` propagates, as Sacred re-raises it after notifying the observers.
    """
    ex = Experiment(name, save_git_info=False)
    ex.add_config(config or {"lr": 0.01})
    ex.main(main)
    ex.observers.extend(observers)
    return ex.run(options={**FAST, **(options or {})})
