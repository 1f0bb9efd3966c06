"""Runs for the run page's tests, recorded by real Sacred experiments through GpuMongoObserver into mongomock:
one with artifacts of every kind, ANSI colours and hostile strings in its output, and simulated GPUs; one failed;
one whose output the observer capped."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from sacred_gpu import GpuMongoObserver
from sacred_gpu.read.store import RunStore, connect
from sacred_gpu.testing.fake_nvml import FakeNvml, two_gpus
from tests.support.board_data import HOSTILE, SCRIPT
from tests.support.experiments import run_experiment

RED = "\x1b[31m"
RESET = "\x1b[0m"
CSV_TEXT = "epoch,loss,acc\n" + "".join(f"{i},{1 / (i + 1):.3f},{i / 10:.1f}\n" for i in range(5))
HOSTILE_HTML = f"<html><body><h1>report</h1>{SCRIPT}<img src=x onerror=\"window.__xss=1\"></body></html>"


def tiny_png(width: int = 3, height: int = 2) -> bytes:
    """A valid RGB PNG of ``width`` x ``height`` red pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def artifact_files(folder: Path) -> dict[str, Path]:
    """One file of each kind the page previews, plus a binary one it does not."""
    files = {"plot.png": tiny_png(), "notes.txt": b"first line\nsecond line\n", "table.csv": CSV_TEXT.encode(),
             "report.html": HOSTILE_HTML.encode(), "clip.mp4": b"\x00\x00\x00\x18ftypmp42" + bytes(64),
             "weights.bin": bytes(range(256)) * 4}
    paths = {}
    for name, content in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(content)
    return paths


def record_page_runs(client: Any, folder: Path) -> RunStore:
    """Run 1: COMPLETED, nested config, ANSI and hostile output, six artifacts, two simulated GPUs, info.
    Run 2: FAILED (``RuntimeError: diverged at step 3``). Run 3: COMPLETED, output capped by the observer."""
    paths = artifact_files(folder)

    def rich(_run: Any, lr: float, optimizer: dict, note: str) -> float:
        print(f"{RED}error-ish red text{RESET} and plain")
        print(SCRIPT)
        print(HOSTILE)
        for epoch in range(3):
            print(f"epoch {epoch} loss {1 / (epoch + 1):.2f}")
        for name, path in paths.items():
            _run.add_artifact(str(path), name=name)
        _run.info["custom"] = {"answer": 42, "html": SCRIPT}
        return 0.25

    config = {"lr": 0.1, "optimizer": {"name": "adam", "betas": [0.9, 0.999]}, "note": SCRIPT}
    run_experiment(rich, GpuMongoObserver(client=client, nvml=FakeNvml(two_gpus()), sampling=False),
                   config=config, name="vision")

    def failing(_run: Any, lr: float) -> None:
        print("starting")
        raise RuntimeError("diverged at step 3")

    with pytest.raises(RuntimeError):
        run_experiment(failing, GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False),
                       config={"lr": 5.0}, name="vision")

    def chatty(_run: Any, lr: float) -> None:
        for line in range(200):
            print(f"line {line:03d} of the chatty run")

    run_experiment(chatty, GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False, output_cap=2000),
                   config={"lr": 0.2}, name="chatty")
    return connect(client=client)
