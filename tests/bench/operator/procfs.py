"""What /proc tells about the processes sharing the machine: CPU, memory, dropped SYNs."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = text.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def proc_status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def mib(status: Mapping[str, str], key: str) -> float:
    value = status.get(key, "0 kB").split()[0]
    return int(value) / 1024


def listen_drops() -> int:
    """TcpExt ListenOverflows + ListenDrops: SYNs dropped because an accept queue was full."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", 0)) + int(table.get("ListenDrops", 0))
    return 0


class Meter:
    """CPU seconds of the processes that share the machine during a phase."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)

    def read(self) -> dict[str, float]:
        values = {label: cpu_seconds(pid) for label, pid in self.pids.items()}
        values["bench"] = time.process_time()
        values["wall"] = time.monotonic()
        return values


@dataclass
class Phase:
    name: str
    start: dict[str, float]
    end: dict[str, float] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return self.end["wall"] - self.start["wall"]

    def cpu(self, label: str) -> float:
        return self.end[label] - self.start[label]
