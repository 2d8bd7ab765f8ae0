"""Figures from samples and from the operator's histograms, and how they are printed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tests.support.metrics import metric_value, samples


def fmt_s(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    if abs(seconds) < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of raw samples."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return (
        f"p50 {fmt_s(pct(values, 0.5))}  p99 {fmt_s(pct(values, 0.99))}  "
        f"max {fmt_s(max(values))}  (n={len(values)})"
    )


@dataclass(frozen=True)
class Histogram:
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last
    sum: float
    count: float

    @classmethod
    def parse(cls, text: str, name: str, **labels: str) -> Histogram:
        cumulative: dict[float, float] = {}
        for ls, value in samples(text, f"{name}_bucket"):
            if all(ls.get(k) == v for k, v in labels.items()):
                le = float(ls["le"])
                cumulative[le] = cumulative.get(le, 0.0) + value
        return cls(
            tuple(sorted(cumulative.items())),
            metric_value(text, f"{name}_sum", labels) or 0.0,
            metric_value(text, f"{name}_count", labels) or 0.0,
        )

    def __sub__(self, other: Histogram) -> Histogram:
        before = dict(other.buckets)
        return Histogram(
            tuple((le, n - before.get(le, 0.0)) for le, n in self.buckets),
            self.sum - other.sum,
            self.count - other.count,
        )

    def summary(self) -> str:
        mean = self.sum / self.count if self.count else None
        return (
            f"p50 {fmt_s(self.quantile(0.5))}  p99 {fmt_s(self.quantile(0.99))}  mean {fmt_s(mean)}"
        )

    def quantile(self, q: float) -> float | None:
        """histogram_quantile: linear inside the bucket holding the rank."""
        if not self.buckets or self.count <= 0:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for le, n in self.buckets:
            if n >= rank:
                if math.isinf(le):
                    return lower  # beyond the last finite bound: that bound is all we know
                if n == below:
                    return le
                return lower + (le - lower) * (rank - below) / (n - below)
            lower, below = le, n
        return lower

    def fraction_at_most(self, bound: float) -> float | None:
        if self.count <= 0:
            return None
        return dict(self.buckets).get(bound, math.nan) / self.count

    def highest_bucket(self) -> str:
        """The upper bound of the bucket holding the slowest observation."""
        previous = 0.0
        for le, n in self.buckets:
            if n >= self.count:
                return "+Inf" if math.isinf(le) else f"<= {fmt_s(le)} (> {fmt_s(previous)})"
            previous = le
        return "?"
