"""The simplest kopf operator a user would write instead of ours: one `@kopf.daemon` per
MatchWatcher that sleeps until the next cron slot, logs in to FOGIS, fetches the match list and
patches the status (no snapshots, diffs or notifications: the bare floor of the same job).

    kopf run --standalone -n NAMESPACE -m tests.bench.peer.daemon_peer

Written as such a user would: one module-level httpx.AsyncClient (one per daemon costs ~1 MiB
each, its TLS context, and one per run let 1,000 runs of a slot hold 1 GB: the comparison would
be about that alone; its default pool of 100 connections also spares the fake FOGIS 10,000 at
once), the login form's fields copied from the page, the `kubernetes` client in a thread for
the Secret and the status patch (kopf applies a daemon's `patch` only when it returns). It
writes only fields the CRD's structural schema keeps: nextExecutionTime, lastScheduleTime,
lastExecutionTime (with microseconds: the benchmark reads the start lag from it), matchCount,
lastError.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import kopf
from croniter import croniter
from kubernetes import client, config

GROUP, VERSION, PLURAL = "matchlist.io", "v1alpha1", "matchwatchers"
PREFIX = "bench-peer.matchlist.io"  # its own finalizer and annotations, not ours
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
MATCH_LIST = "/MatchWebMetoder.aspx/GetMatcherAttRapportera"
HTTP = httpx.AsyncClient(timeout=30)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX)
    settings.posting.enabled = False
    config.load_kube_config()


def credentials(namespace: str, secret: str) -> tuple[str, str]:
    data = client.CoreV1Api().read_namespaced_secret(secret, namespace).data
    return base64.b64decode(data["username"]).decode(), base64.b64decode(data["password"]).decode()


def patch_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    client.CustomObjectsApi().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status}
    )


async def fetch_matches(http: httpx.AsyncClient, base_url: str, user: str, password: str) -> int:
    """Log in (the classic ASP.NET form) and fetch this season's list; returns its length."""
    page = await http.get(f"{base_url}/Login.aspx", follow_redirects=True)
    form = {name: html.unescape(value) for name, value in HIDDEN.findall(page.text)}
    form |= {
        "ctl00$MainContent$UserName": user,
        "ctl00$MainContent$Password": password,
        "ctl00$MainContent$LoginButton": "Logga in",
    }
    login = await http.post(
        f"{base_url}/Login.aspx?ReturnUrl=%2fmdk%2f", data=form, follow_redirects=True
    )
    login.raise_for_status()
    year = datetime.now(UTC).year
    body = {"filter": {"datumFran": f"{year}-01-01", "datumTill": f"{year}-12-31", "typ": "alla"}}
    answer = await http.post(
        base_url + MATCH_LIST, json=body, headers={"X-Requested-With": "XMLHttpRequest"}
    )
    answer.raise_for_status()
    return len(json.loads(answer.json()["d"])["matchlista"])


def stamp(moment: datetime, precise: bool = False) -> str:
    """RFC 3339 in UTC, as Kubernetes writes date-times (the benchmark compares the strings)."""
    return moment.astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ" if precise else "%Y-%m-%dT%H:%M:%SZ"
    )


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=2.0)
async def watch_match_list(
    name: str,
    namespace: str | None,
    uid: str,
    spec: kopf.Spec,
    stopped: kopf.DaemonStopped,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    namespace = namespace or "default"  # MatchWatchers are namespaced: never None here
    source = spec["source"]["fogis"]
    secret = source["credentialsSecretRef"]["name"]
    user, password = await asyncio.to_thread(credentials, namespace, secret)
    zone = ZoneInfo(spec.get("timeZone") or "UTC")
    while not stopped:
        slot: datetime = croniter(spec["schedule"], datetime.now(zone), hash_id=uid).get_next(
            datetime
        )
        await asyncio.to_thread(patch_status, namespace, name, {"nextExecutionTime": stamp(slot)})
        await stopped.wait((slot - datetime.now(zone)).total_seconds())
        if stopped:
            break
        started = datetime.now(UTC)
        status: dict[str, Any] = {"lastScheduleTime": stamp(slot)}
        status["lastExecutionTime"] = stamp(started, precise=True)
        try:
            status["matchCount"] = await fetch_matches(HTTP, source["baseUrl"], user, password)
            status["lastError"] = None
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            logger.warning("FOGIS fetch failed: %r", exc)
            status["lastError"] = repr(exc)
        await asyncio.to_thread(patch_status, namespace, name, status)
