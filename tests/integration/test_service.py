"""The service (RUN_MODE=service) as a process, against the FOGIS stand-in and a webhook receiver:
its HTTP API, its state across restarts and kills, and its refusals. No Kubernetes here."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes.fogis.records import make_match, sample_matches
from tests.fakes.fogis.server import FakeFogis
from tests.fakes.receiver import Reply, WebhookReceiver
from tests.support.net import http
from tests.support.payloads import delivery_check
from tests.support.service_process import PASSWORD, ServiceProcess
from tests.support.waiting import wait_for

HMAC_KEY = "service-hmac-key"
# Every 20 seconds (the seconds field last: MLCD_ALLOW_SECONDS_SCHEDULES is a test hook).
EVERY_20_SECONDS = "* * * * * */20"


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(hmac_key=HMAC_KEY, check=delivery_check(HMAC_KEY)) as receiver:
        yield receiver


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def service(fogis: FakeFogis, hook: WebhookReceiver, data_dir: Path, **env: str) -> ServiceProcess:
    return ServiceProcess(
        fogis.base_url,
        data_dir,
        data_dir.parent / "service.log",
        {"WEBHOOK_URL": hook.url, "WEBHOOK_HMAC_KEY": HMAC_KEY, **env},
    )


def changed_list() -> list[dict[str, object]]:
    """The sample list with one match moved and one new."""
    matches = sample_matches()
    matches[0] = {**matches[0], "avsparkstid": "20:15", "tid": None}
    return [*matches, make_match(6143999)]


def test_health_trigger_status_and_metrics(
    fogis: FakeFogis, hook: WebhookReceiver, data_dir: Path
) -> None:
    svc = service(fogis, hook, data_dir).start()
    try:
        health = svc.health()
        assert {
            "service_name": "match-list-change-detector",
            "status": "healthy",
            "run_mode": "service",
            "cron_schedule": "0 * * * *",
            "execution_count": 0,
            "last_execution": None,
        }.items() <= health.items()
        assert health["next_execution"].endswith(":00:00Z")
        assert {"uptime_seconds", "timestamp", "last_run"} <= health.keys()

        first = svc.trigger()
        assert first["status"] == "success"
        assert "baseline" in first["message"]
        assert hook.requests == []

        fogis.set_matches(changed_list())
        second = svc.trigger()
        assert second["status"] == "success"
        assert second["changes"] == {"new": 1, "removed": 0, "changed": 1}
        (received,) = hook.wait_for(1)
        assert received.header("webhook-id") == second["delivery_id"]
        assert received.signature_valid

        health = svc.health()
        assert health["execution_count"] == 2
        assert health["last_run"]["reason"] == "Succeeded"
        assert health["last_run"]["last_delivery_id"] == second["delivery_id"]

        code, status = svc.call("GET", "/status")
        assert code == 200
        assert status["configuration"]["fogis_password_set"] is True
        assert status["configuration"]["webhook_hmac_key_set"] is True
        assert status["status"]["executionCount"] == 2
        code, metrics = http("GET", f"{svc.url}/metrics")
        assert code == 200
        assert (
            'matchwatcher_runs_total{name="service",namespace="",result="success",'
            'trigger="manual"} 2.0'
        ) in metrics.decode()
        for text in (json.dumps(status), metrics.decode(), svc.logs()):
            assert PASSWORD not in text
            assert HMAC_KEY not in text
    finally:
        assert svc.stop() == 0


def test_status_redacts_urls(fogis: FakeFogis, hook: WebhookReceiver, data_dir: Path) -> None:
    url = hook.url.replace("http://", "http://user:pass-word@") + "?token=capability"
    svc = service(
        fogis, hook, data_dir, WEBHOOK_URL=url, NOTIFY_URLS="json://127.0.0.1:9/secret-path"
    ).start()
    try:
        configuration = svc.call("GET", "/status")[1]["configuration"]
        assert configuration["webhook_url"] == hook.url
        assert configuration["notify_services"] == ["json"]
        text = json.dumps(configuration)
        for secret in ("pass-word", "capability", "secret-path", PASSWORD):
            assert secret not in text
    finally:
        svc.stop()


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", "/trigger", 405),
        ("POST", "/health", 405),
        ("DELETE", "/status", 405),
        ("GET", "/nope", 404),
        ("GET", "/health/../../etc/passwd", 404),
    ],
)
def test_bad_requests_get_json_errors(
    fogis: FakeFogis, hook: WebhookReceiver, data_dir: Path, method: str, path: str, code: int
) -> None:
    svc = service(fogis, hook, data_dir).start()
    try:
        answer, document = svc.call(method, path)
        assert answer == code
        assert document["status"] == "error"
        assert "Traceback" not in svc.logs()
    finally:
        svc.stop()


def test_a_restart_keeps_the_state(fogis: FakeFogis, hook: WebhookReceiver, data_dir: Path) -> None:
    svc = service(fogis, hook, data_dir).start()
    assert "baseline" in svc.trigger()["message"]
    before = svc.health()
    assert svc.stop() == 0

    svc.start()
    try:
        after = svc.health()
        assert after["execution_count"] == 1
        assert after["next_execution"] == before["next_execution"]
        again = svc.trigger()
        assert again["status"] == "success"
        assert again["changes"] == {"new": 0, "removed": 0, "changed": 0}
        assert "baseline" not in again["message"]
    finally:
        svc.stop()


def _slot(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def seeded(data_dir: Path) -> None:
    """A state to compare against without a baseline run first: the seed's file."""
    text = json.dumps(sample_matches())
    (data_dir / "previous_matches.json").write_text(text, encoding="utf-8")


def test_a_restart_between_a_claim_and_its_run_does_not_rerun_the_slot(
    fogis: FakeFogis, hook: WebhookReceiver, data_dir: Path
) -> None:
    seeded(data_dir)
    fogis.set_matches(changed_list())
    fogis.fail_next("timeout", count=5)  # the first scheduled run hangs in its fetch
    svc = service(fogis, hook, data_dir, CRON_SCHEDULE=EVERY_20_SECONDS).start()
    claimed = wait_for(
        "a scheduled run under way",
        lambda: svc.health()["running"] and svc.status_file()["status"].get("lastScheduleTime"),
        timeout=40,
    )
    svc.kill()
    fogis.clear_failures()

    svc.start()
    try:
        assert svc.status_file()["status"]["lastScheduleTime"] == claimed
        (received,) = hook.wait_for(1, timeout=40)
        status = wait_for(
            "the run's status",
            lambda: (now := svc.status_file()["status"]).get("executionCount") and now,
        )
        # The next slot ran and delivered what the cut run would have; the claimed one never ran.
        assert _slot(status["lastScheduleTime"]) >= _slot(claimed) + timedelta(seconds=20)
        assert status["executionCount"] == 1
        assert {c["type"] for c in received.payload["changes"]} == {"new", "changed"}
    finally:
        svc.stop()


def test_a_kill_during_a_delivery_redelivers_under_the_same_id(
    fogis: FakeFogis, hook: WebhookReceiver, data_dir: Path
) -> None:
    seeded(data_dir)
    fogis.set_matches(changed_list())
    hook.enqueue(Reply(204, delay_seconds=30))  # the receiver takes it, and answers late
    svc = service(fogis, hook, data_dir).start()
    asked = threading.Thread(target=http, args=("POST", f"{svc.url}/trigger"))
    asked.start()
    (first,) = hook.wait_for(1, timeout=30)
    svc.kill()
    asked.join()

    svc.start()
    try:
        again = svc.trigger()
        assert again["status"] == "success"
        second = hook.wait_for(2)[1]
        assert second.header("webhook-id") == first.header("webhook-id")
        assert second.payload["changes"] == first.payload["changes"]
    finally:
        svc.stop()


def test_sigterm_during_a_run_exits_0(
    fogis: FakeFogis, hook: WebhookReceiver, data_dir: Path
) -> None:
    svc = service(fogis, hook, data_dir).start()
    fogis.fail_next("timeout")
    asked = threading.Thread(target=http, args=("POST", f"{svc.url}/trigger"))
    asked.start()
    wait_for("the run under way", lambda: svc.health()["running"])
    assert svc.stop(signal.SIGTERM, timeout=15) == 0
    asked.join()
    assert "Traceback" not in svc.logs()


def test_a_seed_state_file_is_compared_against(
    fogis: FakeFogis, hook: WebhookReceiver, data_dir: Path
) -> None:
    """The seed's previous_matches.json (the raw FOGIS list): the first run reports what changed
    since the seed's last run."""
    seed = data_dir / "previous_matches.json"
    seed.write_text(json.dumps(sample_matches(), indent=2), encoding="utf-8")
    fogis.set_matches(changed_list())
    svc = service(fogis, hook, data_dir).start()
    try:
        first = svc.trigger()
        assert first["status"] == "success", first
        assert first["changes"] == {"new": 1, "removed": 0, "changed": 1}
        (received,) = hook.wait_for(1)
        assert received.header("webhook-id") == first["delivery_id"]
        # Rewritten in our format, so the next run compares against this one.
        assert json.loads(seed.read_text())["revision"] == 1
    finally:
        svc.stop()


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("previous_matches.json", '{"not": "ours"}', "previous_matches.json is unreadable"),
        ("previous_matches.json", "[1, 2, 3]", "none of its 3 entries is a match"),
        ("previous_matches.notified.json", "garbage", "notified.json is unreadable"),
        ("watcher-status.json", '{"format": 1}', "the status file"),
    ],
)
def test_a_corrupt_state_file_stops_the_start_and_is_left_alone(
    fogis: FakeFogis, hook: WebhookReceiver, data_dir: Path, name: str, text: str, fragment: str
) -> None:
    (data_dir / name).write_text(text, encoding="utf-8")
    svc = service(fogis, hook, data_dir).start(wait=False)
    assert svc.wait() == 2
    assert fragment in svc.logs()
    assert "Traceback" not in svc.logs()
    assert len(svc.logs().strip().splitlines()) == 1
    assert (data_dir / name).read_text(encoding="utf-8") == text
    assert sorted(p.name for p in data_dir.iterdir()) == [name]


def test_a_data_dir_it_cannot_write_is_one_clear_error(
    fogis: FakeFogis, hook: WebhookReceiver, data_dir: Path
) -> None:
    blocker = data_dir / "a-file"
    blocker.write_text("")
    svc = service(fogis, hook, data_dir, DATA_DIR=str(blocker / "data")).start(wait=False)
    assert svc.wait() == 2
    lines = svc.logs().strip().splitlines()
    assert len(lines) == 1
    assert "is not writable" in lines[0]
    assert "chown 10001:10001 ./data" in lines[0]


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"CRON_SCHEDULE": "hourly please"}, "CRON_SCHEDULE"),
        ({"HEALTH_SERVER_PORT": "eighty"}, "HEALTH_SERVER_PORT"),
        ({"NOTIFY_URLS": "nosuchscheme://x"}, "NOTIFY_URLS"),
        ({"RUN_MODE": "daemon"}, "RUN_MODE='daemon' is not one of operator, service, oneshot"),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    fogis: FakeFogis, hook: WebhookReceiver, data_dir: Path, env: dict[str, str], fragment: str
) -> None:
    svc = service(fogis, hook, data_dir, **env).start(wait=False)
    assert svc.wait() == 2
    lines = svc.logs().strip().splitlines()
    assert len(lines) == 1
    assert fragment in lines[0]
