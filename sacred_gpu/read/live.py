"""What the running runs are doing now, for live exporters: one read of the RUNNING runs' documents, handed over
as :class:`LiveRun` views and as Prometheus gauges (:func:`gauges`, plain data the board's ``/metrics`` route
writes with ``prometheus-client``).

A run's values are those of its last heartbeat: the observer keeps each system metric's value over the last window
(:data:`schema.LATEST_FIELD`) and each user metric's last value and step (:data:`schema.METRIC_ROLLUPS_FIELD`) in the
run's document, so a scrape reads one document per running run and no series. Gauge names follow Prometheus's
conventions (base units in the name, :data:`catalog.PROMETHEUS_SCALE`); the catalog row of each system metric names
its gauge.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sacred_gpu import schema
from sacred_gpu.schema import catalog

#: The run document's fields a live view reads.
LIVE_FIELDS = ("experiment.name", "status", "start_time", "heartbeat", "host.hostname", "host.gpu_inventory",
               schema.METRIC_ROLLUPS_FIELD, schema.LATEST_FIELD)

RUN_LABELS = ("run_id", "experiment", "host")
GPU_LABELS = (*RUN_LABELS, "gpu", "gpu_uuid")
MIG_LABELS = (*GPU_LABELS, "mig")


@dataclass(frozen=True)
class LiveRun:
    """A running run as its last heartbeat left it.

    ``status`` is RUNNING or PROBABLY_DEAD; ``heartbeat_age_s``: seconds since its last heartbeat (or its start,
    before the first); ``gpu_uuids``: NVML index -> UUID of the GPUs it uses; ``system``: each system metric's
    value over the last heartbeat window, by name without ``sys/`` (catalog units); ``metrics``: each user metric's
    ``(last value, its step)``."""

    run_id: Any
    experiment: str
    host: str
    status: str
    start_time: dt.datetime | None  # naive UTC
    heartbeat_age_s: float | None
    gpu_uuids: dict[int, str] = field(default_factory=dict)
    system: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, tuple[float, int | None]] = field(default_factory=dict)


def live_run(doc: Mapping[str, Any], now: dt.datetime, dead_after: float = schema.DEAD_AFTER) -> LiveRun:
    """The :class:`LiveRun` of one RUNNING run's document (``now``: naive UTC, as stored)."""
    host = doc.get("host") if isinstance(doc.get("host"), Mapping) else {}
    seen = doc.get("heartbeat") or doc.get("start_time")
    age = (now - schema.naive_utc(seen)).total_seconds() if isinstance(seen, dt.datetime) else None
    uuids = {int(gpu["index"]): str(gpu.get("uuid") or "") for gpu in host.get("gpu_inventory") or []
             if isinstance(gpu, Mapping) and isinstance(gpu.get("index"), int) and gpu.get("visible", True)}
    latest = doc.get(schema.LATEST_FIELD) if isinstance(doc.get(schema.LATEST_FIELD), Mapping) else {}
    system = {str(name): float(value) for name, value in (latest.get("values") or {}).items() if _number(value)}
    metrics: dict[str, tuple[float, int | None]] = {}
    for key, rollup in (doc.get(schema.METRIC_ROLLUPS_FIELD) or {}).items():
        if not isinstance(rollup, Mapping) or not _number(rollup.get("last")):
            continue
        try:
            name = schema.rollup_name(key)
        except ValueError:
            name = key
        step = rollup.get("last_step")
        metrics[name] = (float(rollup["last"]), int(step) if _number(step) else None)
    status = schema.PROBABLY_DEAD if schema.is_probably_dead(dict(doc), now, dead_after) else str(doc.get("status"))
    start = schema.naive_utc(doc["start_time"]) if isinstance(doc.get("start_time"), dt.datetime) else None
    return LiveRun(doc.get("_id"), str((doc.get("experiment") or {}).get("name") or ""),
                   str(host.get("hostname") or ""), status, start, age, uuids, system, metrics)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Gauge:
    """One Prometheus gauge family: its name, help text, label names and ``samples`` (label values, value)."""

    name: str
    help: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


def gauges(runs: Iterable[LiveRun]) -> list[Gauge]:
    """The Prometheus gauges of ``runs``: one family per catalog row (labelled by run, host and GPU), the throttle
    reasons one by one, and the runs' own gauges (status, start, heartbeat age, each user metric's last value and
    step). Families without samples are left out."""
    runs = list(runs)
    families = _run_gauges(runs) + _system_gauges(runs)
    return [family for family in families if family.samples]


def _run_gauges(runs: list[LiveRun]) -> list[Gauge]:
    running = Gauge("sacred_runs_running", "runs whose status is RUNNING (PROBABLY_DEAD ones included)", (),
                    [((), float(len(runs)))])
    info = Gauge("sacred_run_info", "1 for each running run; its status (RUNNING or PROBABLY_DEAD) as a label",
                 (*RUN_LABELS, "status"))
    start = Gauge("sacred_run_start_time_seconds", "when the run started (Unix time)", RUN_LABELS)
    age = Gauge("sacred_run_heartbeat_age_seconds", "seconds since the run's last heartbeat (or its start)", RUN_LABELS)
    gpus = Gauge("sacred_gpu_run_info", "1 for each GPU a running run records: joins GPU series of other exporters "
                 "(DCGM exporter's UUID label) to the run", GPU_LABELS)
    value = Gauge("sacred_run_metric_last", "each metric's last logged value", (*RUN_LABELS, "metric"))
    step = Gauge("sacred_run_metric_step", "the step of each metric's last logged value", (*RUN_LABELS, "metric"))
    for run in runs:
        labels = _run_labels(run)
        info.samples.append(((*labels, run.status), 1.0))
        if run.start_time is not None:
            start.samples.append((labels, run.start_time.replace(tzinfo=dt.timezone.utc).timestamp()))
        if run.heartbeat_age_s is not None:
            age.samples.append((labels, max(0.0, run.heartbeat_age_s)))
        gpus.samples.extend(((*labels, str(index), uuid), 1.0) for index, uuid in sorted(run.gpu_uuids.items()))
        for name, (last, last_step) in sorted(run.metrics.items()):
            value.samples.append(((*labels, name), last))
            if last_step is not None:
                step.samples.append(((*labels, name), float(last_step)))
    return [running, info, start, age, gpus, value, step]


def _system_gauges(runs: list[LiveRun]) -> list[Gauge]:
    families: dict[str, Gauge] = {}
    reasons = Gauge("sacred_gpu_throttle_reason", "1 where NVML names this reason for lowered clocks in the last "
                    "heartbeat window, else 0", (*GPU_LABELS, "reason"))
    for run in runs:
        for name, value in sorted(run.system.items()):
            hit = catalog.match(catalog.PREFIX + name)
            if hit is None:  # a value of no catalog row
                continue
            spec, indices = hit
            labels = _run_labels(run)
            if indices:
                labels = (*labels, str(indices[0]), run.gpu_uuids.get(indices[0], ""), *map(str, indices[1:]))
            family = families.get(spec.name)
            if family is None:
                names = MIG_LABELS if len(indices) == 2 else GPU_LABELS if indices else RUN_LABELS
                family = families[spec.name] = Gauge(spec.prometheus, f"{spec.description} ({spec.source})", names)
            family.samples.append((labels, value * catalog.PROMETHEUS_SCALE[spec.unit]))
            if spec.field == "throttle_reasons" and len(indices) == 1:
                reasons.samples.extend(((*labels, reason), float(bool(int(value) & bit)))
                                       for bit, reason in catalog.THROTTLE_BITS.items())
    return [*families.values(), reasons]


def _run_labels(run: LiveRun) -> tuple[str, str, str]:
    return str(run.run_id), run.experiment, run.host
