"""The service as a subprocess (`python -m controller operator`, RUN_MODE=service), for tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hack.local_cluster import ROOT, free_port
from tests.support.commands import end
from tests.support.net import http
from tests.support.operator_process import FAST
from tests.support.waiting import wait_for

USERNAME, PASSWORD = "anna.andersson", "s3cret-Pa55word"


class ServiceProcess:
    """The service against a FOGIS stand-in at `fogis_url`, its state in `data_dir`, its HTTP
    API on a free loopback port. `env` goes on top of the seed's variables set here."""

    def __init__(
        self, fogis_url: str, data_dir: Path, log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MLCD_")},
            **FAST,
            "RUN_MODE": "service",
            "FOGIS_USERNAME": USERNAME,
            "FOGIS_PASSWORD": PASSWORD,
            "FOGIS_BASE_URL": fogis_url,
            "HEALTH_SERVER_HOST": "127.0.0.1",
            "HEALTH_SERVER_PORT": str(self.port),
            "DATA_DIR": str(data_dir),
            "SHUTDOWN_TIMEOUT_SECONDS": "3",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.env.pop("KUBECONFIG", None)  # the service needs no cluster
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> ServiceProcess:
        with self.log_path.open("ab") as log:  # the child holds its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller", "operator"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            wait_for("service /health", self._answering, timeout=30)
        return self

    def _answering(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"service exited with {self.proc.returncode}:\n{self.logs()[-3000:]}"
            )
        return http("GET", f"{self.url}/health", timeout=2)[0] != 0

    def call(self, method: str, path: str, timeout: float = 40.0) -> tuple[int, dict[str, Any]]:
        status, body = http(method, f"{self.url}{path}", timeout=timeout)
        assert status, f"no answer to {method} {path}"
        document: dict[str, Any] = json.loads(body)
        return status, document

    def health(self) -> dict[str, Any]:
        return self.call("GET", "/health")[1]

    def trigger(self) -> dict[str, Any]:
        status, document = self.call("POST", "/trigger")
        assert status in (200, 500), (status, document)
        return document

    def status_file(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.data_dir / "watcher-status.json").read_text())
        return document

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None, "the service is not running"
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        code = end(self.proc, sig, timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
