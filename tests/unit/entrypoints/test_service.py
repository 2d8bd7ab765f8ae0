"""The service's HTTP API and start-up checks, with a runner that runs when told to (the process
itself: tests/integration/test_service.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from controller.adapters.metrics import Metrics
from controller.adapters.statefiles import FileStatus
from controller.core.config import ConfigError, ServiceSettings, load_service
from controller.core.diff import Summary
from controller.core.events import Note
from controller.core.model import WatcherRef, WatcherSpec
from controller.core.outcome import Outcome
from controller.core.reasons import Reason
from controller.core.status import Readiness, RunRecord, WatcherStatus
from controller.core.trigger import Trigger
from controller.entrypoints.operator import kubernetes_configured
from controller.entrypoints.service import Api, build_spec, notified_path, prepare
from controller.runtime.service import Service
from tests.support.waiting import wait_for_async

LOGIN = {"FOGIS_USERNAME": "anna", "FOGIS_PASSWORD": "pw-value"}
REF = WatcherRef("", "service", "uid-1")


class GatedRunner:
    """Each run waits for `release`, then succeeds with one new match."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.runs: list[Trigger] = []

    async def run(
        self,
        ref: WatcherRef,
        spec: WatcherSpec,
        trigger: Trigger,
        *,
        previous: WatcherStatus,
        zone: ZoneInfo,
        started: datetime,
    ) -> Outcome:
        self.runs.append(trigger)
        await self.release.wait()
        record = RunRecord(
            trigger=trigger,
            started=started,
            finished=started,
            readiness=Readiness(True, Reason.SUCCEEDED, "1 changes"),
            error=None,
            match_count=1,
            summary=Summary(1, 0, 0),
            delivered=True,
            webhook=None,
        )
        return Outcome(record, Note("Normal", Reason.SUCCEEDED, "manual run: 1 changes"))


@dataclass
class Running:
    client: TestClient  # type: ignore[type-arg]  # aiohttp's generics differ across versions
    service: Service
    runner: GatedRunner


def settings_for(tmp_path: Path, **env: str) -> ServiceSettings:
    return load_service({**LOGIN, "DATA_DIR": str(tmp_path), **env})


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    settings = settings_for(tmp_path, TRIGGER_WAIT_SECONDS="0.5")
    prepared = prepare(settings, datetime.now(ZoneInfo("UTC")))
    runner = GatedRunner()
    service = Service(
        ref=REF,
        spec=prepared.spec,
        state=prepared.state,
        runner=runner,
        settings=settings.operator,
        metrics=Metrics(),
    )
    service.start()
    client = TestClient(TestServer(Api(settings, service, Metrics(), tmp_path).app()))
    await client.start_server()
    yield Running(client, service, runner)
    runner.release.set()
    await service.stop(1)
    await client.close()


async def test_health_is_200_while_it_can_do_its_job(running: Running) -> None:
    answer = await running.client.get("/health")
    assert answer.status == 200
    document = await answer.json()
    assert (document["status"], document["run_mode"]) == ("healthy", "service")
    assert "problems" not in document


async def test_health_is_503_when_state_cannot_be_written(running: Running) -> None:
    # After the first step's write (Ready: Scheduled), which would clear it.
    await wait_for_async("the first status write", lambda: running.service.state.version != "0")
    running.service.state.write_error = "cannot write /app/data/watcher-status.json: denied"
    answer = await running.client.get("/health")
    assert answer.status == 503
    assert (await answer.json())["problems"] == [running.service.state.write_error]


async def test_health_is_503_when_the_scheduler_stopped(running: Running) -> None:
    await running.service.stop(1)
    answer = await running.client.get("/health")
    assert answer.status == 503
    assert (await answer.json())["problems"] == ["the scheduler is not running"]


async def test_one_run_at_a_time_and_the_trigger_waits_for_it(running: Running) -> None:
    client, runner = running.client, running.runner
    slow = await client.post("/trigger")  # its run waits longer than TRIGGER_WAIT_SECONDS
    assert slow.status == 202
    assert (await slow.json())["queued"] is True
    busy = await client.post("/trigger")
    assert busy.status == 202
    assert "under way" in (await busy.json())["message"]
    assert len(runner.runs) == 1

    runner.release.set()
    await wait_for_async(
        "the queued run", lambda: len(runner.runs) == 2 and running.service.running is None
    )
    answer = await client.post("/trigger")
    assert answer.status == 200
    document = await answer.json()
    assert document["status"] == "success"
    assert document["changes"] == {"new": 1, "removed": 0, "changed": 0}
    assert len(runner.runs) == 3


async def test_triggers_before_the_claim_share_one_run(running: Running) -> None:
    running.runner.release.set()
    first, second = await asyncio.gather(
        running.client.post("/trigger"), running.client.post("/trigger")
    )
    assert (first.status, second.status) == (200, 200)
    assert len(running.runner.runs) == 1


def test_a_webhook_url_the_spec_refuses_names_the_variable(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, WEBHOOK_URL="http://[::1/hook")
    with pytest.raises(ConfigError, match=r"^WEBHOOK_URL must be an http"):
        build_spec(settings, has_webhook_secret=False)


def test_the_spec_follows_the_environment(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, WEBHOOK_URL="http://127.0.0.1:9/hook", NOTIFY_URLS="json://127.0.0.1:9/x"
    )
    spec = build_spec(settings, has_webhook_secret=True)
    assert spec["webhook"]["secretRef"] == {"name": "WEBHOOK_*"}
    assert spec["notify"] == {"secretRef": {"name": "NOTIFY_URLS"}}
    assert spec["timeZone"] == "Europe/Stockholm"
    assert spec["source"]["fogis"]["daysAhead"] == 365


def test_prepare_refuses_bad_notify_urls_before_writing_anything(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, NOTIFY_URLS="nosuchscheme://token")
    with pytest.raises(ConfigError, match="NOTIFY_URLS"):
        prepare(settings, datetime.now(ZoneInfo("UTC")))


def test_the_peoples_snapshot_lies_beside_the_webhooks() -> None:
    assert notified_path(Path("/d/previous_matches.json")) == Path(
        "/d/previous_matches.notified.json"
    )
    assert notified_path(Path("/d/state")) == Path("/d/state.notified.json")


@pytest.mark.parametrize(
    ("env", "configured"),
    [
        ({"KUBECONFIG": "/somewhere/config"}, True),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, True),
        ({"KUBECONFIG": " "}, False),
        ({}, False),
    ],
)
def test_kubernetes_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], configured: bool
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config there
    assert kubernetes_configured(env) is configured


def test_a_status_file_is_created_by_prepare(tmp_path: Path) -> None:
    prepare(settings_for(tmp_path), datetime.now(ZoneInfo("UTC")))
    assert FileStatus.open(tmp_path / "watcher-status.json", datetime.now()).version == "0"
