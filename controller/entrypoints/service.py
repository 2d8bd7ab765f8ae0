"""The service (RUN_MODE=service, or `python -m controller service`): one referee's watcher,
configured from the environment like the seed's docker-compose service, with its HTTP API
(GET /health, POST /trigger, GET /status, GET /metrics) on HEALTH_SERVER_HOST:HEALTH_SERVER_PORT.

The same scheduler and runner as the operator's (controller/runtime/service.py); the state lives
in DATA_DIR (controller/adapters/statefiles.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller import __version__
from controller.adapters.metrics import Metrics
from controller.adapters.notify import notify_urls
from controller.adapters.snapshots import parse_state, write_atomic
from controller.adapters.statefiles import EnvBacking, FileStatus
from controller.adapters.webhook import display_url
from controller.core.config import ConfigError, ServiceSettings, load_service
from controller.core.errors import DetectorError, InvalidSpec
from controller.core.model import WatcherRef, parse_spec
from controller.core.status import timestamp
from controller.entrypoints.runonce import watcher_for, webhook_secret
from controller.runtime.bugs import unexpected
from controller.runtime.logs import set_log_levels
from controller.runtime.runner import WatcherRunner
from controller.runtime.service import Finished, Service

log = logging.getLogger(__name__)
SERVICE_NAME = "match-list-change-detector"
STATUS_FILE = "watcher-status.json"
# The environment variables behind the Secrets a MatchWatcher would name.
FOGIS_SECRET, WEBHOOK_SECRET, NOTIFY_SECRET = (
    "FOGIS_USERNAME/FOGIS_PASSWORD",
    "WEBHOOK_*",
    "NOTIFY_URLS",
)
# Where a spec field the service builds comes from, for error messages.
_SPEC_VARIABLES = {"spec.webhook.url": "WEBHOOK_URL", "spec.source.fogis.baseUrl": "FOGIS_BASE_URL"}
_UID_FIX = (
    "the image runs as UID 10001: give it the directory (`chown 10001:10001 ./data` on the "
    "host) or run it as the directory's owner (compose `user:`, docker run --user)"
)


def notified_path(snapshot: Path) -> Path:
    """The people's snapshot (spec.notify), beside the webhook's PREVIOUS_MATCHES_FILE."""
    return snapshot.with_name(f"{snapshot.stem}.notified{snapshot.suffix or '.json'}")


@dataclass(frozen=True)
class Prepared:
    """Everything checked before the service starts: a problem here is exit 2."""

    ref: WatcherRef
    spec: dict[str, Any]
    state: FileStatus
    backing: EnvBacking


def _writable(directory: Path, what: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write-check"
        write_atomic(probe, "")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{what} {directory} is not writable ({exc.strerror}): {_UID_FIX}"
        ) from None


def _check_state(path: Path) -> None:
    """A snapshot file that is there must be readable, else the service does not start (and
    writes nothing over it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    parse_state(text, str(path))


def build_spec(settings: ServiceSettings, has_webhook_secret: bool) -> dict[str, Any]:
    """The MatchWatcher spec the environment describes."""
    run = settings.run
    spec: dict[str, Any] = {
        "schedule": settings.schedule,
        "timeZone": run.time_zone,
        "source": {
            "fogis": {
                "baseUrl": run.base_url,
                "credentialsSecretRef": {"name": FOGIS_SECRET},
                "daysBack": run.days_back,
                "daysAhead": run.days_ahead,
            }
        },
        "language": settings.language,
    }
    if run.webhook_url:
        spec["webhook"] = {
            "url": run.webhook_url,
            "timeoutSeconds": run.webhook_timeout_seconds,
            "maxAttempts": run.webhook_max_attempts,
            "format": run.webhook_format,
            **({"secretRef": {"name": WEBHOOK_SECRET}} if has_webhook_secret else {}),
        }
    if settings.notify_urls:
        spec["notify"] = {"secretRef": {"name": NOTIFY_SECRET}}
    try:
        parse_spec(spec)
    except InvalidSpec as exc:
        message = exc.message
        for path, variable in _SPEC_VARIABLES.items():
            message = message.replace(path, variable)
        raise ConfigError(message) from None
    return spec


def prepare(settings: ServiceSettings, now: datetime) -> Prepared:
    """Check and open the state; ConfigError or DetectorError for anything unusable."""
    data_dir = Path(settings.data_dir)
    snapshot = Path(settings.run.previous_matches_file)
    _writable(data_dir, "DATA_DIR")
    if snapshot.parent != data_dir:
        _writable(snapshot.parent, "the directory of PREVIOUS_MATCHES_FILE")
    for path in (snapshot, notified_path(snapshot)):
        _check_state(path)
    state = FileStatus.open(data_dir / STATUS_FILE, now)
    secrets: dict[str, Mapping[str, str]] = {
        FOGIS_SECRET: {"username": settings.run.username, "password": settings.run.password}
    }
    webhook = webhook_secret(settings.run)
    if webhook:
        secrets[WEBHOOK_SECRET] = webhook
    if settings.notify_urls:
        secrets[NOTIFY_SECRET] = {"urls": "\n".join(settings.notify_urls)}
        try:
            notify_urls(secrets[NOTIFY_SECRET], NOTIFY_SECRET)
        except InvalidSpec as exc:
            raise ConfigError(exc.message) from None
    return Prepared(
        ref=watcher_for(settings.run, name="service"),
        spec=build_spec(settings, bool(webhook)),
        state=state,
        backing=EnvBacking(
            secrets, {"snapshot": snapshot, "notified": notified_path(snapshot)}, state.salt
        ),
    )


# --- the HTTP API --------------------------------------------------------------------------------


def _ready(status: Mapping[str, Any]) -> Mapping[str, Any]:
    conditions = status.get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def last_run(status: Mapping[str, Any]) -> dict[str, Any]:
    """The last run's outcome as the status records it (it survives restarts)."""
    ready, webhook = _ready(status), status.get("webhook") or {}
    return {
        "reason": ready.get("reason"),
        "message": ready.get("message"),
        "error": status.get("lastError"),
        "last_success": status.get("lastSuccessfulTime"),
        "match_count": status.get("matchCount"),
        "change_count": status.get("changeCount", 0),
        "last_change": status.get("lastChange"),
        "pending_changes": webhook.get("pendingChanges", 0),
        "last_delivery_id": webhook.get("lastDeliveryId"),
    }


def run_answer(finished: Finished) -> tuple[int, dict[str, Any]]:
    """POST /trigger's answer for a finished run: the seed's body with our details."""
    record = finished.outcome.record
    summary = record.summary
    body: dict[str, Any] = {
        "status": "success" if record.error is None else "error",
        "message": finished.outcome.note.message,
        "reason": str(record.readiness.reason),
        "started": timestamp(record.started),
        "finished": timestamp(record.finished),
        "match_count": record.match_count,
        "changes": None
        if summary is None
        else {"new": summary.new, "removed": summary.removed, "changed": summary.changed},
        "delivered": record.delivered,
        "delivery_id": record.history.delivery_id if record.history is not None else None,
    }
    return (200 if record.error is None else 500), body


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Api:
    def __init__(
        self, settings: ServiceSettings, service: Service, metrics: Metrics, data_dir: Path
    ) -> None:
        self._settings = settings
        self._service = service
        self._metrics = metrics
        self._data_dir = data_dir
        self._started = time.monotonic()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._json_errors])
        app.router.add_get("/health", self.health)
        app.router.add_post("/trigger", self.trigger)
        app.router.add_get("/status", self.status)
        app.router.add_get("/metrics", self.metrics)
        return app

    @web.middleware
    async def _json_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """4xx as JSON (a wrong method names the right one), a bug as a 500 without details."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return web.json_response(
                {"status": "error", "message": f"{request.method} {request.path}: {exc.reason}"},
                status=exc.status,
                headers=headers,
            )
        except Exception as exc:
            error = unexpected(exc, f"{request.method} {request.path}", log)
            return web.json_response({"status": "error", "message": error.message}, status=500)

    def _problems(self) -> list[str]:
        """Why the process cannot do its job, if it cannot (FOGIS or a receiver being down is
        not that: a restart would not help, and a restart loop would log in again and again)."""
        problems = []
        write_error = self._service.state.write_error
        if write_error is not None:
            problems.append(write_error)
        elif not os.access(self._data_dir, os.W_OK):
            problems.append(f"DATA_DIR {self._data_dir} is not writable")
        if not self._service.alive:
            problems.append("the scheduler is not running")
        return problems

    async def health(self, request: web.Request) -> web.Response:
        status, problems = self._service.state.status, self._problems()
        body: dict[str, Any] = {
            "service_name": SERVICE_NAME,
            "status": "unhealthy" if problems else "healthy",
            "run_mode": "service",
            "version": __version__,
            "cron_schedule": self._settings.schedule,
            "time_zone": self._settings.run.time_zone,
            "last_execution": status.get("lastExecutionTime"),
            "next_execution": status.get("nextExecutionTime"),
            "execution_count": status.get("executionCount", 0),
            "uptime_seconds": round(time.monotonic() - self._started, 1),
            "timestamp": timestamp(datetime.now(UTC)),
            "running": self._service.running is not None,
            "last_run": last_run(status),
        }
        if problems:
            body["problems"] = problems
        return web.json_response(body, status=503 if problems else 200)

    async def trigger(self, request: web.Request) -> web.Response:
        busy = self._service.running is not None
        waiter = self._service.trigger()
        if busy:
            return _queued("a run is under way: this trigger runs after it")
        wait = self._settings.trigger_wait_seconds
        await asyncio.wait({waiter}, timeout=wait)
        if not waiter.done() or waiter.cancelled():
            return _queued(f"the run did not finish within {wait:g}s: see GET /health")
        code, body = run_answer(waiter.result())
        return web.json_response(body, status=code)

    async def status(self, request: web.Request) -> web.Response:
        settings, run = self._settings, self._settings.run
        operator = settings.operator
        configuration = {
            "cron_schedule": settings.schedule,
            "time_zone": run.time_zone,
            "fogis_base_url": display_url(run.base_url),
            "fogis_username": run.username,
            "fogis_password_set": True,  # load_service refuses to start without it
            "days_back": run.days_back,
            "days_ahead": run.days_ahead,
            "webhook_url": display_url(run.webhook_url) if run.webhook_url else None,
            "webhook_format": run.webhook_format,
            "webhook_hmac_key_set": run.webhook_hmac_key is not None,
            # Apprise URLs carry their tokens anywhere (host, path): only the services show.
            "notify_services": [url.partition("://")[0] for url in settings.notify_urls],
            "language": settings.language,
            "data_dir": settings.data_dir,
            "previous_matches_file": run.previous_matches_file,
            "health_server": f"{settings.health_host}:{settings.health_port}",
            "trigger_wait_seconds": settings.trigger_wait_seconds,
            "allowed_hosts": {
                "fogis": sorted(operator.allowed_fogis_hosts),
                "webhook": sorted(operator.allowed_webhook_hosts),
                "notify": sorted(operator.allowed_notify_hosts),
            },
        }
        service = self._service
        body = {
            "service_name": SERVICE_NAME,
            "run_mode": "service",
            "version": __version__,
            "watcher": {"name": service.ref.name, "uid": service.ref.uid},
            "running": None if service.running is None else service.running.kind,
            "configuration": configuration,
            "status": service.state.status,
            "last_event": service.state.last_event,
            "problems": self._problems(),
        }
        return web.json_response(body)

    async def metrics(self, request: web.Request) -> web.Response:
        text = await asyncio.to_thread(generate_latest, self._metrics.registry)
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _queued(message: str) -> web.Response:
    return web.json_response({"status": "queued", "queued": True, "message": message}, status=202)


# --- the process ---------------------------------------------------------------------------------


async def serve(settings: ServiceSettings, prepared: Prepared) -> int:
    metrics = Metrics()
    runner = WatcherRunner(backing=prepared.backing, settings=settings.operator, metrics=metrics)
    service = Service(
        ref=prepared.ref,
        spec=prepared.spec,
        state=prepared.state,
        runner=runner,
        settings=settings.operator,
        metrics=metrics,
    )
    metrics.watchers.set(1)
    api = Api(settings, service, metrics, Path(settings.data_dir))
    # A /trigger still waiting at shutdown is answered within a second.
    http = web.AppRunner(api.app(), access_log=None, shutdown_timeout=1.0)
    await http.setup()
    try:
        await web.TCPSite(http, settings.health_host, settings.health_port).start()
    except OSError as exc:
        await http.cleanup()
        await runner.aclose()
        _fail(
            f"cannot listen on {settings.health_host}:{settings.health_port} "
            f"(HEALTH_SERVER_HOST, HEALTH_SERVER_PORT): {exc.strerror}"
        )
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service.start()
    log.info(
        "serving on %s:%s: schedule %r in %s, state in %s",
        settings.health_host,
        settings.health_port,
        settings.schedule,
        settings.run.time_zone,
        settings.data_dir,
    )
    await stop.wait()
    log.info("stopping")
    await service.stop(settings.shutdown_timeout_seconds)
    await http.cleanup()
    await runner.aclose()
    return 0


def _fail(message: str) -> None:
    print(f"{SERVICE_NAME} service: {message}", file=sys.stderr)


def main() -> int:
    """The service until SIGTERM (exit 0); exit 2 for settings or state it cannot use."""
    try:
        settings = load_service(os.environ)
    except ConfigError as exc:
        _fail(str(exc))
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    set_log_levels(settings.log_level)
    try:
        prepared = prepare(settings, datetime.now(UTC))
    except (ConfigError, DetectorError) as exc:
        _fail(str(exc))
        return 2
    return asyncio.run(serve(settings, prepared))
