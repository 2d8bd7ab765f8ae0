"""A fake from tests/fakes/ as a process of its own, so its CPU is not the caller's (the
benchmark) or so it outlives the caller (`make demo KEEP=1`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Self

from hack.local_cluster import ROOT
from tests.fakes.background import Service
from tests.support.commands import end
from tests.support.waiting import wait_for

LISTENING = "listening on "  # the first line each fake prints, with its URL


class FakeProcess(Service):
    """`python -m <module> <args>`, its output in `log_path`; `url` is where it listens."""

    def __init__(
        self, module: str, args: list[str], log_path: Path, *, detach: bool = False
    ) -> None:
        self.module = module
        self.args = args
        self.log_path = log_path
        self.detach = detach
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.module} is not running"
        return self.proc.pid

    def start(self) -> Self:
        with self.log_path.open("wb") as log:  # the child holds its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detach,
            )
        first = wait_for(f"{self.module} listening", self._first_line, timeout=30)
        self.url = first.removeprefix(LISTENING)
        return self

    def _first_line(self) -> str:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.module} exited with {self.proc.returncode}: {self.log()}")
        line, newline, _ = self.log().partition("\n")
        return line if newline and line.startswith(LISTENING) else ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            end(self.proc, timeout=10)
            self.proc = None
