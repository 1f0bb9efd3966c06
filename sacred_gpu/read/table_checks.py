"""What the runs table says instead of an empty frame: a field, metric or sort key no run has (with the nearest
known name), a comparison whose type never matches what is stored. Checked only where a result looks wrong (no
row, or a column with no value), so a page costs no more when all is well."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sacred_gpu.read.errors import BadQuery
from sacred_gpu.read.query import Query

#: Paths whose names come from the runs themselves: an unknown one is an error naming the nearest known one.
CHECKED = ("config.", "info.", "result.")
#: Comparisons whose value's type must match the stored value's to ever be true.
_ORDERED = ("$eq", "$lt", "$lte", "$gt", "$gte")


def merged_projection(paths: Iterable[str]) -> dict[str, int]:
    """A projection of ``paths`` that MongoDB takes: a path under another one asked for is left out (``config.lr``
    beside ``config``), as is any path asked for twice; projecting both is a "path collision" error."""
    kept: list[str] = []
    for path in sorted(set(paths), key=lambda p: (p.count("."), p)):
        if not any(path == other or path.startswith(other + ".") for other in kept):
            kept.append(path)
    return dict.fromkeys(kept, 1)


def value_at(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a document, or None."""
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _nearest(name: str, known: Sequence[str]) -> str:
    found = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {found[0]!r}?" if found else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class TableChecks:
    """The checks of :class:`~sacred_gpu.read.runs_table.RunsTable` (mixed into the store)."""

    _runs: Any

    def _known_paths(self, path: str) -> list[str]:
        """Known paths near ``path``'s part of the document, for a suggestion (config keys of recent runs)."""
        return list(self.config_keys()) if path.startswith("config.") else []  # type: ignore[attr-defined]

    def _check_field(self, path: str) -> Any:
        """A stored value of ``path`` (some run has it), else raise naming it and the nearest known one."""
        found = self._runs.find_one({path: {"$exists": True}}, {path: 1})
        if found is None:
            raise BadQuery(f"unknown field {path!r} (no run has it){_nearest(path, self._known_paths(path))}")
        return value_at(found, path)

    def _explain_nothing(self, query: Query) -> None:
        """A filter matched no run: raise where a field or metric it names is unknown, or a comparison's type never
        matches what is stored; return where nothing is wrong with it (no run fits)."""
        for path, op, value in query.fields:
            if op == "$exists":
                continue
            if path.startswith(CHECKED):  # the run's own data: a name no run has is most likely mistyped
                stored = self._check_field(path)
            else:  # a field of every run document (tags, notes, ...): nothing to say where no run has it yet
                found = self._runs.find_one({path: {"$exists": True}}, {path: 1})
                stored = None if found is None else value_at(found, path)
            if op not in _ORDERED or stored is None:
                continue
            if _is_number(value) and isinstance(stored, str):
                raise BadQuery(f"{path} holds text ({stored!r}) and {value!r} was read as a number: quote it "
                               f"({path} == '{stored}') to compare text")
            if isinstance(value, str) and _is_number(stored):
                raise BadQuery(f"{path} holds numbers ({stored!r}), compared with the text {value!r}")
        for condition in query.metrics:
            self._check_metric(condition.name)

    def _check_metric(self, name: str) -> None:
        """Raise where no run logged metric ``name``, naming the nearest one logged."""
        if self._runs.find_one({"info.metrics.name": name}, {"_id": 1}) is None:
            known = self.metric_names()  # type: ignore[attr-defined]
            raise BadQuery(f"unknown metric {name!r} (no run logged it){_nearest(name, known)}")

    def _check_columns(self, frame: Any, wanted: Sequence[tuple[str, str]], sort_path: str | None,
                       docs: Sequence[Mapping[str, Any]], sort_metric: str | None = None) -> None:
        """A page with rows: raise where a roll-up column or the sort key (a path, or a metric's roll-up) has no value
        in any row and no run has it."""
        for name in dict.fromkeys(name for name, _ in wanted):
            columns = [f"{name}.{rollup}" for metric, rollup in wanted if metric == name]
            if all(frame[column].isna().all() for column in columns):
                self._check_metric(name)
        if sort_path and docs and all(value_at(doc, sort_path) is None for doc in docs):
            if sort_metric is not None:
                self._check_metric(sort_metric)
            elif sort_path.startswith(CHECKED):
                self._check_field(sort_path)
