"""``sacred-gpu``: the command line of the observer package."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

logger = logging.getLogger("sacred_gpu")


def _demo(args: argparse.Namespace) -> int:
    import mongomock

    from dashboard.demo import populate
    from sacred_gpu import connection, schema

    client = connection.open_client(client=mongomock.MongoClient())
    run_ids = populate(client, epochs=args.epochs)
    database = client["sacred"]
    lines = [f"{'id':>4}  {'status':<11} {'experiment':<14}  {'result':>8}  tags  metrics (points)  artifacts"]
    for run_id in run_ids:
        doc = database["runs"].find_one({"_id": run_id})
        metrics = {m["name"]: len(m["values"]) for m in database["metrics"].find(schema.series_filter(run_id, False))}
        series = ", ".join(f"{name} ({count})" for name, count in sorted(metrics.items()))
        system = database["metrics"].count_documents(schema.series_filter(run_id, True))
        result = doc.get("result")
        fields = [
            f"{run_id:>4}  {doc['status']:<11} {doc['experiment']['name']:<14}",
            f"{result:>8.4f}" if isinstance(result, (int, float)) else f"{'-':>8}",
            f"[{', '.join((doc.get('omniboard') or {}).get('tags', []))}]",
            series + (f" + {system} system series" if system else ""),
            ", ".join(a["name"] for a in doc.get("artifacts", [])),
        ]
        if doc["status"] == "RUNNING" and doc.get("heartbeat"):
            fields.append(f"(last heartbeat {doc['heartbeat']:%H:%M:%S} UTC)")
        if doc.get("fail_trace"):
            fields.append(f"({doc['fail_trace'][-1].strip()})")
        lines.append("  ".join(field for field in fields if field))
    sys.stdout.write("Recorded in an in-memory MongoDB (mongomock):\n" + "\n".join(lines) + "\n")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sacred_gpu import connection
    from sacred_gpu.record.spool import default_spool
    from sacred_gpu.record.sync import sync_spool

    url = db_name = None
    if args.mongo or args.mu:
        spec = connection.parse_mongo_spec(args.mu or args.mongo)
        url, db_name = spec.url or "localhost:27017", spec.db_name
    if args.follow:
        if not args.spool:
            sys.stderr.write("sacred-gpu sync --follow: name the folder to follow\n")
            return 2
        return _follow(Path(args.spool), args, url=url, db_name=db_name, timeout=args.timeout)
    spool = Path(args.spool) if args.spool else default_spool()
    results = sync_spool(spool, url=url, db_name=db_name, force=args.force, timeout=args.timeout)
    for result in results:
        aside = f"  ({result.set_aside} set aside in quarantine)" if result.set_aside else ""
        sys.stdout.write(f"{result.outcome:<12} run {result.run_id}  {result.folder}  {result.detail}{aside}\n")
    held = _report_quarantine(spool, args.discard_quarantine)
    if not results and not held:
        sys.stdout.write(f"nothing to sync in {spool}\n")
    ok = all(r.outcome in ("synced", "running", "busy", "gone") for r in results)
    return 0 if ok and not held else 1


def _follow(folder: Any, args: argparse.Namespace, **sync_options: Any) -> int:
    """``sync --follow DIR``: upload DIR's journals as they grow, until Ctrl-C (or, ``--until-complete``, until each
    is complete)."""
    from sacred_gpu.record.follow import Follower

    follower = Follower(folder, args.books, **sync_options)
    sys.stdout.write(f"following {folder} (books in {follower.books}); Ctrl-C stops\n")
    results = []
    try:
        results = follower.run(args.interval, until_complete=args.until_complete)
    except KeyboardInterrupt:
        pass
    for result in results:
        sys.stdout.write(f"{result.outcome:<12} run {result.run_id}  {result.folder}  {result.detail}\n")
    held = _report_quarantine(follower.books, args.discard_quarantine)
    return 0 if all(r.outcome in ("complete", "following", "waiting") for r in results) and not held else 1


def _report_quarantine(root: Any, discard: bool) -> list[Any]:
    """List what ``root``'s quarantine holds (or discard it, as asked); what is still held."""
    from sacred_gpu.record import quarantine

    held = quarantine.entries(root)
    if held and discard:
        count = quarantine.discard(root)
        sys.stdout.write(f"discarded {count} quarantined entries of {root / quarantine.FOLDER}\n")
        held = []
    if held:
        sys.stdout.write(f"QUARANTINED: {len(held)} entries could not be written to MongoDB and are kept in "
                         f"{root / quarantine.FOLDER} (remove them with --discard-quarantine once dealt with):\n")
        for entry in held:
            sys.stdout.write(f"  {entry.describe()}\n")
    return held


def _metrics_table(args: argparse.Namespace) -> int:
    from sacred_gpu.schema.catalog_tables import markdown_table, prometheus_table

    sys.stdout.write((prometheus_table() if args.prometheus else markdown_table()) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sacred-gpu", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the example experiments into an in-memory database and summarise")
    demo.add_argument("--epochs", type=int, default=None, help="epochs per example run (default: each run's own)")
    demo.set_defaults(handler=_demo)
    sync = commands.add_parser("sync", help="upload journaled runs (offline or unfinished) to MongoDB")
    sync.add_argument("spool", nargs="?", help="spool directory (default: $SACRED_GPU_SPOOL or the user data dir)")
    sync.add_argument("-m", "--mongo", metavar="HOST:PORT:DB", help="upload here instead of where each run was headed")
    sync.add_argument("--mu", metavar="URI", help="a mongodb:// URI to upload to (database from its path)")
    sync.add_argument("--force", action="store_true", help="also journals whose process still runs")
    sync.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for MongoDB per run (default 30)")
    sync.add_argument("--discard-quarantine", action="store_true",
                      help="delete what is quarantined (records MongoDB refused, damaged journal bytes) after listing")
    sync.add_argument("--follow", action="store_true",
                      help="follow SPOOL, a folder another machine writes (Drive, rsync, NFS): upload its journals as "
                           "they grow, never writing into it, until Ctrl-C")
    sync.add_argument("--interval", type=float, default=2.0, help="with --follow: seconds between looks (default 2)")
    sync.add_argument("--books", metavar="DIR",
                      help="with --follow: where to keep what was uploaded (default: in the user data dir)")
    sync.add_argument("--until-complete", action="store_true",
                      help="with --follow: stop once every journal found has been uploaded to its end")
    sync.set_defaults(handler=_sync)
    table = commands.add_parser("metrics-table", help="print the table of system metrics (Markdown)")
    table.add_argument("--prometheus", action="store_true", help="the table of their Prometheus gauges instead")
    table.set_defaults(handler=_metrics_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
