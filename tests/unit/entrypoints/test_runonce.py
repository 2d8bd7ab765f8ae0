"""`python -m controller run-once` end to end: the old service's environment, a snapshot file,
the change report on stdout, the webhook, and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.fogis.records import make_match
from tests.fakes.fogis.server import FakeFogis
from tests.fakes.receiver import WebhookReceiver
from tests.support.payloads import delivery_check

ROOT = Path(__file__).resolve().parents[3]
USER, PASSWORD, HMAC_KEY = "anna", "run-once-Pa55", "hook-key-123"


def soon(days: int) -> Any:
    return (datetime.now(UTC) + timedelta(days=days)).date()


@pytest.fixture
def fogis() -> Iterator[FakeFogis]:
    with FakeFogis(users={USER: PASSWORD}, matches=[make_match(1, on=soon(3))]) as fake:
        yield fake


def run_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("WEBHOOK_URL", "DAYS_BACK")}
    return subprocess.run(
        [sys.executable, "-m", "controller", "run-once"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_baseline_then_change_then_webhook(fogis: FakeFogis, tmp_path: Path) -> None:
    snapshot = tmp_path / "previous_matches.json"
    with WebhookReceiver(hmac_key=HMAC_KEY, check=delivery_check(HMAC_KEY)) as hook:
        env = {
            "FOGIS_USERNAME": USER,
            "FOGIS_PASSWORD": PASSWORD,
            "FOGIS_BASE_URL": fogis.base_url,
            "PREVIOUS_MATCHES_FILE": str(snapshot),
            "WEBHOOK_URL": hook.url,
            "WEBHOOK_HMAC_KEY": HMAC_KEY,
        }
        first = run_once(env)
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout)
        assert report["kind"] == "MatchListChanged"
        assert report["trigger"] == "run-once"
        assert report["changes"] == []
        assert snapshot.exists()
        assert hook.requests == []  # a baseline notifies nobody

        fogis.set_matches([make_match(1, on=soon(3), installd=True), make_match(2, on=soon(5))])
        second = run_once(env)
        assert second.returncode == 0, second.stderr
        report = json.loads(second.stdout)
        assert report["summary"] == {"new": 1, "removed": 0, "changed": 1, "total": 2}
        received = hook.wait_for(1, timeout=10)
        assert len(received) == 1
        assert received[0].signature_valid is True
        assert received[0].payload == report
        assert received[0].header("X-MatchList-Delivery") == report["id"]

        third = run_once(env)
        assert json.loads(third.stdout)["changes"] == []
        assert len(hook.requests) == 1


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"FOGIS_PASSWORD": "wrong"}, "FOGIS rejected the login"),
        ({"FOGIS_USERNAME": ""}, "FOGIS_USERNAME must be set"),
        ({"DAYS_BACK": "many"}, "DAYS_BACK"),
        ({"FOGIS_BASE_URL": "http://127.0.0.1:1/mdk"}, "run-once failed"),
    ],
)
def test_failures_exit_non_zero_with_one_line(
    fogis: FakeFogis, tmp_path: Path, env: dict[str, str], fragment: str
) -> None:
    base = {
        "FOGIS_USERNAME": USER,
        "FOGIS_PASSWORD": PASSWORD,
        "FOGIS_BASE_URL": fogis.base_url,
        "PREVIOUS_MATCHES_FILE": str(tmp_path / "prev.json"),
    }
    result = run_once({**base, **env})
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert fragment in lines[0]
    assert PASSWORD not in result.stderr
    assert not (tmp_path / "prev.json").exists()


def test_corrupt_snapshot_file_is_reported_not_overwritten(
    fogis: FakeFogis, tmp_path: Path
) -> None:
    snapshot = tmp_path / "prev.json"
    snapshot.write_text("{not json")
    result = run_once(
        {
            "FOGIS_USERNAME": USER,
            "FOGIS_PASSWORD": PASSWORD,
            "FOGIS_BASE_URL": fogis.base_url,
            "PREVIOUS_MATCHES_FILE": str(snapshot),
        }
    )
    assert result.returncode == 1
    assert "unreadable" in result.stderr
    assert snapshot.read_text() == "{not json"


def test_run_once_loads_neither_kubernetes_nor_prometheus() -> None:
    """People without a cluster pay for neither client (nor kopf) at start-up."""
    probe = (
        "import sys, controller.__main__, controller.entrypoints.runonce; "
        "print(sorted(m for m in ('kubernetes', 'prometheus_client', 'kopf') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
