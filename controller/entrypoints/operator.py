"""The operator process: kopf's `run` of controller/entrypoints/handlers.py, serving its liveness
endpoint where the settings say, in all namespaces unless the command line names some."""

from __future__ import annotations

import os
import sys

from controller.core.config import ConfigError, load_settings


def main(args: list[str]) -> int:
    """`operator [kopf run options...]`; returns the exit code (2: unusable settings)."""
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"match-list-change-detector: {exc}", file=sys.stderr)
        return 2
    # Imported late: a settings error is reported before kopf's import is paid.
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
