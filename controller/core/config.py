"""One typed settings object, parsed from environment variables with the prefix MLCD_.

Every value is validated at startup: a typo in a Deployment's env fails the process with a message
naming the variable, instead of surfacing later as odd behaviour. The entrypoints pass
`os.environ`; parsing takes any mapping, so this module reads nothing itself.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import PurePath
from typing import Any

from controller.core.errors import InvalidSpec
from controller.core.model import (
    DEFAULT_DAYS_AHEAD,
    DEFAULT_DAYS_BACK,
    DEFAULT_FOGIS_BASE_URL,
    DEFAULT_WEBHOOK_MAX_ATTEMPTS,
    DEFAULT_WEBHOOK_TIMEOUT_SECONDS,
    WEBHOOK_FORMATS,
)
from controller.core.reasons import Reason
from controller.core.schedule import parse_schedule

PREFIX = "MLCD_"

# Docker-link style variables the kubelet injects for every Service in the pod's namespace
# (enableServiceLinks, on by default): a Service named `mlcd-...` yields MLCD_..._SERVICE_HOST,
# MLCD_..._PORT=tcp://IP:PORT and so on. Each suffix comes with the value shape it always has, so a
# typo such as MLCD_METRIC_PORT=9090 still fails instead of being mistaken for a link.
_SERVICE_LINK_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rf"{PREFIX}(\w+_)?{suffix}"), shape)
    for suffix, shape in (
        ("SERVICE_HOST", "ip"),
        (r"SERVICE_PORT(_\w+)?", "port"),
        (r"PORT", "url"),
        (r"PORT_\d+_(TCP|UDP|SCTP)", "url"),
        (r"PORT_\d+_(TCP|UDP|SCTP)_PROTO", "proto"),
        (r"PORT_\d+_(TCP|UDP|SCTP)_PORT", "port"),
        (r"PORT_\d+_(TCP|UDP|SCTP)_ADDR", "ip"),
    )
)
_LINK_URL = re.compile(r"(tcp|udp|sctp)://\[?([0-9a-fA-F.:]+)\]?:\d{1,5}")


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
    # Politeness per FOGIS host (controller/runtime/politeness.py), so 10,000 watchers on one
    # slot queue instead of stampeding it: exchanges in flight, and new logins a second (burst as
    # many; runs that reuse their session cookie are not slowed). Waiting is not part of a run's
    # budget.
    fogis_max_concurrent_per_host: int = 16
    fogis_logins_per_second: float = 5.0
    # Largest FOGIS answer read, after decompression (a referee's year is a few MiB): a broken
    # or hostile server cannot make one watcher exhaust the memory every watcher shares.
    fogis_max_response_bytes: int = 32 * 1024 * 1024
    # How long runs in progress may take to finish when the operator is asked to stop: one
    # deadline for all of them (the chart's grace period is this plus a margin).
    shutdown_timeout_seconds: float = 60.0
    webhook_backoff_base_seconds: float = 1.0
    webhook_backoff_max_seconds: float = 30.0
    # Retry-After above this is capped, so one receiver cannot stall a watcher for hours.
    webhook_max_retry_after_seconds: float = 120.0
    # Comma-separated FOGIS host names watchers may use (spec.source.fogis.baseUrl); empty allows
    # any. Whoever may create a MatchWatcher chooses where its credentials Secret is sent: set
    # this where that is not the same people as those who may read the namespace's Secrets.
    fogis_allowed_hosts: str = ""
    # Comma-separated webhook host names watchers may send to; empty allows any. Link-local and
    # cloud metadata addresses and the API server are refused either way (controller/destinations).
    webhook_allowed_hosts: str = ""
    # Comma-separated host names notification sends may look up (api.telegram.org, ntfy.sh,
    # an SMTP server, ...); empty allows any. Refused addresses are refused either way, at
    # connect time (controller/adapters/connect_guard.py).
    notify_allowed_hosts: str = ""
    # HA: replicas sharing this coordination.k8s.io Lease elect one leader that runs watchers;
    # the others follow the watch, ready to take over. Empty: no election (one replica).
    lease_name: str = ""
    # Where the Lease lives (the chart sets the operator's own namespace).
    lease_namespace: str = "default"
    # Scale-out: this process serves the watchers whose uid hashes to shard SHARD_INDEX of
    # SHARDS (controller/core/sharding.py); each shard is its own Deployment with its own Lease.
    shards: int = 1
    shard_index: int = 0
    # Watcher steps (slot claims, runs, status writes) working at once, whatever the watcher
    # count: permits (controller/runtime/permits.py) a run gives back while it waits on a
    # receiver. The old name stays: an unknown MLCD_* name exits, so a rename breaks upgrades.
    # FOGIS has its own per-host limits below this.
    max_concurrent_runs: int = 32
    # Empty: kopf's command line decides (INFO; DEBUG with --verbose/--debug; WARNING with -q).
    log_level: str = ""
    # Test hook, off in production: accept 6-field cron (seconds first) so integration tests
    # need not wait for whole minutes. The CRD documents 5 fields; this never changes that.
    allow_seconds_schedules: bool = False

    @property
    def allowed_fogis_hosts(self) -> frozenset[str]:
        return _host_set(self.fogis_allowed_hosts)

    @property
    def allowed_webhook_hosts(self) -> frozenset[str]:
        return _host_set(self.webhook_allowed_hosts)

    @property
    def allowed_notify_hosts(self) -> frozenset[str]:
        return _host_set(self.notify_allowed_hosts)


def _host_set(text: str) -> frozenset[str]:
    hosts = (h.strip().lower() for h in text.split(","))
    return frozenset(h for h in hosts if h)


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
        "shards",
        "max_concurrent_runs",
        "fogis_timeout_seconds",
        "fogis_max_concurrent_per_host",
        "fogis_logins_per_second",
        "fogis_max_response_bytes",
        "shutdown_timeout_seconds",
        "webhook_backoff_base_seconds",
        "webhook_backoff_max_seconds",
        "webhook_max_retry_after_seconds",
    )
    for name in positive:
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{PREFIX}{name.upper()} must be greater than 0")
    if not 0 <= settings.shard_index < settings.shards:
        raise ConfigError(
            f"{PREFIX}SHARD_INDEX must be at least 0 and less than {PREFIX}SHARDS "
            f"({settings.shards})"
        )
    if settings.log_level.upper() not in ("", "DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{PREFIX}LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR")


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build Settings from MLCD_* variables; unknown MLCD_* names are errors (they are typos).

    The one exception is a Kubernetes service-link variable (see _SERVICE_LINK_SHAPES): a Service
    whose name starts with `mlcd` must not crash-loop a Deployment with enableServiceLinks on.
    """
    known = {f.name: f for f in fields(Settings)}
    values: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :].lower()
        if name not in known and is_service_link(key, raw):
            continue
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


def is_service_link(key: str, value: str) -> bool:
    """Whether KEY=VALUE looks exactly like a variable the kubelet injects for a Service."""
    for pattern, shape in _SERVICE_LINK_SHAPES:
        if pattern.fullmatch(key) and _has_shape(value, shape):
            return True
    return False


def _has_shape(value: str, shape: str) -> bool:
    if shape == "port":
        return value.isdigit() and 0 < int(value) < 65536
    if shape == "proto":
        return value in ("tcp", "udp", "sctp")
    if shape == "url":
        match = _LINK_URL.fullmatch(value)
        return match is not None and _has_shape(match.group(2), "ip")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _env_names() -> list[str]:
    return [PREFIX + f.name.upper() for f in fields(Settings)]


@dataclass(frozen=True)
class RunOnceSettings:
    """run-once, configured like the old single-container service (no MLCD_ prefix)."""

    username: str
    password: str = field(repr=False)
    base_url: str = DEFAULT_FOGIS_BASE_URL
    days_back: int = DEFAULT_DAYS_BACK
    days_ahead: int = DEFAULT_DAYS_AHEAD
    previous_matches_file: str = "previous_matches.json"
    time_zone: str = "Europe/Stockholm"
    webhook_url: str | None = None
    webhook_hmac_key: str | None = field(default=None, repr=False)
    webhook_previous_hmac_key: str | None = field(default=None, repr=False)
    webhook_format: str = "plain"
    # PEM files: a private CA to trust, a client certificate and its key.
    webhook_ca_file: str | None = None
    webhook_cert_file: str | None = None
    webhook_key_file: str | None = None
    webhook_timeout_seconds: float = DEFAULT_WEBHOOK_TIMEOUT_SECONDS
    webhook_max_attempts: int = DEFAULT_WEBHOOK_MAX_ATTEMPTS
    fogis_timeout_seconds: float = 30.0


def _env_int(env: Mapping[str, str], key: str, default: int, minimum: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}")
    return value


def load_run_once(env: Mapping[str, str]) -> RunOnceSettings:
    missing = [key for key in ("FOGIS_USERNAME", "FOGIS_PASSWORD") if not env.get(key)]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} must be set")
    urls = {key: env.get(key, "").strip() for key in ("FOGIS_BASE_URL", "WEBHOOK_URL")}
    for key, url in urls.items():
        if url and not url.lower().startswith(("http://", "https://")):
            raise ConfigError(f"{key} must be an http(s) URL")
    webhook_format = env.get("WEBHOOK_FORMAT", "").strip() or "plain"
    if webhook_format not in WEBHOOK_FORMATS:
        raise ConfigError(f"WEBHOOK_FORMAT must be one of {', '.join(WEBHOOK_FORMATS)}")
    return RunOnceSettings(
        username=env["FOGIS_USERNAME"],
        password=env["FOGIS_PASSWORD"],
        base_url=(urls["FOGIS_BASE_URL"] or DEFAULT_FOGIS_BASE_URL).rstrip("/"),
        days_back=_env_int(env, "DAYS_BACK", DEFAULT_DAYS_BACK, 0),
        days_ahead=_env_int(env, "DAYS_AHEAD", DEFAULT_DAYS_AHEAD, 0),
        previous_matches_file=env.get("PREVIOUS_MATCHES_FILE", "").strip()
        or "previous_matches.json",
        time_zone=env.get("TIME_ZONE", "").strip() or "Europe/Stockholm",
        webhook_url=urls["WEBHOOK_URL"] or None,
        webhook_hmac_key=env.get("WEBHOOK_HMAC_KEY") or None,
        webhook_previous_hmac_key=env.get("WEBHOOK_PREVIOUS_HMAC_KEY") or None,
        webhook_format=webhook_format,
        webhook_ca_file=env.get("WEBHOOK_CA_FILE", "").strip() or None,
        webhook_cert_file=env.get("WEBHOOK_CERT_FILE", "").strip() or None,
        webhook_key_file=env.get("WEBHOOK_KEY_FILE", "").strip() or None,
    )


LANGUAGES = ("sv", "en")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class ServiceSettings:
    """RUN_MODE=service: one referee's watcher, configured like the seed's compose service."""

    # FOGIS, the window, the webhook and PREVIOUS_MATCHES_FILE (resolved in data_dir), parsed
    # as run-once parses them.
    run: RunOnceSettings
    # The MLCD_* settings the runner and scheduler apply (allow-lists, timeouts, test hooks).
    operator: Settings
    schedule: str = "0 * * * *"
    health_host: str = "0.0.0.0"  # noqa: S104 - a container's port is published to the host
    health_port: int = 8080
    # The seed's volume: the snapshots and the status live here.
    data_dir: str = "/app/data"
    # spec.notify's Secret key `urls` in the environment (Apprise URLs carry tokens).
    notify_urls: tuple[str, ...] = field(default=(), repr=False)
    language: str = "sv"
    log_level: str = "INFO"
    # How long POST /trigger waits for its run before answering 202.
    trigger_wait_seconds: float = 30.0
    # SIGTERM: a run under way may finish until then, then it is cut (docker stop's grace
    # period is 10 s, after which it kills).
    shutdown_timeout_seconds: float = 8.0


def _env_float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = _parse_float(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{key} must be greater than 0")
    return value


def _choice(env: Mapping[str, str], key: str, choices: tuple[str, ...], default: str) -> str:
    value = env.get(key, "").strip() or default
    value = value.upper() if choices == LOG_LEVELS else value  # the seed took any case
    if value not in choices:
        raise ConfigError(f"{key}={value!r} must be one of {', '.join(choices)}")
    return value


def load_service(env: Mapping[str, str]) -> ServiceSettings:
    """The service's settings: run-once's variables, the seed's service ones, and the MLCD_*
    settings; ConfigError naming the variable for anything unusable."""
    run = load_run_once(env)
    operator = load_settings(env)
    data_dir = env.get("DATA_DIR", "").strip() or "/app/data"
    # A relative PREVIOUS_MATCHES_FILE (the seed's default is one) lives in the data volume.
    run = replace(run, previous_matches_file=str(PurePath(data_dir, run.previous_matches_file)))
    schedule = env.get("CRON_SCHEDULE", "").strip() or "0 * * * *"
    try:
        parse_schedule(
            schedule,
            run.time_zone,
            allow_seconds=operator.allow_seconds_schedules,
            hash_id="service",
        )
    except InvalidSpec as exc:
        key = "TIME_ZONE" if exc.reason == Reason.UNKNOWN_TIME_ZONE else "CRON_SCHEDULE"
        raise ConfigError(f"{key}: {exc.message}") from None
    port = _env_int(env, "HEALTH_SERVER_PORT", 8080, 1)
    if port > 65535:
        raise ConfigError("HEALTH_SERVER_PORT must be a port number (1-65535)")
    return ServiceSettings(
        run=run,
        operator=operator,
        schedule=schedule,
        health_host=env.get("HEALTH_SERVER_HOST", "").strip() or "0.0.0.0",  # noqa: S104 - as above
        health_port=port,
        data_dir=data_dir,
        # Newline- or space-separated: Apprise URLs hold neither.
        notify_urls=tuple(env.get("NOTIFY_URLS", "").split()),
        language=_choice(env, "LANGUAGE", LANGUAGES, "sv"),
        log_level=_choice(env, "LOG_LEVEL", LOG_LEVELS, "INFO"),
        trigger_wait_seconds=_env_float(env, "TRIGGER_WAIT_SECONDS", 30.0),
        shutdown_timeout_seconds=_env_float(env, "SHUTDOWN_TIMEOUT_SECONDS", 8.0),
    )
