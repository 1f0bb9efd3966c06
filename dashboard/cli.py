"""``sacred-board``: serve the board on a MongoDB database (Omniboard's ``-m`` / ``--mu``), or on demo runs."""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dashboard.board import DEFAULT_REFRESH, Board
from sacred_gpu import connection
from sacred_gpu.read import DEAD_AFTER, ReadError, RunStore, connect

if TYPE_CHECKING:
    from dashboard.demo import Demo

logger = logging.getLogger("dashboard")

AUTH_ENV = "SACRED_BOARD_AUTH"
#: Seconds between attempts to reach a database that does not answer.
RETRY_EVERY = 5.0
#: The demo's PROBABLY_DEAD threshold in seconds: its SIGKILLed run stopped heart-beating seconds before serving.
DEMO_DEAD_AFTER = 10.0


@dataclass(frozen=True)
class Target:
    """The database to serve: a URL (``None``: localhost:27017) and a database name."""

    url: str | None
    db_name: str


def target(mongo: str | None, mu: str | None) -> Target:
    """The database named by ``-m host:port:db`` or ``--mu mongodb://host/db`` (default: localhost:27017, sacred)."""
    if mongo and mu:
        raise ValueError("give either -m or --mu, not both")
    spec = connection.parse_mongo_spec(mu or mongo or connection.DEFAULT_DB)
    return Target(spec.url, spec.db_name)


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``user:password`` as a pair; ``None`` for no auth. Raises ``ValueError`` for any other form."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("auth must be 'user:password' with neither part empty")
    return user, password


def wait_for_database(store: RunStore, where: str, *, retry_every: float = RETRY_EVERY,
                      attempts: int | None = None) -> bool:
    """Ping the store's server until it answers (``attempts``: give up after that many; ``None``: never)."""
    tried = 0
    while True:
        try:
            store.ping()
            logger.info("connected to %s", where)
            return True
        except ReadError as error:
            tried += 1
            if attempts is not None and tried >= attempts:
                logger.error("cannot reach MongoDB at %s: %s", where, error)
                return False
            logger.error("cannot reach MongoDB at %s: %s; retrying in %.0f s (Ctrl-C to stop)", where, error,
                         retry_every)
            time.sleep(retry_every)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sacred-board", description=__doc__)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-m", "--mongo", metavar="HOST:PORT:DB", help="the database, as Omniboard's -m (default: "
                       "localhost:27017:sacred)")
    where.add_argument("--mu", metavar="URI", help="a mongodb:// URI; the database is its path")
    where.add_argument("--demo", action="store_true", help="run the examples into an in-memory database (no "
                       "MongoDB needed) and serve them")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                        "only; 0.0.0.0 exposes the board: use --auth)")
    parser.add_argument("--port", type=int, default=9000, help="port (default 9000)")
    parser.add_argument("--read-only", action="store_true", help="refuse every edit: tags, notes, deletes, layout")
    parser.add_argument("--auth", metavar="USER:PASSWORD", default=None,
                        help=f"require HTTP basic auth (or set ${AUTH_ENV})")
    parser.add_argument("--refresh", type=float, default=DEFAULT_REFRESH, metavar="SECONDS",
                        help=f"seconds between table refreshes (default {DEFAULT_REFRESH:g})")
    parser.add_argument("--dead-after", type=float, default=None, metavar="SECONDS",
                        help=f"heartbeat age that marks a RUNNING run PROBABLY_DEAD (default {DEAD_AFTER:g}; "
                             f"{DEMO_DEAD_AFTER:g} with --demo, whose killed run is seconds old)")
    parser.add_argument("--collection-prefix", default="", help="as the observer's collection_prefix")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    return parser


def open_board(args: argparse.Namespace) -> tuple[Board, Demo | None]:
    """The board the arguments ask for, and the demo to close when it stops serving (``--demo``); blocks until the
    database answers (not for ``--demo``)."""
    demo = None
    if args.demo:
        from dashboard.demo import start_demo

        demo = start_demo(dead_after=DEMO_DEAD_AFTER if args.dead_after is None else args.dead_after)
        store = demo.store
    else:
        place = target(args.mongo, args.mu)
        store = connect(place.url, place.db_name, collection_prefix=args.collection_prefix,
                        dead_after=DEAD_AFTER if args.dead_after is None else args.dead_after)
        wait_for_database(store, connection.describe(place.url, place.db_name))
    return Board(store, read_only=args.read_only, refresh=args.refresh), demo


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        auth = parse_auth(args.auth or os.environ.get(AUTH_ENV))
        if not args.demo:
            target(args.mongo, args.mu)  # a malformed spec is reported before anything else happens
    except ValueError as error:
        parser.error(str(error))
    if args.host not in ("127.0.0.1", "localhost", "::1") and not auth:
        logger.warning("serving on %s without --auth: anyone who can reach this port can read and edit runs",
                       args.host)
    try:
        board, demo = open_board(args)
    except KeyboardInterrupt:
        return 130
    try:
        from dashboard.app import create_app

        app = create_app(board, auth=auth)
        logger.info("sacred-board on http://%s:%d/ (Ctrl-C to stop)", args.host, args.port)
        app.run(host=args.host, port=args.port, debug=False)
    finally:
        if demo is not None:  # its live run's threads would keep the process alive
            demo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
