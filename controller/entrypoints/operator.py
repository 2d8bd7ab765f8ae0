"""The operator process: kopf's `run` of controller/entrypoints/handlers.py, serving its liveness
endpoint where the settings say, in all namespaces unless the command line names some.

The image's entrypoint is `operator`; RUN_MODE, when set, decides instead (the seed's users set
only the environment): operator, service (controller/entrypoints/service.py) or oneshot
(run-once)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from controller.core.config import ConfigError, load_settings

RUN_MODES = ("operator", "service", "oneshot")
# Where a pod's service account token is mounted (the in-cluster configuration).
_SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def kubernetes_configured(env: Mapping[str, str]) -> bool:
    """Whether kopf could find any cluster: a kubeconfig, or a pod's service account."""
    if env.get("KUBECONFIG", "").strip() or env.get("KUBERNETES_SERVICE_HOST"):
        return True
    # expanduser, not Path.home(): the image's UID 10001 has no passwd entry (nor maybe HOME).
    return Path(os.path.expanduser("~/.kube/config")).exists() or _SERVICE_ACCOUNT_TOKEN.exists()


def main(args: list[str]) -> int:
    """`operator [kopf run options...]`; returns the exit code (2: unusable settings)."""
    mode = os.environ.get("RUN_MODE", "").strip()
    if mode in ("service", "oneshot"):
        return _other_mode(mode)
    if mode not in ("", "operator"):
        return _fail(f"RUN_MODE={mode!r} is not one of {', '.join(RUN_MODES)}")
    if not kubernetes_configured(os.environ):
        return _fail(
            "no Kubernetes configuration (no KUBECONFIG, no ~/.kube/config, not in a pod); "
            "without a cluster, set RUN_MODE=service (the persistent service) or "
            "RUN_MODE=oneshot (one pass)"
        )
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        return _fail(str(exc))
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


def _other_mode(mode: str) -> int:
    # Imported late, each for its own mode: the service and run-once never load kopf.
    if mode == "service":
        from controller.entrypoints.service import main as service  # noqa: PLC0415

        return service()
    from controller.entrypoints.runonce import main as run_once  # noqa: PLC0415

    return run_once()


def _fail(message: str) -> int:
    print(f"match-list-change-detector: {message}", file=sys.stderr)
    return 2
