"""The operator as a subprocess (`python -m controller operator`), for the tests and the demo."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hack.local_cluster import ROOT, free_port
from tests.support.commands import end
from tests.support.net import http_get
from tests.support.waiting import wait_for

# Test hooks and short timeouts (documented in docs/reference.md), so runs come and fail fast.
FAST = {
    # 6-field cron with seconds, so runs come fast.
    "MLCD_ALLOW_SECONDS_SCHEDULES": "true",
    "MLCD_WEBHOOK_BACKOFF_BASE_SECONDS": "0.05",
    "MLCD_WEBHOOK_BACKOFF_MAX_SECONDS": "0.2",
    "MLCD_FOGIS_TIMEOUT_SECONDS": "5",
    "MLCD_SHUTDOWN_TIMEOUT_SECONDS": "20",
}


class Operator:
    """The operator scoped to `namespaces` (all of them when empty), probes on free ports.

    `settings` are MLCD_* variables on top of the defaults (FAST unless given; the demo runs
    with none, as users do). `detach` starts it in a session of its own, so it outlives the
    caller (`make demo KEEP=1`).
    """

    def __init__(
        self,
        kubeconfig: str,
        namespaces: list[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        *,
        settings: Mapping[str, str] = FAST,
        verbose: bool = True,
        detach: bool = False,
        args: Sequence[str] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.log_path = log_path
        self.extra_env = {**settings, **(env or {})}
        self.verbose = verbose
        self.detach = detach
        self.args = list(args)  # more `kopf run` options, e.g. --log-format=json
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.calendar_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the operator is not running"
        return self.proc.pid

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def calendar_url(self) -> str:
        return f"http://127.0.0.1:{self.calendar_port}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    def start(self) -> Operator:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MLCD_")},
            "KUBECONFIG": self.kubeconfig,
            "MLCD_HEALTH_HOST": "127.0.0.1",
            "MLCD_HEALTH_PORT": str(self.health_port),
            "MLCD_METRICS_HOST": "127.0.0.1",
            "MLCD_METRICS_PORT": str(self.metrics_port),
            "MLCD_CALENDAR_HOST": "127.0.0.1",
            "MLCD_CALENDAR_PORT": str(self.calendar_port),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        scope = [f"--namespace={ns}" for ns in self.namespaces] or ["--all-namespaces"]
        verbose = ["--verbose"] if self.verbose else []
        with self.log_path.open("ab") as log:  # the child holds its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller", "operator", *verbose, *scope, *self.args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detach,
            )
        wait_for("operator /healthz", self._healthy, timeout=30)
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"operator exited with {self.proc.returncode}:\n{self.logs()[-3000:]}"
            )
        return http_get(self.health_url) is not None

    def health(self) -> dict[str, Any]:
        text = http_get(self.health_url)
        assert text is not None, "no /healthz answer"
        document: dict[str, Any] = json.loads(text)
        return document

    def metrics(self) -> str:
        return http_get(self.metrics_url) or ""

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        if self.proc is None:
            return 0
        code = end(self.proc, sig, timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@contextlib.contextmanager
def running(operator: Operator) -> Iterator[Operator]:
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()
