"""The training process and all its descendants (e.g. PyTorch DataLoader workers), and the ids NVML may report
for them (their PIDs in the other PID namespaces they are in)."""

from __future__ import annotations

import logging
import os

import psutil

logger = logging.getLogger(__name__)


class ProcessTree:
    """The training process and all its descendants (e.g. PyTorch DataLoader workers)."""

    def __init__(self, pid: int | None = None, proc_root: str = "/proc") -> None:
        self.pid = os.getpid() if pid is None else pid
        self._root = psutil.Process(self.pid)
        self._procs: dict[int, psutil.Process] = {self.pid: self._root}
        self._proc_root = proc_root
        self._aliases: dict[int, set[int]] = {}  # pid -> its ids in the other PID namespaces it is in

    def refresh(self) -> None:
        """Re-list the descendants (scans all of /proc: slow ticks only). Survivors keep their Process object."""
        try:
            children = self._root.children(recursive=True)
        except psutil.Error as exc:
            logger.debug("cannot list the children of %d: %s", self.pid, exc)
            children = []
        procs = {self.pid: self._root}
        for child in children:
            old = self._procs.get(child.pid)
            procs[child.pid] = old if old is not None and old == child else child  # == compares create times too
        self._procs = procs

    def processes(self) -> list[psutil.Process]:
        """The processes, root first."""
        return list(self._procs.values())

    def pids(self) -> set[int]:
        return set(self._procs)

    def nvml_pids(self) -> set[int]:
        """The ids NVML may report for the tree's processes: their PIDs, and their ids in every PID namespace they
        are in (``NSpid`` of ``/proc/<pid>/status``: the host's, where this process sees the host's /proc)."""
        ids = set(self._procs)
        for pid in list(self._procs):
            if pid not in self._aliases:
                self._aliases[pid] = _namespace_pids(os.path.join(self._proc_root, str(pid), "status"))
            ids |= self._aliases[pid]
        for gone in set(self._aliases) - set(self._procs):
            del self._aliases[gone]
        return ids

    def _discard(self, pid: int) -> None:
        """Forget a descendant that exited."""
        if pid != self.pid:
            self._procs.pop(pid, None)


def _namespace_pids(status_path: str) -> set[int]:
    """The ``NSpid`` ids of a ``/proc/<pid>/status`` file (empty where the kernel or the file has none)."""
    try:
        with open(status_path, encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return {int(part) for part in line.split()[1:] if part.isdigit()}
    except OSError:
        pass
    return set()
