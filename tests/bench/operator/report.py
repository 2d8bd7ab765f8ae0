"""The printed report: rows under section titles, each also logged as it is measured."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from tests.bench.operator.procfs import Phase

STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def section(self, title: str) -> None:
        self.rows.append((f"-- {title}", ""))

    def add(self, label: str, value: str) -> None:
        self.rows.append((label, value))
        log(f"{label}: {value}")

    def cpu(self, phase: Phase, labels: Sequence[str]) -> None:
        parts = [
            f"{label} {phase.cpu(label):.1f} s ({100 * phase.cpu(label) / phase.wall:.0f}%)"
            for label in labels
        ]
        self.add(f"CPU over {phase.wall:.1f} s", ", ".join(parts))

    def print(self) -> None:
        width = max(len(label) for label, _ in self.rows if not label.startswith("-- "))
        print()
        for label, value in self.rows:
            if label.startswith("-- "):
                print(f"\n{label[3:]}")
            else:
                print(f"  {label:<{width}}  {value}")
