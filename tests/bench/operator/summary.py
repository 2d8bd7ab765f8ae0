"""The ratios ours / peer, and the last line: one machine-readable summary of issue 14's
figures (printed, never asserted)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from tests.bench.operator.report import Report

# Summary key -> decimals; the order is the line's.
FIELDS = {
    "rss_mib": 1,
    "idle_cpu_pct": 2,
    "lag_p99_s": 3,
    "trigger_p50_ms": 1,
    "trigger_p99_ms": 1,
    "loop_stall_max_ms": 1,
    "peer_rss_mib": 1,
}


def _number(value: float | None, decimals: int) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.{decimals}f}"


def summary_line(watchers: int, summary: Mapping[str, float | None]) -> str:
    fields = " ".join(f"{k}={_number(summary.get(k), d)}" for k, d in FIELDS.items())
    return f"bench: watchers={watchers} {fields}"


def _ratio(ours: float | None, peer: float | None) -> str:
    if ours is None or peer is None or peer == 0:
        return "-"
    return f"{ours / peer:.2f}"


def add_ratios(report: Report, watchers: int, summary: Mapping[str, float | None]) -> None:
    """Ours next to the peer: memory per watcher (whole RSS / N, interpreter and libraries
    included in both), idle CPU, and the start lag of a slot shared by every watcher."""
    if summary.get("peer_rss_mib") is None:
        return
    report.section("ours / peer (below 1: ours uses less)")
    rows = [
        ("memory per watcher (RSS / N)", "rss_mib", "peer_rss_mib", 1024 / watchers, "KiB"),
        ("idle CPU", "idle_cpu_pct", "peer_idle_cpu_pct", 1.0, "% of a core"),
        # Ours from its histogram (interpolated in buckets), the peer's from its status.
        ("start lag p99, all on one slot", "storm_lag_p99_s", "peer_storm_lag_p99_s", 1.0, "s"),
        ("event-loop stall, max", "any_loop_stall_max_ms", "peer_loop_stall_max_ms", 1.0, "ms"),
    ]
    for label, ours_key, peer_key, scale, unit in rows:
        ours, peer = summary.get(ours_key), summary.get(peer_key)
        report.add(
            label,
            f"{_ratio(ours, peer)}  (ours {_number(None if ours is None else ours * scale, 2)}"
            f", peer {_number(None if peer is None else peer * scale, 2)} {unit})",
        )
