"""The operator's /metrics text, read with prometheus_client's own parser."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called `name` (e.g. `x_total`, `x_bucket`, `x_sum`)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield sample.labels, sample.value


def metric_value(text: str, name: str, labels: Mapping[str, str]) -> float | None:
    """The sum of the series of `name` that carry `labels` (one series when they name it
    fully), or None when there is none."""
    values = [
        value
        for series, value in samples(text, name)
        if all(series.get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None
