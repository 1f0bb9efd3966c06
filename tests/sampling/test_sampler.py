"""The sampler thread's schedule and fault handling (``sampling/sampler.py``)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from sacred_gpu.sampling.sampler import Sampler


class Counting:
    """A collector that reports how often it was called, optionally slowly or failing."""

    name = "counting"

    def __init__(self, cost: float = 0.0, fail: bool = False, values: dict | None = None) -> None:
        self.cost, self.fail, self.values = cost, fail, values
        self.fast = self.slow = 0
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def sample(self, slow: bool) -> dict:
        if self.cost:
            time.sleep(self.cost)
        self.slow += slow
        self.fast += not slow
        if self.fail:
            raise RuntimeError("sensor fell off")
        return dict(self.values) if self.values is not None else {"x/value": 1.0}

    def close(self) -> None:
        self.closed = True


def test_schedule_is_drift_free_and_slow_fields_come_every_slow_interval():
    collector = Counting(cost=0.01)  # each tick takes 10 ms of a 20 ms interval
    sampler = Sampler([collector], interval=0.02, slow_interval=0.1)
    sampler.start()
    time.sleep(1.0)
    sampler.stop()
    ticks = collector.fast + collector.slow
    assert ticks >= 42  # sleeping a full interval after each tick would give ~33
    assert collector.slow == pytest.approx(ticks / 5, abs=2)
    assert collector.started and collector.closed and not sampler._thread.is_alive()
    assert len(sampler.drain()) == ticks and sampler.drain() == []


def test_a_failing_collector_never_kills_the_thread_or_the_others(caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    broken, healthy = Counting(fail=True), Counting()
    sampler = Sampler([broken, healthy], interval=0.01, slow_interval=0.05)
    sampler.start()
    time.sleep(0.3)
    assert sampler._thread.is_alive()
    sampler.stop()
    samples = sampler.drain()
    assert len(samples) > 10 and all(s.values == {"x/value": 1.0} for s in samples)
    assert broken.fast + broken.slow == len(samples)  # retried every tick
    assert len(caplog.records) == 1


def test_values_that_are_not_finite_numbers_are_never_kept():
    collector = Counting(values={"a": float("nan"), "b": float("inf"), "c": None, "d": "N/A", "e": 2.5, "f": 3})
    sampler = Sampler([collector])
    sampler.open()
    assert sampler.tick(slow=False).values == {"e": 2.5, "f": 3}


def test_collector_that_cannot_start_is_left_out(caplog):
    class Broken(Counting):
        def start(self) -> None:
            raise OSError("no /proc")

    broken, healthy = Broken(), Counting()
    sampler = Sampler([broken, healthy])
    sampler.open()
    assert sampler.collectors == [healthy] and broken.closed
    assert sampler.tick(slow=True).values == {"x/value": 1.0}


def test_buffer_is_bounded_when_nobody_drains(caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    sampler = Sampler([Counting()], max_buffered=5)
    sampler.open()
    for _ in range(8):
        sampler.tick(slow=False)
    assert len(sampler.drain()) == 5 and len(caplog.records) == 1


def test_stop_from_another_thread_joins_promptly():
    sampler = Sampler([Counting()], interval=10.0, slow_interval=10.0)
    sampler.start()
    started = time.monotonic()
    threading.Thread(target=sampler.stop).start()
    sampler._thread.join(2)
    assert not sampler._thread.is_alive() and time.monotonic() - started < 1
