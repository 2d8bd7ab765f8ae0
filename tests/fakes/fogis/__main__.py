"""`python -m tests.fakes.fogis`: the fake as a program (the demo, the benchmark, e2e pods)."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from tests.fakes.fogis.login import LOGIN_STYLES
from tests.fakes.fogis.records import sample_matches
from tests.fakes.fogis.server import FakeFogis


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.fogis", description="A fake FOGIS for tests and demos."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--user", action="append", default=[], help="repeat with --password")
    parser.add_argument("--password", action="append", default=[])
    parser.add_argument("--login-style", choices=LOGIN_STYLES, default="classic")
    parser.add_argument(
        "--matches", type=Path, help="JSON list of match records (default: samples)"
    )
    parser.add_argument("--timeout-delay", type=float, default=30.0)
    args = parser.parse_args(argv)
    if len(args.user) != len(args.password):
        parser.error("give one --password per --user")
    matches = (
        json.loads(args.matches.read_text(encoding="utf-8")) if args.matches else sample_matches()
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with FakeFogis(
        users=dict(zip(args.user, args.password, strict=True)),
        login_style=args.login_style,
        timeout_delay=args.timeout_delay,
        matches=matches,
        host=args.host,
        port=args.port,
    ) as fogis:
        print(f"listening on {fogis.base_url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
