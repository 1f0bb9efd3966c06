"""Journals written and read back for the tests of the journal, its frames and the spool."""

from __future__ import annotations

from sacred_gpu.record.journal import Journal


def records(count: int, size: int = 100) -> list[dict]:
    return [{"op": "metric", "seq": i, "payload": "x" * size} for i in range(count)]


def read_all(journal: Journal, **kwargs) -> list:
    return [entry for entry, _ in journal.read(journal.acked(), **kwargs)]


def segment_file(journal: Journal):
    [path] = sorted(journal.folder.glob("*.log"))
    return path
