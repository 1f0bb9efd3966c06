"""What a run records while it goes: metric points (the user's series and the observer's own, apart), system
windows and the run's roll-ups."""

from __future__ import annotations

import logging
import threading
from typing import Any

from sacred_gpu import schema
from sacred_gpu.record.guards import never_raises
from sacred_gpu.record.metric_records import MetricSeries
from sacred_gpu.sampling.monitor import Window

logger = logging.getLogger(__name__)


class RunRecords:
    """Part of :class:`~sacred_gpu.record.observer.GpuMongoObserver` (whose ``__init__`` sets the state used here)."""

    @never_raises
    def log_metrics(self, metrics_by_name, info):  # noqa: ANN001
        """Record the points logged since the last heartbeat; reference new series in ``info["metrics"]``."""
        if self._not_recording("log_metrics", sum(len(series["values"]) for series in metrics_by_name.values())):
            return
        self._beat_thread = threading.current_thread()
        for name, series in metrics_by_name.items():
            values = [schema.metric_value(value) for value in series["values"]]
            steps, stamps = series["steps"], series["timestamps"]
            if None in values:
                if f"values of {name}" not in self._reported:
                    self._reported.add(f"values of {name}")
                    logger.warning("sacred-gpu: metric %r got values that are not numbers; they are dropped", name)
                kept = [i for i, value in enumerate(values) if value is not None]
                steps, values, stamps = [steps[i] for i in kept], [values[i] for i in kept], [stamps[i] for i in kept]
            if values:
                self._append_series(name, list(steps), values, list(stamps), info)

    def _append_series(self, name: str, steps: list, values: list, stamps: list, info: dict[str, Any],
                       system: bool = False) -> None:
        """Append to the run's series ``name`` (the user's, or with ``system`` the observer's own: two namespaces, so
        a user's ``sys/...`` metric is kept as logged); a new series is referenced in ``info["metrics"]`` as Sacred
        does, the observer's marked with its origin."""
        owned = self._system_series if system else self._series
        series = owned.get(name)
        if series is None:
            series = owned[name] = MetricSeries(name, schema.new_object_id(), system=system)
            entry = {"name": name, "id": str(series.metric_id)}
            info.setdefault("metrics", []).append({**entry, schema.ORIGIN: schema.SYSTEM_ORIGIN} if system else entry)
        with self._lock:
            records = series.records(steps, values, stamps, self._next_seq)
        for rec in records:
            self._submit_record(rec)

    def _metric_rollups(self) -> dict[str, Any]:
        """The run field holding every user series' roll-ups (min, max, mean, first, last and their steps); the
        observer's own series are summed up in ``system`` instead."""
        with self._lock:
            rollups = {schema.rollup_key(name): dict(series.rollup) for name, series in self._series.items()
                       if series.rollup}
        return {schema.METRIC_ROLLUPS_FIELD: rollups} if rollups else {}

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _record_window(self, window: Window | None, info: dict[str, Any]) -> dict[str, Any]:
        """Record a window's samples (tier 2) and series points (tier 1); return the run fields to ``$set``."""
        if window is None:
            return {}
        try:
            if window.samples:
                self._submit("samples", samples=[{"t": t, "values": values} for t, values in window.samples])
            for name, (step, value, stamp) in window.points.items():
                self._append_series(name, [step], [value], [stamp], info, system=True)
        except Exception as exc:  # noqa: BLE001 - the heartbeat's own fields are still recorded
            self._report_failure("system metrics", exc)
        fields: dict[str, Any] = {schema.SYSTEM_FIELD: window.rollups} if window.rollups else {}
        if window.latest:
            fields[schema.LATEST_FIELD] = schema.latest_document(window.time, window.latest)
        return fields

    def _final_fields(self) -> dict[str, Any]:
        """Stop sampling and record what is left; the roll-ups (and info, for new series) go with the final status."""
        if self.monitor is None:
            return {}
        info = self._info if self._info is not None else {}
        known = len(info.get("metrics", []))
        try:
            window = self.monitor.stop()
        except Exception as exc:  # noqa: BLE001
            self._report_failure("stopping the sampler", exc)
            window = None
        self.monitor = None
        fields = self._record_window(window, info)
        if len(info.get("metrics", [])) > known:
            fields["info"] = schema.flatten(info)
        return fields
