"""Structured fields of project log lines: which watcher a line is about.

Passed as `extra=`: with `--log-format=json` (the chart's `operator.logFormat: json`) kopf's
formatter emits them as JSON fields (`"watcher": {"namespace": ..., "name": ...}`), so
`kubectl logs ... | jq 'select(.watcher.name == "anna")'` works; the text format ignores them
(its lines name the watcher in the message).
"""

from __future__ import annotations

from typing import Any

from controller.core.model import WatcherRef


def about(ref: WatcherRef) -> dict[str, Any]:
    return {"watcher": {"namespace": ref.namespace, "name": ref.name}}
