"""The seed's users' commands with a real container engine (Debian's podman) against the image
`make image` builds: the persistent service (RUN_MODE=service) configured as
deploy/compose/docker-compose.yml configures it, its /health, a POST /trigger that runs detection
against the FOGIS stand-in and delivers to a receiver, a restart that keeps the state, the compose
file's healthcheck, and RUN_MODE=oneshot.

No Kubernetes here: the stand-ins run in this process on 127.0.0.1 and the container shares the
host's network (`--network host`; podman's default bridge is a private range tests never use)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.local_cluster import ROOT
from tests.fakes.fogis.records import make_match, sample_matches
from tests.fakes.fogis.server import FakeFogis
from tests.fakes.receiver import WebhookReceiver
from tests.support.commands import run_command
from tests.support.net import http
from tests.support.waiting import wait_for

COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
USERNAME, PASSWORD = "anna.andersson", "s3cret-Pa55word"
# The sandbox's hard limits are below podman's defaults (docs/development.md, LOCAL-NODE.md).
ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096")
# The seed's /health fields.
HEALTH_FIELDS = {"service_name", "status", "run_mode", "cron_schedule", "last_execution",
                 "next_execution", "execution_count", "uptime_seconds", "timestamp"}  # fmt: skip


def _images(*args: str) -> str:
    result = subprocess.run(
        [str(ROOT / "hack" / "images"), *args], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"hack/images {' '.join(args)} failed (see its output above)")
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


@pytest.fixture(scope="module")
def image() -> str:
    if os.geteuid() != 0:
        # A failure, never a skip: end-to-end tests that did not run have not passed.
        pytest.fail("make test-e2e: needs root (podman, buildah)")
    _images("engine")
    return _images("operator")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _compose_service() -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"][
        "match-list-change-detector"
    ]
    return service


class Podman:
    """`podman run` with the compose file's settings for the service, one data volume."""

    def __init__(self, image: str, data: Path, env: dict[str, str]) -> None:
        self.image = image
        self.data = data
        self.env = env
        self.names: list[str] = []
        self.service = _compose_service()

    def args(self, overrides: dict[str, str]) -> list[str]:
        environment = {**self.service["environment"], **self.env, **overrides}
        argv = ["--network", "host", *ULIMITS, "--user", self.service["user"]]
        if self.service["read_only"]:
            argv += ["--read-only", *(f"--tmpfs={path}" for path in self.service["tmpfs"])]
        (volume,) = self.service["volumes"]
        argv += ["-v", f"{self.data}:{volume.split(':', 1)[1]}"]
        for key, value in environment.items():
            argv += ["-e", f"{key}={value}"]
        return argv

    def start(self, **overrides: str) -> str:
        name = f"mlcd-e2e-{secrets.token_hex(4)}"
        self.names.append(name)
        run_command(["podman", "run", "-d", "--name", name, *self.args(overrides), self.image])
        return name

    def once(self, **overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", "run", "--rm", *self.args(overrides), self.image],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def logs(self, name: str) -> str:
        return run_command(["podman", "logs", name], check=False)

    def remove_all(self) -> None:
        for name in self.names:
            subprocess.run(
                ["podman", "rm", "-f", "-t", "5", name], capture_output=True, check=False
            )


@pytest.fixture
def fogis() -> Iterator[FakeFogis]:
    with FakeFogis(users={USERNAME: PASSWORD}, matches=sample_matches()) as fake:
        yield fake


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


def _health(port: int) -> dict[str, Any] | None:
    status, body = http("GET", f"http://127.0.0.1:{port}/health", timeout=5)
    if status != 200:
        return None
    document: dict[str, Any] = json.loads(body)
    return document


def test_the_seeds_commands_with_podman(
    image: str, fogis: FakeFogis, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)  # as the docs say: the service runs as UID 10001
    # A seed user's state: the seed's previous_matches.json (the raw FOGIS list); one match has
    # moved in FOGIS since.
    seed = data / "previous_matches.json"
    seed.write_text(json.dumps(sample_matches()))
    os.chown(seed, 10001, 10001)
    moved = make_match(6143002, on=date.today() + timedelta(days=5), avsparkstid="15:00")
    now = [moved if m["matchid"] == 6143002 else m for m in sample_matches()]
    fogis.set_matches(now)

    port = _free_port()
    podman = Podman(
        image,
        data,
        {
            "FOGIS_USERNAME": USERNAME,
            "FOGIS_PASSWORD": PASSWORD,
            "FOGIS_BASE_URL": fogis.base_url,
            "WEBHOOK_URL": receiver.url,
            "HEALTH_SERVER_PORT": str(port),
            "HEALTH_SERVER_HOST": "127.0.0.1",
            "CRON_SCHEDULE": "0 0 1 1 *",  # no slot during the test: runs come from /trigger
        },
    )
    try:
        name = podman.start()
        health = wait_for(f"/health of {name}", lambda: _health(port), timeout=60, interval=0.5)
        assert health.keys() >= HEALTH_FIELDS, health
        assert (health["run_mode"], health["cron_schedule"]) == ("service", "0 0 1 1 *")

        status, body = http("POST", f"http://127.0.0.1:{port}/trigger", timeout=60)
        answer = json.loads(body)
        assert (status, answer["status"]) == (200, "success"), (answer, podman.logs(name))
        (delivery,) = receiver.wait_for(1)
        changes = delivery.payload["changes"]
        assert [c["matchId"] for c in changes] == ["6143002"], changes
        assert "time_change" in changes[0]["categories"]

        # The compose file's healthcheck, in the container, as compose runs it.
        check = podman.service["healthcheck"]["test"][1:]
        check[-1] = check[-1].replace(":8080/", f":{port}/")
        run_command(["podman", "exec", name, *check])

        run_command(["podman", "restart", "-t", "10", name])
        after = wait_for(f"/health of {name} restarted", lambda: _health(port), timeout=60)
        assert after["execution_count"] == health["execution_count"] + 1, after
        assert after["last_execution"] is not None
        # The state survived: the moved match is not reported again.
        status, body = http("POST", f"http://127.0.0.1:{port}/trigger", timeout=60)
        assert (status, json.loads(body)["status"]) == (200, "success"), podman.logs(name)
        assert len(receiver.requests) == 1
        run_command(["podman", "stop", "-t", "10", name])

        # oneshot on the same volume: one pass, the change document on stdout, exit 0.
        fogis.set_matches(now[1:])  # 6143001 gone
        once = podman.once(RUN_MODE="oneshot")
        assert once.returncode == 0, once.stderr
        document = json.loads(once.stdout)
        assert [c["matchId"] for c in document["changes"]] == ["6143001"], document
    finally:
        podman.remove_all()


def test_the_compose_files_receiver_stand_in(image: str) -> None:
    service = yaml.safe_load(COMPOSE.read_text())["services"]["match-list-processor"]
    python, flag, script = service["entrypoint"]
    port = _free_port()
    bind = '("0.0.0.0", 8000)'  # the compose network's; here loopback instead
    assert bind in script
    script = script.replace(bind, f'("127.0.0.1", {port})')
    name = f"mlcd-e2e-{secrets.token_hex(4)}"
    argv = ["--network", "host", *ULIMITS, "--user", service["user"], "--read-only"]
    run_command(["podman", "run", "-d", "--name", name, *argv, "--entrypoint", python, image,
                 flag, script])  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/process"
        status = wait_for(
            "the receiver stand-in", lambda: http("POST", url, {"changes": []})[0], timeout=30
        )
        assert status == 204
        assert '/process None {"changes": []}' in run_command(["podman", "logs", name])
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "2", name], capture_output=True, check=False)
