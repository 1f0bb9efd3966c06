"""Samples summed up per heartbeat window, size-capped series, run roll-ups, all by the catalog
(``sampling/window.py``)."""

from __future__ import annotations

import datetime as dt

from sacred_gpu.sampling.sampler import Sample
from sacred_gpu.sampling.window import Rollups, SeriesThinner, combine, summarize


def make(values: dict, second: int = 0) -> Sample:
    return Sample(dt.datetime(2026, 1, 1) + dt.timedelta(seconds=second), float(second), values)


def test_window_rules_follow_the_catalog():
    window = [
        make({"sys/gpu0/util_pct": 10, "sys/gpu0/mem_used_mib": 100, "sys/gpu0/energy_j": 5,
              "sys/gpu0/throttle_reasons": 1}),
        make({"sys/gpu0/util_pct": 30, "sys/gpu0/mem_used_mib": 300, "sys/gpu0/energy_j": 9,
              "sys/gpu0/throttle_reasons": 4}),
        make({"sys/gpu0/util_pct": 50, "sys/gpu0/mem_used_mib": 200, "sys/gpu0/energy_j": 12}),
    ]
    assert summarize(window) == {"sys/gpu0/util_pct": 30.0, "sys/gpu0/mem_used_mib": 300,
                                 "sys/gpu0/energy_j": 12, "sys/gpu0/throttle_reasons": 5.0}
    assert combine("mean", [1, 2]) == 1.5


def test_series_thinner_spans_any_length_within_twice_the_cap():
    thinner = SeriesThinner(cap=1000)
    points = [p for step in range(1_000_000) if (p := thinner.add("sys/gpu0/util_pct", step, float(step), step))]
    points.append(thinner.flush()["sys/gpu0/util_pct"])
    assert 1000 < len(points) <= 2000 + 30
    assert points[0][0] == 0 and points[-1][0] == 999_999  # reaches the end of the run
    assert [p[0] for p in points] == sorted(p[0] for p in points)
    assert thinner.flush() == {}
    assert [p[0] for p in points[:1000]] == list(range(1000))  # full resolution up to the cap
    merged = points[1000]  # then pairs of windows, averaged (the util window rule is mean)
    assert merged[1] == (1000 + 1001) / 2


def test_rollups_summarise_the_whole_run():
    rollups = Rollups({0: "NVIDIA H100 80GB HBM3", 1: "NVIDIA H100 80GB HBM3"})
    rollups.update([
        make({"sys/gpu0/util_pct": 100, "sys/gpu1/util_pct": 0, "sys/gpu0/mem_used_mib": 1000,
              "sys/gpu0/energy_j": 3600, "sys/gpu1/energy_j": 7200, "sys/proc/rss_mib": 500}),
        make({"sys/gpu0/util_pct": 50, "sys/gpu1/util_pct": 50, "sys/gpu0/mem_used_mib": 4000,
              "sys/gpu0/energy_j": 7200, "sys/gpu1/energy_j": 10800, "sys/proc/rss_mib": 700}),
    ])
    doc = rollups.document()
    assert doc["gpu_count"] == 2 and doc["gpu_model"] == "NVIDIA H100 80GB HBM3" and doc["samples"] == 2
    assert doc["gpu_util_mean_pct"] == 50.0 and doc["gpus"][0]["util_mean_pct"] == 75.0
    assert doc["gpu_mem_peak_mib"] == 4000 and doc["gpu_energy_wh"] == 5.0
    assert doc["proc_rss_peak_mib"] == 700 and "cpu_util_mean_pct" not in doc
