"""The peer operator as a subprocess: `python -m kopf run` of daemon_peer, scoped to one
namespace, with the benchmark's probe (taskprobe/) loaded as in ours."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from hack.local_cluster import ROOT, free_port
from tests.support.commands import end
from tests.support.net import http_get
from tests.support.waiting import wait_for


class PeerOperator:
    def __init__(
        self, kubeconfig: str, namespace: str, log_path: Path, env: Mapping[str, str]
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_path = log_path
        self.env = dict(env)
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the peer operator is not running"
        return self.proc.pid

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1", **self.env}
        argv = [sys.executable, "-m", "kopf", "run", "--standalone", "-n", self.namespace]
        argv += [f"--liveness=http://127.0.0.1:{self.health_port}/healthz"]
        argv += ["-m", "tests.bench.peer.daemon_peer"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for("peer operator /healthz", self._healthy, timeout=60)

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = self.log_path.read_text(errors="replace")[-3000:]
            raise AssertionError(f"peer operator exited with {self.proc.returncode}:\n{log}")
        return http_get(f"http://127.0.0.1:{self.health_port}/healthz") is not None

    def stop(self) -> None:
        if self.proc is not None:
            end(self.proc, timeout=60)
            self.proc = None
