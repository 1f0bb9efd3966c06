"""The writes readers ask for (tags, notes, the board's settings, deleting runs): the store hands them to the writer,
the observer never makes them."""

from __future__ import annotations

import re
from typing import Any

from sacred_gpu import schema


class ReaderEdits:
    """Part of :class:`~sacred_gpu.record.writer.MongoWriter`, which sets the collections."""

    database: Any
    collections: schema.Collections
    runs: Any
    metrics: Any
    chunks: Any
    samples: Any
    fs: Any

    def set_omniboard(self, run_id: Any, field: str, value: Any) -> bool:
        """Set ``omniboard.<field>`` (``tags`` or ``notes``) the way Omniboard does; False if the run does not exist."""
        if field not in ("tags", "notes"):
            raise ValueError(f"omniboard field must be 'tags' or 'notes', not {field!r}")
        return self.runs.update_one({"_id": run_id}, {"$set": {f"omniboard.{field}": value}}).matched_count == 1

    def replace_documents(self, collection: str, docs: list[dict[str, Any]]) -> None:
        """Replace the whole content of a small settings collection (Omniboard's column settings) with ``docs``."""
        self.database[collection].delete_many({})
        if docs:
            self.database[collection].insert_many([dict(doc) for doc in docs])

    def set_board_setting(self, key: str, value: Any) -> None:
        """Store one of sacred-board's settings (``value``: any BSON-able value)."""
        self.database[schema.BOARD_SETTINGS].update_one({"_id": key}, {"$set": {"value": value}}, upsert=True)

    def delete_runs(self, run_ids: list[Any]) -> int:
        """Delete runs with their metrics, chunks, samples and artifacts, and the sources and resources no other run
        uses. Returns how many runs were deleted."""
        runs = list(self.runs.find({"_id": {"$in": run_ids}}, {"artifacts": 1, "experiment.sources": 1,
                                                                "resources": 1}))
        ids = [run["_id"] for run in runs]
        if not ids:
            return 0
        files = self.database[f"{schema.GRIDFS_BUCKET}.files"]
        doomed = [a["file_id"] for run in runs for a in run.get("artifacts", [])]
        for run_id in ids:  # values moved out of the run document
            prefix = re.escape(schema.stub_filename(self.collections.runs, run_id, ""))
            doomed += [f["_id"] for f in files.find({"filename": {"$regex": f"^{prefix}"}}, {"_id": 1})]
        for run in runs:
            for _, file_id in run.get("experiment", {}).get("sources", []):
                used = {"_id": {"$nin": ids}, "experiment.sources": {"$elemMatch": {"$in": [file_id]}}}
                if not self.runs.find_one(used, {"_id": 1}):
                    doomed.append(file_id)
            for path, md5 in run.get("resources", []):
                if not self.runs.find_one({"_id": {"$nin": ids}, "resources": [path, md5]}, {"_id": 1}):
                    doomed += [f["_id"] for f in files.find({"filename": path, "md5": md5}, {"_id": 1})]
        for file_id in doomed:
            self.fs.delete(file_id)
        self.metrics.delete_many({"run_id": {"$in": ids}})
        self.chunks.delete_many({"run_id": {"$in": ids}})
        self.samples.delete_many({schema.SAMPLE_RUN: {"$in": ids}})
        return self.runs.delete_many({"_id": {"$in": ids}}).deleted_count
