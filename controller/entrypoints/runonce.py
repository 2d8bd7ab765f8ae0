"""run-once: one detection pass without Kubernetes, for people without a cluster.

Same client, diff, report and delivery code as the operator; the snapshot lives in a file.
Prints the change document (the webhook's payload) on stdout.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from controller import USER_AGENT
from controller.adapters.fogis import FogisClient, FogisSession
from controller.adapters.snapshots import FileSnapshots
from controller.adapters.webhook import RetryPolicy, WebhookSender, resolve_target
from controller.core.config import ConfigError, RunOnceSettings, load_run_once
from controller.core.errors import DetectorError
from controller.core.model import Credentials, WatcherRef, WebhookSpec
from controller.core.report import encode_report
from controller.runtime.detection import FogisSource, WebhookNotifier, detect
from controller.runtime.logs import set_log_levels
from controller.runtime.politeness import Politeness


def watcher_for(settings: RunOnceSettings, name: str = "run-once") -> WatcherRef:
    """A stable identity for delivery ids: the same account and file give the same uid."""
    seed = f"{settings.base_url}\n{settings.username}\n{settings.previous_matches_file}"
    return WatcherRef(namespace="", name=name, uid=hashlib.sha256(seed.encode()).hexdigest()[:32])


def webhook_secret(settings: RunOnceSettings) -> dict[str, str]:
    """The webhook Secret's keys from WEBHOOK_HMAC_KEY, WEBHOOK_PREVIOUS_HMAC_KEY and the
    WEBHOOK_CA_FILE / WEBHOOK_CERT_FILE / WEBHOOK_KEY_FILE PEM files."""
    secret = {
        key: value
        for key, value in (
            ("hmacKey", settings.webhook_hmac_key),
            ("previousHmacKey", settings.webhook_previous_hmac_key),
        )
        if value
    }
    for key, name, path in (
        ("ca.crt", "WEBHOOK_CA_FILE", settings.webhook_ca_file),
        ("tls.crt", "WEBHOOK_CERT_FILE", settings.webhook_cert_file),
        ("tls.key", "WEBHOOK_KEY_FILE", settings.webhook_key_file),
    ):
        if path:
            try:
                secret[key] = Path(path).read_text()
            except (OSError, UnicodeDecodeError):
                raise ConfigError(f"{name}={path!r} cannot be read as a PEM file") from None
    return secret


async def run_once(settings: RunOnceSettings) -> bytes:
    """One pass; returns the encoded report. Raises DetectorError (or ConfigError) on failure."""
    try:
        zone = ZoneInfo(settings.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"TIME_ZONE={settings.time_zone!r} is not an IANA time zone") from None
    credentials = Credentials(settings.username, settings.password)

    async def read_credentials() -> Credentials:
        return credentials

    fogis = FogisClient(timeout=settings.fogis_timeout_seconds)
    async with httpx.AsyncClient(follow_redirects=False) as http:
        notifier = None
        sender = WebhookSender(http, policy=RetryPolicy(), user_agent=USER_AGENT)
        if settings.webhook_url:
            secret = webhook_secret(settings)
            spec = WebhookSpec(
                url=settings.webhook_url,
                # The WEBHOOK_* variables play the part of the webhook Secret's keys.
                secret_name="WEBHOOK_*" if secret else None,
                timeout_seconds=settings.webhook_timeout_seconds,
                max_attempts=settings.webhook_max_attempts,
                format=settings.webhook_format,
            )
            target = resolve_target(spec, secret or None, source="/run-once")
            notifier = WebhookNotifier(sender, target, asyncio.Semaphore())
        try:
            detection = await detect(
                watcher=watcher_for(settings),
                zone=zone,
                days=(settings.days_back, settings.days_ahead),
                trigger="run-once",
                now=datetime.now(UTC),
                source=FogisSource(
                    fogis,
                    FogisSession(settings.base_url),
                    read_credentials,
                    budget_seconds=4 * settings.fogis_timeout_seconds,
                    # One exchange: these only pace a re-login (by up to a second).
                    politeness=Politeness(
                        max_concurrent_per_host=1, logins_per_second=1, max_concurrent=1
                    ),
                ),
                store=FileSnapshots(Path(settings.previous_matches_file)),
                notifier=notifier,
            )
        finally:
            await fogis.aclose()
            await sender.aclose()
    return encode_report(detection.report)


def main() -> int:
    """`run-once`, configured from the environment: the report on stdout; exit 1 on failure."""
    set_log_levels()
    try:
        report = asyncio.run(run_once(load_run_once(os.environ)))
    except (ConfigError, DetectorError) as exc:
        print(f"run-once failed: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(report + b"\n")
    sys.stdout.flush()
    return 0
