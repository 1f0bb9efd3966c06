"""The host collector on the real machine through psutil; fakes only for counters, cgroup files and a denied process."""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path
from typing import Any

import psutil
import pytest

from sacred_gpu.sampling import host
from sacred_gpu.sampling.host import HostCollector, ProcessTree

MIB = 1024 * 1024
FAST_KEYS = {
    "sys/cpu/util_pct",
    "sys/proc/cpu_pct",
    "sys/proc/rss_mib",
    "sys/proc/threads",
    "sys/proc/count",
    "sys/mem/used_mib",
    "sys/mem/available_mib",
    "sys/mem/used_pct",
    "sys/swap/used_mib",
}
DISK_KEYS = {"sys/disk/read_mib_s", "sys/disk/write_mib_s"}
NET_KEYS = {"sys/net/rx_mib_s", "sys/net/tx_mib_s"}
SLOW_KEYS = {"sys/disk/workdir_used_pct", "sys/disk/workdir_free_gib"}

Disk = namedtuple("Disk", "read_bytes write_bytes")
Net = namedtuple("Net", "bytes_sent bytes_recv")


def _all_finite_floats(sample: dict[str, Any]) -> bool:
    return all(type(v) is float and math.isfinite(v) for v in sample.values())


def _spawn(code: str) -> subprocess.Popen[str]:
    """A child Python process that prints "ready" once set up."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


@contextlib.contextmanager
def _reaped(child: subprocess.Popen[str]) -> Any:
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def test_fast_and_slow_keys(tmp_path: Path) -> None:
    collector = HostCollector(workdir=str(tmp_path))
    collector.start()
    time.sleep(0.01)
    fast = collector.sample(slow=False)
    expected = set(FAST_KEYS)
    if any(host._is_disk(name) for name in psutil.disk_io_counters(perdisk=True) or {}):
        expected |= DISK_KEYS
    if psutil.net_io_counters() is not None:
        expected |= NET_KEYS
    assert expected <= fast.keys()
    assert not fast.keys() & SLOW_KEYS
    assert _all_finite_floats(fast)
    assert 0.0 <= fast["sys/cpu/util_pct"] <= 100.0
    assert fast["sys/proc/count"] >= 1 and fast["sys/proc/threads"] >= 1 and fast["sys/proc/rss_mib"] > 1

    slow = collector.sample(slow=True)
    assert expected | SLOW_KEYS <= slow.keys()
    assert _all_finite_floats(slow)
    assert 0.0 < slow["sys/disk/workdir_used_pct"] <= 100.0
    assert slow["sys/disk/workdir_free_gib"] == pytest.approx(psutil.disk_usage(str(tmp_path)).free / 2**30, rel=0.05)

    collector.close()
    assert collector.sample(slow=True) == {}


def test_child_process_joins_and_leaves_the_tree() -> None:
    tree = ProcessTree()
    collector = HostCollector(tree)
    collector.start()
    before = collector.sample(slow=True)
    code = "import time; b = b'x' * (200 * 1024 * 1024); print('ready', flush=True); time.sleep(30)"
    with _reaped(_spawn(code)) as child:
        assert child.pid not in tree.pids()
        with_child = collector.sample(slow=True)
        assert child.pid in tree.pids()
        assert tree.processes()[0].pid == tree.pid
        assert with_child["sys/proc/count"] == before["sys/proc/count"] + 1 >= 2
        assert with_child["sys/proc/rss_mib"] - before["sys/proc/rss_mib"] >= 150
    # Gone without a refresh: the fast tick drops it silently.
    after_fast = collector.sample(slow=False)
    assert child.pid not in tree.pids()
    assert after_fast["sys/proc/count"] == before["sys/proc/count"]
    assert after_fast["sys/proc/rss_mib"] - before["sys/proc/rss_mib"] < 100
    after_slow = collector.sample(slow=True)
    assert child.pid not in tree.pids()
    assert after_slow["sys/proc/count"] == before["sys/proc/count"]


def test_refresh_keeps_process_objects() -> None:
    tree = ProcessTree()
    with _reaped(_spawn("import time; print('ready', flush=True); time.sleep(30)")) as child:
        tree.refresh()
        first = {p.pid: p for p in tree.processes()}
        tree.refresh()
        assert all(p is first[p.pid] for p in tree.processes())
        assert child.pid in first


def test_busy_child_counts_in_cpu() -> None:
    collector = HostCollector()
    collector.start()
    with _reaped(_spawn("print('ready', flush=True)\nwhile True: pass")):
        collector.sample(slow=True)  # lists and primes the child
        time.sleep(0.4)
        sample = collector.sample(slow=False)
    assert sample["sys/proc/cpu_pct"] > 20


def test_rates_from_counter_deltas(monkeypatch: pytest.MonkeyPatch) -> None:
    disks: list[dict[str, Disk] | None] = [
        {"sda": Disk(0, 0), "sda1": Disk(0, 0), "nvme0n1": Disk(0, 0)},  # start
        {"sda": Disk(2 * MIB, 4 * MIB), "sda1": Disk(99 * MIB, 99 * MIB), "nvme0n1": Disk(2 * MIB, 0)},
        {"sda": Disk(0, 6 * MIB), "sda1": Disk(99 * MIB, 99 * MIB), "nvme0n1": Disk(2 * MIB, 0)},  # reads reset
        {"sda": Disk(1 * MIB, 7 * MIB), "sda1": Disk(0, 0), "nvme0n1": Disk(2 * MIB, 0)},  # zero clock delta
        None,  # counters gone
    ]
    nets = [Net(0, 0), Net(1 * MIB, 6 * MIB), Net(1 * MIB, 6 * MIB), Net(2 * MIB, 7 * MIB), Net(5 * MIB, 7 * MIB)]
    times = [0.0, 2.0, 4.0, 4.0, 6.0]

    def fake_disk(perdisk: bool = False, nowrap: bool = True) -> dict[str, Disk] | None:
        return disks.pop(0)

    monkeypatch.setattr(host.psutil, "disk_io_counters", fake_disk)
    monkeypatch.setattr(host.psutil, "net_io_counters", lambda pernic=False, nowrap=True: nets.pop(0))
    monkeypatch.setattr(host, "_is_disk", lambda name: name in {"sda", "nvme0n1"})  # sda1 is a partition
    collector = HostCollector(clock=lambda: times.pop(0))
    collector.start()

    first = collector.sample(slow=False)
    assert first["sys/disk/read_mib_s"] == 2.0  # (2 + 2) MiB over 2 s; the partition is not counted
    assert first["sys/disk/write_mib_s"] == 2.0
    assert first["sys/net/rx_mib_s"] == 3.0
    assert first["sys/net/tx_mib_s"] == 0.5

    reset = collector.sample(slow=False)
    assert "sys/disk/read_mib_s" not in reset
    assert reset["sys/disk/write_mib_s"] == 1.0
    assert reset["sys/net/rx_mib_s"] == 0.0 and reset["sys/net/tx_mib_s"] == 0.0

    same_time = collector.sample(slow=False)
    assert not same_time.keys() & (DISK_KEYS | NET_KEYS)
    assert "sys/cpu/util_pct" in same_time

    no_disk = collector.sample(slow=False)
    assert not no_disk.keys() & DISK_KEYS
    assert no_disk["sys/net/tx_mib_s"] == 1.5  # 3 MiB since the zero-delta tick, 2 s
    assert FAST_KEYS <= no_disk.keys()
    assert _all_finite_floats(no_disk)


def _write(root: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return str(root)


def _memory(cgroup_root: str) -> dict[str, float]:
    collector = HostCollector(cgroup_root=cgroup_root)
    collector.start()
    return collector.sample(slow=False)


def _assert_host_memory(sample: dict[str, float]) -> None:
    vm = psutil.virtual_memory()
    tolerance = 0.05 * vm.total / MIB
    assert sample["sys/mem/used_mib"] == pytest.approx(vm.used / MIB, abs=tolerance)
    assert sample["sys/mem/available_mib"] == pytest.approx(vm.available / MIB, abs=tolerance)
    assert sample["sys/mem/used_pct"] == pytest.approx(vm.percent, abs=5)


def test_cgroup_v2_memory(tmp_path: Path) -> None:
    assert psutil.virtual_memory().total > 2**30
    stat = "anon 1\ninactive_anon 7\nactive_file 5\ninactive_file 104857600\nfile 9\n"
    root = _write(tmp_path, {"memory.max": "1073741824\n", "memory.current": "536870912\n", "memory.stat": stat})
    collector = HostCollector(cgroup_root=root)
    collector.start()
    sample = collector.sample(slow=False)
    assert sample["sys/mem/used_mib"] == 412.0  # 512 MiB charged, 100 MiB of it reclaimable cache
    assert sample["sys/mem/available_mib"] == 612.0
    assert sample["sys/mem/used_pct"] == pytest.approx(412 / 1024 * 100)
    (tmp_path / "memory.current").write_text("838860800\n")  # usage re-read every tick
    assert collector.sample(slow=False)["sys/mem/used_mib"] == 700.0


def test_cgroup_v1_memory(tmp_path: Path) -> None:
    files = {
        "memory/memory.limit_in_bytes": "2147483648\n",
        "memory/memory.usage_in_bytes": "1073741824\n",
        "memory/memory.stat": "cache 5\ninactive_file 1\ntotal_cache 5\ntotal_inactive_file 209715200\n",
    }
    sample = _memory(_write(tmp_path, files))
    assert sample["sys/mem/used_mib"] == 824.0
    assert sample["sys/mem/available_mib"] == 2048.0 - 824.0
    assert sample["sys/mem/used_pct"] == pytest.approx(824 / 2048 * 100)


@pytest.mark.parametrize(
    "files",
    [
        {"memory.max": "max\n", "memory.current": "536870912\n", "memory.stat": "inactive_file 0\n"},
        {
            "memory/memory.limit_in_bytes": "9223372036854771712\n",
            "memory/memory.usage_in_bytes": "1073741824\n",
            "memory/memory.stat": "total_inactive_file 0\n",
        },
        {},
    ],
    ids=["v2-max", "v1-huge", "none"],
)
def test_unlimited_cgroup_uses_host_memory(tmp_path: Path, files: dict[str, str]) -> None:
    sample = _memory(_write(tmp_path, files))
    assert sample["sys/mem/used_mib"] != 412.0
    _assert_host_memory(sample)


class _Denied:
    """A process the sampler may not read."""

    pid = 2**22 + 1

    def oneshot(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def _deny(self, *args: Any) -> Any:
        raise psutil.AccessDenied(self.pid)

    cpu_percent = memory_info = num_threads = _deny


class _TreeWithDenied(ProcessTree):
    def processes(self) -> list[Any]:
        return [*super().processes(), _Denied()]


def test_unreadable_process_and_field_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    collector = HostCollector(_TreeWithDenied())
    collector.start()

    def broken() -> None:
        raise OSError("no /proc/vmstat")

    monkeypatch.setattr(host.psutil, "swap_memory", broken)
    sample = collector.sample(slow=True)
    assert "sys/swap/used_mib" not in sample
    readable = [psutil.Process(), *psutil.Process().children(recursive=True)]  # earlier tests may leave children
    assert sample["sys/proc/count"] == len(readable)  # the denied process is not counted
    own_rss = psutil.Process().memory_info().rss / MIB
    assert sample["sys/proc/rss_mib"] >= own_rss * 0.8
    assert (FAST_KEYS - {"sys/swap/used_mib"}) | SLOW_KEYS <= sample.keys()
    assert _all_finite_floats(sample)


@pytest.mark.parametrize("total", [0, 4 * 2**30])
def test_swap_without_swap_space_is_rechecked_on_slow_ticks(monkeypatch: pytest.MonkeyPatch, total: int) -> None:
    Swap = namedtuple("Swap", "total used")
    calls: list[int] = []

    def fake_swap() -> Swap:
        calls.append(1)
        return Swap(total, total // 4)

    monkeypatch.setattr(host.psutil, "swap_memory", fake_swap)
    collector = HostCollector()
    collector.start()
    fast = [collector.sample(slow=False)["sys/swap/used_mib"] for _ in range(3)]
    assert fast == [total / 4 / MIB] * 3
    assert len(calls) == (1 if total == 0 else 3)
    assert collector.sample(slow=True)["sys/swap/used_mib"] == total / 4 / MIB
    assert len(calls) == (2 if total == 0 else 4)
