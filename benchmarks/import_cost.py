"""What importing sacred-gpu costs, measured with ``python -X importtime`` in fresh interpreters.

Prints, for ``import sacred_gpu``, ``from sacred_gpu import GpuMongoObserver`` (which needs Sacred, which loads
pandas) and ``import sacred`` alone, the median over ``--trials`` fresh processes of the cumulative import time
(ms) of the top-level modules imported, less that of an interpreter running ``pass`` (its startup imports), and
whether pandas or dash was loaded.

    python benchmarks/import_cost.py --trials 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

STATEMENTS = ("import sacred_gpu", "from sacred_gpu import GpuMongoObserver", "import sacred")


def measure(statement: str) -> tuple[float, list[str]]:
    """Cumulative import time (ms) of ``statement``'s top-level imports, and which of pandas/dash it loaded."""
    probe = f"{statement}\nimport json, sys\nprint(json.dumps([m for m in ('pandas', 'dash') if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", probe], capture_output=True, text=True,
                          check=True)
    total = 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        if not name.startswith(" ") and line.rsplit("|", 1)[-1][1:2] != " ":  # top level: not indented
            total += int(cumulative)
    return total / 1000, json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=7)
    args = parser.parse_args()
    startup = statistics.median(measure("pass")[0] for _ in range(args.trials))
    print(f"{'statement':<45} {'median ms':>10}  loads   (interpreter startup imports: {startup:.1f} ms, subtracted)")
    for statement in STATEMENTS:
        runs = [measure(statement) for _ in range(args.trials)]
        cost = statistics.median(ms for ms, _ in runs) - startup
        print(f"{statement:<45} {cost:>10.1f}  {', '.join(runs[0][1]) or '-'}")


if __name__ == "__main__":
    main()
