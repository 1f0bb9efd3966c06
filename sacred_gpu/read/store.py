"""The read API: ``connect()`` returns a :class:`RunStore`, the one place that reads runs for notebooks and the board.

Every read goes through here; edits readers make (tags, notes, deleting runs) are handed to the writer. Works on
databases written by Sacred's stock observer (roll-ups computed by aggregation in the database) and by ours (stored
roll-ups used: the runs table reads no metric series). The runs table, the series and samples, and the table's
settings are read by the mixins :class:`RunsTable`, :class:`SeriesReads` and :class:`SettingsReads`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import gridfs

from sacred_gpu import connection, schema
from sacred_gpu.read import live, views
from sacred_gpu.read.errors import NotFound, translated
from sacred_gpu.read.plot_reads import PlotReads
from sacred_gpu.read.rollup_reads import is_stock_run
from sacred_gpu.read.runs_table import RunsTable
from sacred_gpu.read.series import SeriesReads
from sacred_gpu.read.settings import SettingsReads
from sacred_gpu.read.views import RunPage, RunPlots
from sacred_gpu.record.writer import MongoWriter

logger = logging.getLogger(__name__)


def connect(url: str | None = None, db_name: str | None = None, *, client: Any = None,
            collection_prefix: str = "", dead_after: float = schema.DEAD_AFTER, **client_kwargs: Any) -> RunStore:
    """A :class:`RunStore` on ``url`` or on ``client`` (pymongo or mongomock).

    ``url`` takes what ``sacred-board -m`` and ``-g`` take: ``host:port``, ``host:port:db_name``, ``db_name`` or a
    ``mongodb://`` URI (whose path names the database); ``db_name``, if given, overrides the database it names.
    """
    if url is not None:
        spec = connection.parse_mongo_spec(url)
        url, db_name = spec.url, db_name or spec.db_name
    mongo = connection.open_client(url, client, **client_kwargs)
    db_name = db_name or connection.DEFAULT_DB
    where = connection.describe(url if client is None else type(client).__name__, db_name)
    return RunStore(mongo[db_name], schema.Collections(collection_prefix), dead_after=dead_after, where=where)


@translated
class RunStore(RunsTable, SeriesReads, PlotReads, SettingsReads):
    """Reads runs, metric series, system samples and files of one database (``database``: pymongo or mongomock).
    Every public method raises the read side's errors (:mod:`sacred_gpu.read.errors`: ``Unavailable``,
    ``NotFound``, ``BadQuery``, ``Refused``)."""

    def __init__(self, database: Any, collections: schema.Collections | None = None, *,
                 dead_after: float = schema.DEAD_AFTER, where: str | None = None) -> None:
        """``where``: the database in words, for messages (credentials left out)."""
        self.database = database
        self.where = where or f"database {database.name!r}"
        self.collections = collections or schema.Collections()
        self.dead_after = dead_after
        self._runs = database[self.collections.runs]
        self._metrics = database[self.collections.metrics]
        self._chunks = database[self.collections.chunks]
        self._samples = database[self.collections.samples]
        self._writer = MongoWriter(database, self.collections)

    def __repr__(self) -> str:
        return f"RunStore({self.where}, runs collection {self.collections.runs!r})"

    def ping(self) -> None:
        """Ask the server to answer; raises :class:`~sacred_gpu.read.errors.Unavailable` when it cannot be reached."""
        self.database.command("ping")

    # -- one run --------------------------------------------------------------------------------------------------
    def run(self, run_id: Any, fields: Iterable[str] | None = None, *, resolve: bool = True) -> dict[str, Any]:
        """The run document, whole or only ``fields`` (dotted paths). Raises ``NotFound`` if there is no such run.

        Values the observer moved to GridFS because the document would have passed MongoDB's 16 MB limit (stubs,
        see :func:`schema.stub_large_values`) are read back in place; ``resolve=False`` leaves the stubs."""
        doc = self._runs.find_one({"_id": run_id}, dict.fromkeys(fields, 1) if fields is not None else None)
        if doc is None:
            raise NotFound(f"no run {run_id!r}")
        return schema.resolve_stubs(doc, self._read_file) if resolve else doc

    def run_plots(self, run_id: Any) -> RunPlots:
        """What run ``run_id``'s plots need (:class:`~sacred_gpu.read.views.RunPlots`), from one read of its
        document. Raises ``NotFound``."""
        return views.run_plots(self.run(run_id, views.PLOT_FIELDS))

    def run_page(self, run_id: Any, *, files: bool = True, metrics: bool = True) -> RunPage:
        """Everything run ``run_id``'s page shows (:class:`~sacred_gpu.read.views.RunPage`), from one read of its
        document; ``files``: its artifacts' GridFS entries too (one more read); ``metrics``: its metric summary (for
        runs of Sacred's own observer, which store no roll-ups, computed from their series). Raises ``NotFound``."""
        doc = self.run(run_id)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        sources = {str(entry[0]): entry[1] for entry in (doc.get("experiment") or {}).get("sources") or []
                   if isinstance(entry, (list, tuple)) and len(entry) == 2}
        plots = views.run_plots(doc)
        summary = []
        if metrics:
            names = plots.context["metric_names"]
            stored = doc.get(schema.METRIC_ROLLUPS_FIELD)
            rollups = {name: schema.find_rollup(stored, name, names) for name in names} if stored is not None \
                else self._stock_values([doc["_id"]], names).get(doc["_id"], {}) if is_stock_run(doc) else {}
            summary = views.metric_summary(names, rollups)
        listed = self._files([a for a in doc.get("artifacts") or [] if isinstance(a, dict)]) if files else []
        return RunPage(self._row(doc, now, [], {}, []), doc, plots, listed, sources, summary)

    def live_runs(self) -> list[live.LiveRun]:
        """The RUNNING runs (PROBABLY_DEAD ones included), oldest first, as their last heartbeat left them
        (:class:`~sacred_gpu.read.live.LiveRun`): one read, served by the status index, whatever the number of
        finished runs."""
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        docs = self._runs.find({"status": schema.RUNNING}, dict.fromkeys(live.LIVE_FIELDS, 1)) \
            .sort([("start_time", 1), ("_id", 1)])
        return [live.live_run(doc, now, self.dead_after) for doc in docs]

    def artifact(self, run_id: Any, name: str) -> bytes:
        """The content of the run's (last) artifact ``name``. Raises ``NotFound`` if it has none by that name."""
        return self.open_artifact(run_id, name).read()

    def source(self, run_id: Any, path: str, sources: Mapping[str, Any] | None = None) -> bytes:
        """The content of one of the run's source files, by the name Sacred lists it under (``sources``: the run's
        ``{path: file id}`` where already read, as :meth:`run_page` gives them)."""
        if sources is None:
            listed = self.run(run_id, ["experiment.sources"], resolve=False).get("experiment", {}).get("sources", [])
            sources = {name: file_id for name, file_id in listed}
        found = [sources[path]] if path in sources else []
        if not found:
            raise NotFound(f"run {run_id!r} has no source {path!r}")
        return self._read_file(found[0])

    def captured_out(self, run_id: Any) -> str:
        """The run's captured output (as capped by the observer); ``""`` if none. Raises ``NotFound`` if no run."""
        return self.run(run_id, ["captured_out"]).get("captured_out") or ""

    def artifact_files(self, run_id: Any) -> list[dict[str, Any]]:
        """The run's artifacts, the last of each name, in order: ``name``, ``file_id``, ``length`` (bytes),
        ``content_type`` (as stored, or None) and ``upload_date``, from GridFS without reading any content."""
        return self._files(self._artifacts(run_id))

    def _files(self, artifacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        latest = {a["name"]: a["file_id"] for a in artifacts if "name" in a}
        files = {doc["_id"]: doc for doc in self.database[f"{schema.GRIDFS_BUCKET}.files"].find(
            {"_id": {"$in": list(latest.values())}}, {"length": 1, "contentType": 1, "uploadDate": 1})}
        return [{"name": name, "file_id": file_id, "length": files.get(file_id, {}).get("length"),
                 "content_type": files.get(file_id, {}).get("contentType"),
                 "upload_date": files.get(file_id, {}).get("uploadDate")} for name, file_id in latest.items()]

    def open_artifact(self, run_id: Any, name: str, file_id: Any = None) -> Any:
        """The run's (last) artifact ``name`` as a read-only file (``read(n)``, iterable by chunk) that reads from
        GridFS as it goes: for previews of a file's head and streamed downloads (``file_id``: its id, where the
        caller listed the run's artifacts already). Raises ``NotFound`` if none."""
        if file_id is not None:
            return self._file(file_id)
        found = [a for a in self._artifacts(run_id) if a.get("name") == name]
        if not found:
            raise NotFound(f"run {run_id!r} has no artifact {name!r}")
        return self._file(found[-1]["file_id"])

    def _file(self, file_id: Any) -> Any:
        """GridFS file ``file_id``, read as it goes; raises ``gridfs.errors.NoFile`` if there is none."""
        return gridfs.GridFS(self.database, collection=schema.GRIDFS_BUCKET).get(file_id)

    def _read_file(self, file_id: Any) -> bytes:
        """The whole content of GridFS file ``file_id``."""
        return self._file(file_id).read()

    def _artifacts(self, run_id: Any) -> list[dict[str, Any]]:
        return [a for a in self.run(run_id, ["artifacts"]).get("artifacts") or [] if isinstance(a, dict)]

    # -- edits, handed to the writer ------------------------------------------------------------------------------
    def set_tags(self, run_id: Any, tags: Iterable[str]) -> None:
        """Replace the run's tags (Omniboard's ``omniboard.tags``)."""
        tags = [str(tag) for tag in tags]
        if not self._writer.set_omniboard(run_id, "tags", tags):
            raise NotFound(f"no run {run_id!r}")

    def set_notes(self, run_id: Any, notes: str) -> None:
        """Replace the run's notes (Omniboard's ``omniboard.notes``)."""
        if not self._writer.set_omniboard(run_id, "notes", str(notes)):
            raise NotFound(f"no run {run_id!r}")

    def delete(self, run_ids: Iterable[Any]) -> int:
        """Delete runs with their metrics, samples and artifacts, and sources no other run uses; returns the count."""
        return self._writer.delete_runs(list(run_ids))
