"""People's messages (issue 22) on a real API server: each Apprise URL its own cursor, quiet
hours with one digest at their end, urgent changes through, categories, failure streaks.

Every notification target is an Apprise `json://` URL pointing at a receiver of the test's own
on 127.0.0.1 (tests/fakes/receiver.py), which records the title and message it was posted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hack.local_cluster import free_port
from tests.fakes.fogis.records import dotnet_date, make_match, sample_matches
from tests.fakes.fogis.server import FakeFogis
from tests.fakes.receiver import Received, WebhookReceiver
from tests.integration.conftest import PASSWORD, USERNAME
from tests.integration.harness import ManualRuns, wait_event_with
from tests.support.cluster import Cluster
from tests.support.operator_process import Operator, running
from tests.support.waiting import wait_for
from tests.support.watchers import fogis_spec, ready


def _json(receiver: WebhookReceiver) -> str:
    return receiver.url.replace("http://", "json://", 1)


def _texts(receiver: WebhookReceiver) -> list[tuple[str, str]]:
    return [_text(request) for request in receiver.requests]


def _text(request: Received) -> tuple[str, str]:
    return request.payload["title"], request.payload["message"]


@pytest.fixture
def people() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def _watcher(
    cluster: Cluster,
    namespace: str,
    name: str,
    fogis: FakeFogis,
    urls: list[str],
    language: str = "sv",
    **notify: Any,
) -> ManualRuns:
    cluster.create_secret(namespace, f"{name}-people", {"urls": "\n".join(urls)})
    spec = fogis_spec(
        fogis.base_url,
        "fogis",
        timeZone="UTC",
        language=language,
        notify={"secretRef": {"name": f"{name}-people"}, **notify},
    )
    cluster.create_watcher(namespace, name, spec)
    return ManualRuns(cluster, namespace, name)


def _moved(matches: list[dict[str, Any]], index: int, kickoff: str) -> None:
    match = matches[index]
    match["avsparkstid"] = kickoff
    match["tid"] = dotnet_date(datetime.fromisoformat(match["speldatum"]).date(), kickoff)


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def test_quiet_hours_hold_pass_urgent_changes_and_send_one_digest_at_their_end(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    credentials: str,
    people: WebhookReceiver,
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    end = (now + timedelta(minutes=2)).replace(second=0, microsecond=0)
    quiet = {"start": _clock(now - timedelta(minutes=1)), "end": _clock(end)}
    with running(Operator(cluster.kubeconfig, [namespace], tmp_path / "op.log")) as op:
        run = _watcher(
            cluster,
            namespace,
            "night",
            fogis,
            [_json(people)],
            quietHours=quiet,
            urgentWithinHours=72,
        )
        run()  # the baseline: nobody is told anything
        matches = sample_matches()
        _moved(matches, 0, "20:45")  # 6143001, in two days: urgent
        matches.append(make_match(7001, on=(now + timedelta(days=20)).date()))  # not urgent
        fogis.set_matches(matches)
        status = run()
        assert status["notify"]["heldChanges"] == 1
        assert status["notify"]["heldUntil"] == end.strftime("%Y-%m-%dT%H:%M:%SZ")
        ((title, message),) = _texts(people)
        assert title.startswith("Brådskande")
        assert "flyttad 18:30 → 20:45" in message
        assert "ny tillsättning" not in message

        # A restart while the changes are held sends nothing twice (nor early).
        op.stop()
        op.start()
        run()
        assert len(people.requests) == 1

        # One digest, within a minute of the window's end, with what was held.
        wait_for("the digest", lambda: len(people.requests) == 2, timeout=200)
        sent = datetime.now(UTC)
        assert sent - end < timedelta(seconds=60)
        title, message = _text(people.requests[1])
        assert title == "Matchlistan i sammandrag: 1 ändring"
        assert "ny tillsättning" in message
        assert "flyttad" not in message
        wait_event_with(cluster, namespace, "night", "DigestSent", "1 changes told")
        status = cluster.status(namespace, "night")
        assert status["notify"]["heldChanges"] == 0
        assert status["notify"].get("heldUntil") is None
        run()
        assert len(people.requests) == 2  # nothing twice


def test_a_category_nobody_asked_for_never_arrives(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    credentials: str,
    people: WebhookReceiver,
    operator: Operator,
) -> None:
    run = _watcher(cluster, namespace, "only-off", fogis, [_json(people)], categories=["cancelled"])
    run()
    matches = sample_matches()
    _moved(matches, 0, "20:45")  # a time change: not asked for
    matches[1]["installd"] = True  # cancelled: asked for
    fogis.set_matches(matches)
    run()
    ((_, message),) = _texts(people)
    assert message.count("\n") == 0
    assert "inställd" in message
    assert "flyttad" not in message
    run()
    matches[1]["installd"] = False  # "cancelled" brings "uncancelled"
    fogis.set_matches(matches)
    run()
    assert len(people.requests) == 2
    assert "inte längre inställd" in _text(people.requests[1])[1]
    assert "flyttad" not in _text(people.requests[1])[1]  # the time change never surfaces


def test_failed_logins_are_told_once_and_the_fix_once_more(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    credentials: str,
    people: WebhookReceiver,
    operator: Operator,
) -> None:
    run = _watcher(cluster, namespace, "locked", fogis, [_json(people)], failureAfter=3)
    run()
    cluster.create_secret(namespace, "fogis", {"username": USERNAME, "password": "wrong"})
    for attempt in range(1, 5):
        status = run()
        assert ready(status)["reason"] == "LoginFailed"  # type: ignore[index]
        assert status["notify"]["failures"] == attempt
        assert len(people.requests) == (0 if attempt < 3 else 1)
    _, message = _text(people.requests[0])
    assert "FOGIS avvisade inloggningen – kontrollera lösenordet" in message  # noqa: RUF001
    told = cluster.status(namespace, "locked")["notify"]["failureNotified"]
    assert told["reason"] == "LoginFailed"
    cluster.create_secret(namespace, "fogis", {"username": USERNAME, "password": PASSWORD})
    status = run()
    assert ready(status)["reason"] == "Succeeded"  # type: ignore[index]
    assert len(people.requests) == 2
    assert _text(people.requests[1])[0] == "Bevakningen fungerar igen"
    assert status["notify"].get("failureNotified") is None
    run()
    assert len(people.requests) == 2


def test_a_revert_reaches_every_url_also_the_one_that_failed(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    credentials: str,
    people: WebhookReceiver,
    operator: Operator,
) -> None:
    """Issue 22, item 1: with two URLs where one answered 500 once, a cancellation reached the
    other, the run restored the old "notified" snapshot, and when FOGIS reverted nobody was told
    the match was on again."""
    with WebhookReceiver() as flaky:
        # In English: this test also runs against releases before spec.language.
        urls = [_json(flaky), _json(people)]
        run = _watcher(cluster, namespace, "revert", fogis, urls, language="en")
        run()
        matches = sample_matches()
        matches[1]["installd"] = True
        fogis.set_matches(matches)
        flaky.enqueue(500)
        status = run()
        assert ready(status)["reason"] == "NotifyFailing"  # type: ignore[index]
        assert [m for _, m in _texts(people)] == [_texts(flaky)[0][1]]  # the same text
        fogis.set_matches(sample_matches())  # FOGIS reverts
        status = run()
        assert ready(status)["reason"] == "Succeeded"  # type: ignore[index]
        for receiver in (people, flaky):
            assert "no longer cancelled" in _texts(receiver)[-1][1]
        run()
        assert len(people.requests) == 2


def test_a_dead_url_never_repeats_messages_to_a_working_one(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    credentials: str,
    people: WebhookReceiver,
    operator: Operator,
) -> None:
    """Issue 22, item 3: one dead URL made every run re-send the whole pending set to the
    working ones."""
    dead = f"json://127.0.0.1:{free_port()}/nobody"
    run = _watcher(cluster, namespace, "spam", fogis, [dead, _json(people)])
    run()
    matches = sample_matches()
    for change in ("move", None, "cancel", None):  # runs with a change, and without
        if change == "move":
            _moved(matches, 0, "19:01")
        elif change == "cancel":
            matches[1]["installd"] = True
        fogis.set_matches(matches)
        status = run()
        assert ready(status)["reason"] == "NotifyFailing"  # type: ignore[index]
    lines = [message for _, message in _texts(people)]
    assert len(lines) == 2  # each change once; before: 4 messages, the last two with both
    assert "flyttad 18:30 → 19:01" in lines[0]
    assert "\n" not in lines[1]
    assert "inställd" in lines[1]


def test_a_notified_config_map_of_an_earlier_release_is_every_urls_cursor(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    credentials: str,
    people: WebhookReceiver,
    operator: Operator,
) -> None:
    """An upgrade from a release with one "notified" snapshot for all URLs: nothing is lost or
    repeated. (The same ConfigMap shape is what a downgraded operator leaves behind.)"""
    run = _watcher(cluster, namespace, "upgraded", fogis, [_json(people)])
    run()
    name = "upgraded-matchlist-notified"
    stored = cluster.core.read_namespaced_config_map(name, namespace)
    assert set(stored.binary_data) == {"people.json.gz", "snapshot.json.gz"}
    # As an earlier release wrote it: the one snapshot only (a replace, as it writes).
    stored.binary_data = {"snapshot.json.gz": stored.binary_data["snapshot.json.gz"]}
    cluster.core.replace_namespaced_config_map(name, namespace, stored)
    matches = sample_matches()
    _moved(matches, 0, "20:45")
    fogis.set_matches(matches)
    status = run()
    assert ready(status)["reason"] == "Succeeded"  # type: ignore[index]
    ((_, message),) = _texts(people)
    assert "flyttad 18:30 → 20:45" in message
    run()
    assert len(people.requests) == 1
    stored = cluster.core.read_namespaced_config_map(name, namespace)
    assert set(stored.binary_data) == {"people.json.gz", "snapshot.json.gz"}
