"""One typed settings object, read from environment variables with the prefix MLCD_.

Every value is validated at startup: a typo in a Deployment's env fails the process with a message
naming the variable, instead of surfacing later as odd behaviour.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

PREFIX = "MLCD_"


class ConfigError(ValueError):
    """An MLCD_* environment variable has a value we cannot use."""


@dataclass(frozen=True)
class Settings:
    """Operator-wide settings. Per-watcher settings live in the MatchWatcher spec instead."""

    # kopf's liveness endpoint (GET /healthz); the Deployment's liveness probe points here.
    health_host: str = "0.0.0.0"  # noqa: S104 - probes come from the kubelet, not localhost
    health_port: int = 8081
    # Prometheus endpoint (GET /metrics); 0 disables it.
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from other pods
    metrics_port: int = 8080
    # Threads for the synchronous kubernetes client, which must never block the event loop.
    kube_workers: int = 16
    # Shared connection pool for all outgoing HTTP (FOGIS and webhooks).
    http_max_connections: int = 64
    fogis_timeout_seconds: float = 30.0
    # How long a run in progress may take to finish when the operator is asked to stop.
    shutdown_timeout_seconds: float = 60.0
    webhook_backoff_base_seconds: float = 1.0
    webhook_backoff_max_seconds: float = 30.0
    # Retry-After above this is capped, so one receiver cannot stall a watcher for hours.
    webhook_max_retry_after_seconds: float = 120.0
    # kopf peering for HA: empty means standalone (one replica).
    peering_name: str = ""
    # Peering priority: "auto" draws a random one so replicas of a Deployment differ.
    peering_priority: str = "auto"
    log_level: str = "INFO"
    # Test hook, off in production: accept 6-field cron (seconds first) so integration tests
    # need not wait for whole minutes. The CRD documents 5 fields; this never changes that.
    allow_seconds_schedules: bool = False


def _parse_int(text: str) -> int:
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("not a boolean")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "bool": _parse_bool,
    "int": _parse_int,
    "float": _parse_float,
    "str": str,
}


def _check(settings: Settings) -> None:
    for name in ("health_port", "metrics_port"):
        port = getattr(settings, name)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{PREFIX}{name.upper()} must be a port number (0-65535)")
    if settings.health_port == 0:
        raise ConfigError(f"{PREFIX}HEALTH_PORT must not be 0: the liveness probe needs it")
    positive = (
        "kube_workers",
        "http_max_connections",
        "fogis_timeout_seconds",
        "shutdown_timeout_seconds",
        "webhook_backoff_base_seconds",
        "webhook_backoff_max_seconds",
        "webhook_max_retry_after_seconds",
    )
    for name in positive:
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{PREFIX}{name.upper()} must be greater than 0")
    if settings.peering_priority != "auto":
        try:
            int(settings.peering_priority)
        except ValueError:
            raise ConfigError(f"{PREFIX}PEERING_PRIORITY must be 'auto' or an integer") from None
    if settings.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{PREFIX}LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from MLCD_* variables; unknown MLCD_* names are errors (they are typos)."""
    env = os.environ if environ is None else environ
    known = {f.name: f for f in fields(Settings)}
    values: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :].lower()
        if name not in known:
            raise ConfigError(f"unknown setting {key}; known: {', '.join(_env_names())}")
        parser = _PARSERS[str(known[name].type)]
        try:
            values[name] = parser(raw.strip())
        except ValueError:
            raise ConfigError(f"{key}={raw!r} is not a valid {known[name].type}") from None
    settings = Settings(**values)
    _check(settings)
    return settings


def _env_names() -> list[str]:
    return [PREFIX + f.name.upper() for f in fields(Settings)]
