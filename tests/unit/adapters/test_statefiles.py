"""The service's state files: the status file's versions and compare-and-swap, its refusals, the
atomic writes, and the environment's Secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.snapshots import write_atomic
from controller.adapters.statefiles import EnvBacking, FileStatus, merge_patch
from controller.core.errors import DetectorError, SecretNotFound, StatusConflict
from controller.core.model import WatcherRef

REF = WatcherRef("", "service", "uid-1")
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({}, {"a": 1}, {"a": 1}),
        ({"a": 1, "b": 2}, {"a": None}, {"b": 2}),
        ({"a": {"x": 1, "y": 2}}, {"a": {"y": None, "z": 3}}, {"a": {"x": 1, "z": 3}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),  # lists are replaced, as the API server does
        ({"a": 1}, {"a": {"b": None, "c": 1}}, {"a": {"c": 1}}),
        ({"a": {"b": 1}}, {"a": 2}, {"a": 2}),
        ({"a": 1}, {"missing": None}, {"a": 1}),
    ],
)
def test_merge_patch(target: dict[str, Any], patch: dict[str, Any], expected: Any) -> None:
    before = json.dumps(target)
    assert merge_patch(target, patch) == expected
    assert json.dumps(target) == before  # the target is not changed


async def test_the_status_file_keeps_status_version_and_creation(tmp_path: Path) -> None:
    path = tmp_path / "watcher-status.json"
    state = FileStatus.open(path, NOW)
    assert path.exists()  # written at once: the directory is writable
    assert (state.status, state.version, state.created) == ({}, "0", NOW)
    status, version = await state.patch_status(REF, {"executionCount": 1, "webhook": {"a": 1}})
    assert (status, version) == ({"executionCount": 1, "webhook": {"a": 1}}, "1")
    await state.patch_status(REF, {"webhook": {"a": None, "b": 2}}, "1")

    again = FileStatus.open(path, datetime.now(UTC))
    assert again.status == {"executionCount": 1, "webhook": {"b": 2}}
    assert (again.version, again.created, again.salt) == ("2", NOW, state.salt)
    assert await again.read_status(REF) == (again.status, "2")
    assert names(tmp_path) == [path.name]  # no temp file left


async def test_a_claim_on_an_old_version_is_refused(tmp_path: Path) -> None:
    state = FileStatus.open(tmp_path / "s.json", NOW)
    await state.patch_status(REF, {"lastScheduleTime": "a"}, "0")
    with pytest.raises(StatusConflict):
        await state.patch_status(REF, {"lastScheduleTime": "b"}, "0")
    assert state.status == {"lastScheduleTime": "a"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"format": 2, "status": {}, "resourceVersion": 1, "created": "2026-05-01T12:00:00Z"}',
        '{"format": 1, "status": [], "resourceVersion": 1, "created": "2026-05-01T12:00:00Z"}',
        '{"format": 1, "status": {}, "resourceVersion": "1", "created": "2026-05-01T12:00:00Z"}',
        '{"format": 1, "status": {}, "resourceVersion": 1, "created": "yesterday", "salt": "s"}',
        '{"format": 1, "status": {}, "resourceVersion": 1, "created": "2026-05-01T12:00:00Z"}',
        "[" * 100_000,
    ],
)
def test_a_status_file_that_is_not_ours_is_refused_and_left_alone(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "watcher-status.json"
    path.write_text(text)
    with pytest.raises(DetectorError) as caught:
        FileStatus.open(path, NOW)
    assert f"the status file {path} is unreadable" in caught.value.message
    assert "it was left as it is" in caught.value.message
    assert path.read_text() == text


async def test_a_failed_write_is_remembered_until_one_succeeds(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    state = FileStatus.open(directory / "s.json", NOW)
    (directory / "s.json").unlink()
    directory.rmdir()
    with pytest.raises(DetectorError, match="cannot write"):
        await state.patch_status(REF, {"a": 1})
    assert state.write_error is not None
    assert (state.status, state.version) == ({}, "0")  # nothing is kept of a failed write
    directory.mkdir()
    await state.patch_status(REF, {"a": 1})
    assert state.write_error is None


def test_write_atomic_replaces_and_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    write_atomic(path, "one")
    write_atomic(path, "two")
    assert path.read_text() == "two"
    assert names(tmp_path) == ["f.json"]
    with pytest.raises(OSError):  # noqa: PT011 - whichever errno the platform gives
        write_atomic(tmp_path / "missing" / "f.json", "x")


async def test_env_secrets_carry_a_version_keyed_by_the_salt(tmp_path: Path) -> None:
    files = {"snapshot": tmp_path / "p.json", "notified": tmp_path / "p.notified.json"}
    login = {"username": "anna", "password": "pw-1"}
    backing = EnvBacking({"FOGIS": login}, files, "salt-1")
    secret = await backing.read_secret("", "FOGIS", purpose="FOGIS credentials")
    assert secret.values == login
    same = await EnvBacking({"FOGIS": dict(login)}, files, "salt-1").read_secret(
        "", "FOGIS", purpose="x"
    )
    assert same.version == secret.version
    for other in (
        EnvBacking({"FOGIS": {**login, "password": "pw-2"}}, files, "salt-1"),
        EnvBacking({"FOGIS": login}, files, "salt-2"),
    ):
        assert (await other.read_secret("", "FOGIS", purpose="x")).version != secret.version
    assert "pw-1" not in secret.version
    with pytest.raises(SecretNotFound, match="webhook: WEBHOOK_\\* is not set"):
        await backing.read_secret("", "WEBHOOK_*", purpose="webhook")
    assert backing.snapshots(REF, "notified").where == f"file {files['notified']}"
