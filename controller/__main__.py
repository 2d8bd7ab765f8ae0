"""Command line: `python -m controller operator [kopf run options]`, `... service`, `... run-once`.

Only dispatches: each command is a process in controller/entrypoints/."""

from __future__ import annotations

import argparse
import sys

from controller import __version__

USAGE = """\
usage: match-list-change-detector operator [kopf run options...]
       match-list-change-detector service
       match-list-change-detector run-once
       match-list-change-detector --version

operator   run the Kubernetes operator (all namespaces unless -n/--namespace is given);
           settings come from MLCD_* environment variables (see docs/reference.md);
           RUN_MODE=service or RUN_MODE=oneshot runs the service or run-once instead
service    the persistent service for one referee, without Kubernetes, configured like
           the old docker-compose service (run-once's variables, CRON_SCHEDULE,
           HEALTH_SERVER_HOST, HEALTH_SERVER_PORT, DATA_DIR, NOTIFY_URLS, ...; see
           docs/service.md): GET /health, POST /trigger, GET /status, GET /metrics
run-once   one detection pass without Kubernetes, configured like the old service:
           FOGIS_USERNAME, FOGIS_PASSWORD, FOGIS_BASE_URL, DAYS_BACK, DAYS_AHEAD,
           PREVIOUS_MATCHES_FILE, TIME_ZONE, WEBHOOK_URL, WEBHOOK_HMAC_KEY;
           prints the change report as JSON; exit 0 on success, 1 on failure
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "--version":
        print(__version__)
        return 0
    # Imported late, each for its own command: `--help` and run-once never load kopf.
    if args[0] == "operator":
        from controller.entrypoints.operator import main as operator  # noqa: PLC0415

        return operator(args[1:])
    if args[0] == "service" and len(args) == 1:
        from controller.entrypoints.service import main as service  # noqa: PLC0415

        return service()
    if args[0] == "run-once" and len(args) == 1:
        from controller.entrypoints.runonce import main as run_once  # noqa: PLC0415

        return run_once()
    parser = argparse.ArgumentParser(prog="match-list-change-detector")
    parser.error(f"unknown command {' '.join(args)!r}; see --help")
    return 2


if __name__ == "__main__":
    sys.exit(main())
