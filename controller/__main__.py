"""Command line: `python -m controller operator [kopf run options]` or `... run-once`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from controller import __version__
from controller.core.config import ConfigError, load_run_once, load_settings
from controller.core.errors import DetectorError

USAGE = """\
usage: match-list-change-detector operator [kopf run options...]
       match-list-change-detector run-once
       match-list-change-detector --version

operator   run the Kubernetes operator (all namespaces unless -n/--namespace is given);
           settings come from MLCD_* environment variables (see docs/reference.md)
run-once   one detection pass without Kubernetes, configured like the old service:
           FOGIS_USERNAME, FOGIS_PASSWORD, FOGIS_BASE_URL, DAYS_BACK, DAYS_AHEAD,
           PREVIOUS_MATCHES_FILE, TIME_ZONE, WEBHOOK_URL, WEBHOOK_HMAC_KEY;
           prints the change report as JSON; exit 0 on success, 1 on failure
"""


def _operator(args: list[str]) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"match-list-change-detector: {exc}", file=sys.stderr)
        return 2
    # Imported late: kopf is only needed (and its import only paid) for the operator.
    from kopf.cli import main as kopf_main  # noqa: PLC0415

    scoped = any(
        a in ("-A", "--all-namespaces") or a.startswith(("-n", "--namespace")) for a in args
    )
    argv = [
        "run",
        "--module",
        "controller.entrypoints.handlers",
        f"--liveness=http://{settings.health_host}:{settings.health_port}/healthz",
        *([] if scoped else ["--all-namespaces"]),
        *args,
    ]
    try:
        kopf_main(args=argv, prog_name="match-list-change-detector operator")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def _run_once() -> int:
    from controller.entrypoints.runonce import run_once  # noqa: PLC0415 - keeps `--help` light

    try:
        report = asyncio.run(run_once(load_run_once()))
    except (ConfigError, DetectorError) as exc:
        print(f"run-once failed: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(report + b"\n")
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "--version":
        print(__version__)
        return 0
    if args[0] == "operator":
        return _operator(args[1:])
    if args[0] == "run-once" and len(args) == 1:
        return _run_once()
    parser = argparse.ArgumentParser(prog="match-list-change-detector")
    parser.error(f"unknown command {' '.join(args)!r}; see --help")
    return 2


if __name__ == "__main__":
    sys.exit(main())
