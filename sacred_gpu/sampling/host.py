"""Host and process-tree metrics through psutil: CPU, RAM (the container's view under a cgroup limit), swap,
disk and network throughput, and the training process with all its descendants (e.g. DataLoader workers).

Failures degrade per field group: what cannot be read is left out of the sample, never reported as NaN.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from typing import Callable

import psutil

from sacred_gpu.sampling.process_tree import ProcessTree

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
GIB = 1024 * MIB

_V2_INACTIVE = re.compile(rb"^inactive_file (\d+)$", re.M)
_V1_INACTIVE = re.compile(rb"^total_inactive_file (\d+)$", re.M)
#: (limit, usage, stat) files relative to the cgroup root, and the reclaimable-cache line of the stat file.
_CGROUP_LAYOUTS = (
    ("memory.max", "memory.current", "memory.stat", _V2_INACTIVE),
    ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat", _V1_INACTIVE),
)


def _is_disk(name: str) -> bool:
    """A whole block device ("sda", "nvme0n1", "loop0"), not a partition: psutil's own test, done once per run."""
    return os.path.exists("/sys/block/" + name.replace("/", "!"))


def _read_int(path: str) -> int:
    with open(path, "rb") as f:
        return int(f.read())


class _Rate:
    """Per-second rates (MiB/s) of two cumulative byte counters; a key is left out where no delta is valid."""

    __slots__ = ("keys", "t", "a", "b")

    def __init__(self, key_a: str, key_b: str) -> None:
        self.keys = (key_a, key_b)
        self.t: float | None = None
        self.a = self.b = 0

    def update(self, out: dict[str, float], now: float, a: int, b: int) -> None:
        t, pa, pb = self.t, self.a, self.b
        self.t, self.a, self.b = now, a, b
        if t is not None and now > t:
            for key, new, old in zip(self.keys, (a, b), (pa, pb)):
                if new >= old:  # a counter that went back (reset, device gone) gives no rate this tick
                    out[key] = (new - old) / ((now - t) * MIB)


class HostCollector:
    """Host and process-tree metrics through psutil. One instance per run; used from one sampler thread.

    ``clock`` (seconds) times the disk/net rates; it is called once in :meth:`start` and once per :meth:`sample`.
    """

    name = "host"

    def __init__(
        self,
        tree: ProcessTree | None = None,
        workdir: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        cgroup_root: str = "/sys/fs/cgroup",
    ) -> None:
        self.tree = tree if tree is not None else ProcessTree()
        self.workdir = workdir if workdir is not None else os.getcwd()
        self.clock = clock
        self.cgroup_root = cgroup_root
        self._disks: frozenset[str] = frozenset()  # whole devices whose bytes are summed
        self._disk_rate = _Rate("sys/disk/read_mib_s", "sys/disk/write_mib_s")
        self._net_rate = _Rate("sys/net/rx_mib_s", "sys/net/tx_mib_s")
        self._cgroup: tuple[str, str, re.Pattern[bytes], int] | None = None  # usage, stat, pattern, limit (bytes)
        self._swap_total: int | None = None  # bytes, at the last look
        self._closed = False

    def start(self) -> None:
        """Detect a cgroup memory limit, list the tree, prime the CPU counters and the rate baselines."""
        self._cgroup = self._detect_cgroup()
        try:
            self.tree.refresh()
            psutil.cpu_percent(None)
            for proc in self.tree.processes():
                try:
                    proc.cpu_percent(None)
                except psutil.Error as exc:
                    logger.debug("cannot prime process %d: %s", proc.pid, exc)
            self._rates(float(self.clock()), {}, find_disks=True)
        except Exception as exc:
            logger.debug("host collector start incomplete: %s", exc)

    def close(self) -> None:
        """Stop sampling; later :meth:`sample` calls return an empty dict."""
        self._closed = True

    def sample(self, slow: bool) -> dict[str, float]:
        """One reading: the fast fields always; the workdir disk fields, after a tree refresh, when ``slow``."""
        out: dict[str, float] = {}
        if self._closed:
            return out
        try:
            self._sample(slow, out)
            return {k: float(v) for k, v in out.items() if math.isfinite(v)}
        except Exception as exc:  # a bug, not a missing field: keep the sampler alive
            logger.debug("host sample failed: %s", exc, exc_info=True)
            return {}

    def _sample(self, slow: bool, out: dict[str, float]) -> None:
        try:
            now: float | None = float(self.clock())
        except Exception as exc:
            logger.debug("clock failed: %s", exc)
            now = None
        if slow:
            try:
                self.tree.refresh()
            except Exception as exc:
                logger.debug("process tree refresh failed: %s", exc)
        try:
            out["sys/cpu/util_pct"] = psutil.cpu_percent(None)
        except Exception as exc:
            logger.debug("system cpu unavailable: %s", exc)
        self._process_fields(out)
        self._memory_fields(out, slow)
        if now is not None:
            self._rates(now, out)
        if slow:
            try:
                usage = psutil.disk_usage(self.workdir)
                out["sys/disk/workdir_used_pct"] = usage.percent
                out["sys/disk/workdir_free_gib"] = usage.free / GIB
            except Exception as exc:
                logger.debug("disk usage of %s unavailable: %s", self.workdir, exc)

    def _process_fields(self, out: dict[str, float]) -> None:
        """CPU (% of one core), RSS (MiB), threads and count, summed over the processes that could be read."""
        cpu = 0.0
        rss = threads = count = 0
        for proc in self.tree.processes():
            try:
                with proc.oneshot():
                    p_cpu = proc.cpu_percent(None)
                    p_rss = proc.memory_info().rss
                    p_threads = proc.num_threads()
            except psutil.NoSuchProcess:  # exited since the last refresh (zombies included)
                self.tree._discard(proc.pid)
                continue
            except Exception as exc:  # AccessDenied, an unreadable /proc file, ...
                logger.debug("process %d unreadable: %s", proc.pid, exc)
                continue
            cpu += p_cpu
            rss += p_rss
            threads += p_threads
            count += 1
        out["sys/proc/cpu_pct"] = cpu
        out["sys/proc/rss_mib"] = rss / MIB
        out["sys/proc/threads"] = threads
        out["sys/proc/count"] = count

    def _memory_fields(self, out: dict[str, float], slow: bool) -> None:
        """RAM used/available (MiB) and used % (the container's under a cgroup limit); swap used (MiB).

        Without swap space, swap is looked at again only on slow ticks (a swapon shows up one slow tick late).
        """
        try:
            if self._cgroup is None:
                vm = psutil.virtual_memory()
                used, available, pct = vm.used, vm.available, vm.percent
            else:
                usage_file, stat_file, pattern, limit = self._cgroup
                usage = _read_int(usage_file)
                with open(stat_file, "rb") as f:
                    match = pattern.search(f.read())
                used = max(0, usage - (int(match.group(1)) if match else 0))
                available, pct = max(0, limit - used), used / limit * 100.0
            out["sys/mem/used_mib"] = used / MIB
            out["sys/mem/available_mib"] = available / MIB
            out["sys/mem/used_pct"] = pct
        except Exception as exc:
            logger.debug("memory unavailable: %s", exc)
        try:
            if slow or self._swap_total != 0:
                swap = psutil.swap_memory()  # ~60 us: it also parses /proc/vmstat
                self._swap_total = swap.total
                out["sys/swap/used_mib"] = swap.used / MIB
            else:
                out["sys/swap/used_mib"] = 0.0
        except Exception as exc:
            logger.debug("swap unavailable: %s", exc)

    def _rates(self, now: float, out: dict[str, float], find_disks: bool = False) -> None:
        """Disk read/write and network rx/tx throughput (MiB/s) since the previous call.

        Disk bytes are summed over whole devices (partitions would count twice), chosen when ``find_disks``.
        """
        try:
            per_disk = psutil.disk_io_counters(perdisk=True, nowrap=False) or {}
            if find_disks:
                self._disks = frozenset(name for name in per_disk if _is_disk(name))
            disks = [per_disk[name] for name in self._disks if name in per_disk]
            if disks:
                read, write = sum(d.read_bytes for d in disks), sum(d.write_bytes for d in disks)
                self._disk_rate.update(out, now, read, write)
        except Exception as exc:
            logger.debug("disk counters unavailable: %s", exc)
        try:
            net = psutil.net_io_counters(nowrap=False)
            if net is not None:
                self._net_rate.update(out, now, net.bytes_recv, net.bytes_sent)
        except Exception as exc:
            logger.debug("network counters unavailable: %s", exc)

    def _detect_cgroup(self) -> tuple[str, str, re.Pattern[bytes], int] | None:
        """The container's memory files when its limit is below the host's RAM; ``None`` means the host view."""
        for limit_name, usage_name, stat_name, pattern in _CGROUP_LAYOUTS:
            limit_file = os.path.join(self.cgroup_root, limit_name)
            if not os.path.exists(limit_file):
                continue
            try:
                with open(limit_file, "rb") as f:
                    text = f.read().strip()
                if text == b"max":  # v2: no limit
                    return None
                limit = int(text)
                usage_file = os.path.join(self.cgroup_root, usage_name)
                stat_file = os.path.join(self.cgroup_root, stat_name)
                _read_int(usage_file)
                if 0 < limit < psutil.virtual_memory().total and os.path.exists(stat_file):
                    logger.debug("memory from the cgroup at %s (limit %d bytes)", self.cgroup_root, limit)
                    return usage_file, stat_file, pattern, limit
            except Exception as exc:
                logger.debug("cgroup memory files unreadable under %s: %s", self.cgroup_root, exc)
            return None
        return None
