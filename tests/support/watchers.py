"""The MatchWatcher resource as tests see it: API coordinates, a spec, the Ready condition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GROUP, VERSION, PLURAL = "matchlist.io", "v1alpha1", "matchwatchers"


def fogis_spec(
    base_url: str, secret: str, schedule: str = "@yearly", **extra: object
) -> dict[str, object]:
    """A MatchWatcher spec pointing at a (fake) FOGIS."""
    return {
        "schedule": schedule,
        "source": {"fogis": {"baseUrl": base_url, "credentialsSecretRef": {"name": secret}}},
        **extra,
    }


def ready(status: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Ready condition of a watcher's status, or None when there is none yet."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
