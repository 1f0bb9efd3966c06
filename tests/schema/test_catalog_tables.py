"""README's tables generated from the catalog (``schema/catalog_tables.py``): every metric and every gauge of it
documented in the README, as the CLI prints them."""

from __future__ import annotations

from pathlib import Path

from sacred_gpu.schema import catalog_tables


def test_readme_lists_every_system_metric():
    readme = Path(__file__).parents[2].joinpath("README.md").read_text()
    assert catalog_tables.markdown_table() in readme
    assert catalog_tables.prometheus_table() in readme


def test_the_cli_prints_both_tables(capsys):
    from sacred_gpu.cli import main

    assert main(["metrics-table"]) == 0
    assert capsys.readouterr().out == catalog_tables.markdown_table() + "\n"
    assert main(["metrics-table", "--prometheus"]) == 0
    printed = capsys.readouterr().out
    assert printed == catalog_tables.prometheus_table() + "\n"
    row = ("| `sacred_gpu_memory_used_bytes` | run, GPU | `sys/gpu{i}/mem_used_mib` x 2^20 (MiB) "
           "| `DCGM_FI_DEV_FB_USED` |")
    assert row in printed
