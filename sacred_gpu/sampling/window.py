"""From samples to what is stored: window summaries (tier 1), size-capped series, and run roll-ups (tier 3)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sacred_gpu.sampling.sampler import Sample
from sacred_gpu.schema.catalog import MetricSpec, match, spec_for

#: Points a system series holds before windows start to be merged; a series never exceeds twice this
#: (200 000 points of step, value and time: about 9 MB, under MongoDB's 16 MB document limit).
SERIES_CAP = 100_000


def combine(rule: str, values: Sequence[float]) -> float:
    """Summarise values by a catalog window rule: mean, max, last, or bitwise OR."""
    if rule == "max":
        return max(values)
    if rule == "last":
        return values[-1]
    if rule == "or":
        result = 0
        for value in values:
            result |= int(value)
        return float(result)
    return sum(values) / len(values)


def _rule(name: str) -> str:
    spec = spec_for(name)
    return spec.window if spec is not None else "mean"


def summarize(samples: Iterable[Sample]) -> dict[str, float]:
    """One value per metric for a window of samples, by each metric's window rule."""
    columns: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        for name, value in sample.values.items():
            columns[name].append(value)
    return {name: combine(_rule(name), values) for name, values in columns.items()}


class SeriesThinner:
    """Keeps each series under :data:`SERIES_CAP`-ish points while still spanning the whole run.

    Every window is a point until a series holds ``cap`` points; from then on 2, then 4, 8, ... windows are merged
    into one point (by the metric's window rule) after each further ``cap/2``, ``cap/4``, ... points. At the end of
    the run :meth:`flush` emits the windows still waiting to be merged, so the series reaches the run's end.
    """

    def __init__(self, cap: int = SERIES_CAP, rule: str | None = None) -> None:
        """``rule``: how merged windows combine (default: each metric's catalog rule; "last" keeps real points)."""
        self.cap = cap
        self.rule = rule
        self._state: dict[str, dict[str, Any]] = {}

    def add(self, name: str, step: int, value: float, time: Any) -> tuple[int, float, Any] | None:
        """Offer one window's point; returns the point to store, or ``None`` while merging windows."""
        state = self._state.setdefault(name, {"count": 0, "stride": 1, "block": self.cap, "next": self.cap,
                                              "pending": []})
        state["pending"].append(value)
        state["last"] = (step, time)
        if len(state["pending"]) < state["stride"]:
            return None
        point = (step, combine(self.rule or _rule(name), state["pending"]), time)
        state["pending"] = []
        state["count"] += 1
        if state["count"] >= state["next"]:
            state["stride"] *= 2
            state["block"] = max(1, state["block"] // 2)
            state["next"] += state["block"]
        return point

    def flush(self) -> dict[str, tuple[int, float, Any]]:
        """The merged point of every series' waiting windows (at the end of the run)."""
        points = {}
        for name, state in self._state.items():
            if state["pending"]:
                step, time = state["last"]
                points[name] = (step, combine(self.rule or _rule(name), state["pending"]), time)
                state["pending"] = []
        return points


class Rollups:
    """Run-level summaries kept current from every sample: peaks, means, energy. Stored in the run document."""

    def __init__(self, gpu_names: dict[int, str] | None = None) -> None:
        self.gpu_names = gpu_names or {}
        self.samples = 0
        self._max: dict[str, float] = {}
        self._sum: dict[str, float] = defaultdict(float)
        self._count: dict[str, int] = defaultdict(int)
        self._last: dict[str, float] = {}

    def update(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            self.samples += 1
            for name, value in sample.values.items():
                self._max[name] = max(value, self._max.get(name, value))
                self._sum[name] += value
                self._count[name] += 1
                self._last[name] = value

    def _mean(self, name: str) -> float | None:
        return self._sum[name] / self._count[name] if self._count.get(name) else None

    def document(self) -> dict[str, Any]:
        """The ``system`` field of the run document, from the catalog rows that have a ``summary``: per GPU
        (``gpus``), their totals (``gpu_<summary>``) and the host's; keys without data are left out (never None or
        NaN)."""
        gpus: dict[int, dict[str, Any]] = {}
        host: dict[str, float] = {}
        totals: dict[str, tuple[str, list[float]]] = {}
        for name in self._count:
            hit = match(name)
            if hit is None:
                continue
            spec, indices = hit
            if len(indices) == 1:  # a whole GPU's field (MIG instances have no summary of their own)
                gpus.setdefault(indices[0], {"index": indices[0]})
            value = self._summary(name, spec)
            if value is None:
                continue
            if len(indices) == 1:
                gpus[indices[0]][spec.summary] = round(value, 3)
                if spec.total:
                    totals.setdefault(f"gpu_{spec.summary}", (spec.total, []))[1].append(value)
            elif not indices:
                host[spec.summary] = round(value, 3)  # type: ignore[index]
        for index, gpu in gpus.items():
            if index in self.gpu_names:
                gpu["name"] = self.gpu_names[index]
        per_gpu = [gpus[i] for i in sorted(gpus)]
        doc: dict[str, Any] = {"samples": self.samples, "gpu_count": len(per_gpu), "gpus": per_gpu}
        names = Counter(g["name"] for g in per_gpu if "name" in g)
        if names:
            doc["gpu_model"] = names.most_common(1)[0][0]
        for key, (rule, values) in totals.items():
            total = max(values) if rule == "max" else sum(values) / len(values) if rule == "mean" else sum(values)
            doc[key] = round(total, 3)
        doc.update(host)
        return doc

    def _summary(self, name: str, spec: MetricSpec) -> float | None:
        """Series ``name`` summed up over the run as its catalog row says (``None``: the row has no summary)."""
        if not spec.summary or name not in self._count:
            return None
        rule = spec.summarize or "mean"
        value = self._max.get(name) if rule == "max" else self._last.get(name) if rule == "last" else self._mean(name)
        return None if value is None else value * spec.scale
