"""The receivers' delivery check catches what it is there to catch."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from controller.adapters.webhook import build_headers, resolve_target
from controller.core.model import WatcherRef, WebhookSpec
from controller.core.report import build_report, encode_report
from tests.fakes.receiver import Received
from tests.support.payloads import delivery_check

REPORT = build_report(
    watcher=WatcherRef("referees", "anna", "uid-1"),
    delivery_id="ad68df87-7cb6-57d5-9deb-fd3b2562ffa4",
    detected_at=datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
    trigger="manual",
    changes=[],
)


def received(document: dict[str, object], key: str) -> Received:
    body = encode_report(document)
    target = resolve_target(
        WebhookSpec(url="http://127.0.0.1:1/in", secret_name="hook"), {"hmacKey": key}, source="/t"
    )
    now = datetime.now(UTC)
    headers = build_headers(target, str(document["id"]), body, "t", sent=now, occurred=now)
    lowered = {name.lower(): value for name, value in headers.items()}
    return Received("POST", "/in", lowered, body, json.loads(body), None)


def test_a_good_delivery_has_no_problems() -> None:
    assert delivery_check("k")(received(REPORT, "k")) == []


def test_a_wrong_key_and_a_broken_document_are_caught() -> None:
    assert any("does not verify" in p for p in delivery_check("other")(received(REPORT, "k")))
    broken = {**REPORT, "trigger": "cron", "summary": {}}
    problems = delivery_check("k")(received(broken, "k"))
    assert any(p.startswith("trigger:") for p in problems)
    assert any(p.startswith("summary:") for p in problems)


def test_other_json_is_not_ours_to_check() -> None:
    assert delivery_check("k")(received({"id": "x", "title": "hi"}, "k")) == []
