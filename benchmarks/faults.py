"""What survives what: the fault matrix, printed. Per fault: points kept / points logged, points set aside in the
quarantine, samples and the artifact kept, the run's end status, the longest training-thread stall, sync's exit.

    python benchmarks/faults.py [--trials 1] [--only SUBSTRING]

Each fault is a real Sacred run (400 steps of 5 ms, ``loss`` every step, ``refusable`` every 10th, two simulated
GPUs sampled at 20 Hz, one artifact) recorded through a MongoDB wire-protocol server on loopback that fails on cue
(``tests/support/wire_server.py``), or through a journal damaged at the file layer, then ``sacred-gpu sync``; see
``tests/support/fault_matrix.py`` for the faults. ``start_timeout`` is 2 s and ``flush_timeout`` 3 s: the longest
stall must stay under the first, whatever the server does.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.fault_matrix import FAULTS, START_TIMEOUT, run_fault  # noqa: E402

logger = logging.getLogger("benchmarks.faults")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1, help="runs per fault (default 1)")
    parser.add_argument("--only", default="", help="only the faults whose name contains this")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the faults' own warnings and errors are expected here
    header = (f"{'fault':<38} {'kept/logged':>12} {'set aside':>9} {'missing':>7} {'samples':>9} {'artifact':>8} "
              f"{'status':<10} {'stall s':>7} {'end s':>6} {'sync':>4}")
    sys.stdout.write(header + "\n" + "-" * len(header) + "\n")
    worst = 0.0
    with tempfile.TemporaryDirectory() as workdir:
        for trial in range(args.trials):
            for fault in (f for f in FAULTS if args.only in f.name):
                outcome = run_fault(fault, Path(workdir) / f"trial-{trial}")
                worst = max(worst, outcome.stall_s)
                sys.stdout.write(
                    f"{outcome.fault:<38} {f'{outcome.kept}/{outcome.logged}':>12} {outcome.quarantined:>9} "
                    f"{outcome.missing:>7} {f'{outcome.samples_kept}/{outcome.samples}':>9} "
                    f"{outcome.artifacts_kept:>8} {str(outcome.status):<10} {outcome.stall_s:>7.2f} "
                    f"{outcome.end_s:>6.2f} {outcome.sync_code:>4}\n")
                sys.stdout.flush()
    sys.stdout.write(f"\nlongest training-thread stall {worst:.2f} s (start_timeout {START_TIMEOUT:g} s); "
                     "'missing': neither in MongoDB nor readable in the quarantine (only a journal cut short loses "
                     "bytes, and sync lists the cut)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
