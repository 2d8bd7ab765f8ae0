"""Kubernetes Events the operator posts about a watcher (controller/adapters/kube.py sends them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from controller.core.reasons import Reason


@dataclass(frozen=True)
class Note:
    """One Event: Normal or Warning, with a reason from the one vocabulary."""

    type_: str
    reason: Reason
    message: str


class EventSink(Protocol):
    """Posts one Event about the watcher; awaited, so none is lost at shutdown."""

    async def __call__(self, note: Note) -> None: ...
