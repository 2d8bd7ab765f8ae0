"""The soak's invariant checker can fail: hand-made ledgers with a lost change, an invented
change, a slot run twice, one id for two transitions, and a leaked secret are each caught,
and a clean story (with a redelivered duplicate) passes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from tests.soak.invariants import Findings, RunLine, ServedState, check_all
from tests.soak.ledger import Delivery
from tests.soak.truth import Match, View, view_of_record

START, END = date(2026, 11, 23), date(2027, 1, 29)


def match(kickoff: str = "19:00", **changes: Any) -> Match:
    fields: dict[str, Any] = {
        "id": 1001,
        "day": date(2026, 12, 5),
        "kickoff": kickoff,
        "venue": 301,
        "home": 7001,
        "away": 7101,
        "competition": 90001,
        "referees": ((20001, "Dom"), (20002, "AD1")),
    }
    return Match(**{**fields, **changes})


def view(m: Match) -> View:
    return view_of_record(m.record())


def payload_match(m: Match) -> dict[str, Any]:
    """The normalised match a change report carries."""
    v = view(m)
    return {
        **v,
        **{k: {"id": v[k], "name": "x"} for k in ("venue", "homeTeam", "awayTeam", "competition")},
        "referees": [{"id": rid, "name": "x", "role": role} for rid, role in v["referees"]],
    }


def changed(old: Match, new: Match, seq: int, answer: str = "ok", **kw: Any) -> Delivery:
    change = {
        "type": "changed",
        "matchId": str(new.id),
        "categories": ["time_change"],
        "fields": {"time": {"old": old.kickoff, "new": new.kickoff}},
        "match": payload_match(new),
    }
    return Delivery(
        seq=seq,
        at=kw.get("at", 10.0 + seq),
        watcher="w000",
        delivery_id=kw.get("delivery_id", f"id-{seq}"),
        payload={"changes": [change]},
        signature_ok=True,
        answer=answer,
        applied=answer == "ok" or kw.get("applied", False),
    )


A, B = match("19:00"), match("17:00")
SERVED = [
    ServedState(1.0, {"1001": view(A)}, START, END),
    ServedState(5.0, {"1001": view(B)}, START, END),
]


def check(
    deliveries: list[Delivery],
    runs: Sequence[RunLine] = (),
    texts: Sequence[tuple[str, str]] = (),
    served: Sequence[ServedState] = SERVED,
) -> Findings:
    return check_all(
        baselines={"w000": {"1001": view(A)}},
        served={"w000": list(served)},
        deliveries=deliveries,
        runs=runs,
        window_edits={},
        texts=texts,
        secrets=["pw-secret"],
    )


def test_a_clean_story_passes_and_counts_the_duplicate() -> None:
    first = changed(A, B, 0, delivery_id="same")
    again = changed(A, B, 1, delivery_id="same")  # redelivered after a crash: same id
    runs = [RunLine(1.0, "a-1", "w000", "2026-11-30T20:00:00Z", True)]
    runs.append(RunLine(6.0, "b-1", "w000", "2026-11-30T20:00:15Z", True))
    findings = check([first, again], runs)
    assert not findings.failed, findings.problems
    assert findings.duplicates == 1


def test_a_lost_change_is_caught() -> None:
    refused = changed(A, B, 0, answer="5xx")  # never redelivered
    findings = check([refused])
    assert findings.losses == 1
    assert findings.failed


def test_an_in_doubt_delivery_the_receiver_applied_counts_as_applied() -> None:
    in_doubt = changed(A, B, 0, answer="timeout", applied=True)
    assert not check([in_doubt]).failed


def test_an_invented_change_is_caught() -> None:
    never = match("21:00")
    findings = check([changed(A, B, 0), changed(B, never, 1)])
    assert findings.invented >= 1
    assert findings.losses == 1  # the receiver now holds what FOGIS never said


def test_a_change_that_is_no_change_is_caught() -> None:
    reordered = changed(A, A, 0)  # FOGIS served A, and "A -> A" is no difference
    assert check([reordered, changed(A, B, 1)]).invented == 1


def test_a_slot_run_twice_is_caught() -> None:
    slot = "2026-11-30T20:00:15Z"
    runs = [RunLine(1.0, "a-1", "w000", slot, True), RunLine(2.0, "b-1", "w000", slot, True)]
    findings = check([changed(A, B, 0)], runs)
    assert findings.double_runs == 1


def test_a_slot_older_than_one_already_run_is_caught() -> None:
    runs = [
        RunLine(1.0, "a-1", "w000", "2026-11-30T20:00:30Z", True),
        RunLine(2.0, "b-1", "w000", "2026-11-30T20:00:15Z", True),
    ]
    assert check([changed(A, B, 0)], runs).double_runs == 1


def test_one_id_for_two_transitions_is_caught() -> None:
    C = match("15:00")
    findings = check([changed(A, B, 0, delivery_id="x"), changed(B, C, 1, delivery_id="x")])
    assert findings.id_conflicts == 1


def test_a_redelivery_under_a_new_id_is_caught() -> None:
    findings = check([changed(A, B, 0, answer="5xx"), changed(A, B, 1)])
    assert findings.ids_not_reused == 1


def test_a_secret_in_a_log_line_is_caught() -> None:
    findings = check([changed(A, B, 0)], texts=[("operator.log", "login with pw-secret")])
    assert findings.leaks == 1


def test_a_match_that_slid_out_of_the_window_may_stay_with_the_receiver() -> None:
    narrow = date(2026, 12, 6)  # a later fetch's window starts after the match's day
    served = [*SERVED, ServedState(6.0, {}, narrow, END), ServedState(7.0, {}, START, END)]
    findings = check([changed(A, B, 0, at=5.5)], served=served)
    assert not findings.failed, findings.problems


def test_a_match_gone_inside_the_window_must_be_removed_at_the_receiver() -> None:
    served = [*SERVED, ServedState(7.0, {}, START, END)]
    findings = check([changed(A, B, 0, at=5.5)], served=served)
    assert findings.losses == 1


def test_an_id_back_after_an_in_doubt_transition_is_caught() -> None:
    # A->B and B->A both in doubt (the receiver took both), then B again under B's first id:
    # the receiver drops it as a repeat and stays at A while FOGIS says B.
    deliveries = [
        changed(A, B, 0, answer="timeout", applied=True, delivery_id="ab"),
        changed(B, A, 1, answer="timeout", applied=True, delivery_id="ba"),
        changed(A, B, 2, delivery_id="ab"),
    ]
    findings = check(deliveries)
    assert findings.id_conflicts == 1
    assert findings.losses == 1


def test_a_refused_transition_in_between_does_not_make_a_repeat_suspicious() -> None:
    deliveries = [
        changed(A, B, 0, answer="timeout", applied=True, delivery_id="ab"),
        changed(B, A, 1, answer="5xx", delivery_id="ba"),  # refused: not applied
        changed(A, B, 2, delivery_id="ab"),
    ]
    findings = check(deliveries)
    assert not findings.failed, findings.problems


def test_a_claimed_slot_run_again_by_a_later_process_is_caught() -> None:
    # a-1 claimed the slot at t=2 and died before logging; b-2, started at t=3, ran it again.
    slot = "2026-11-30T20:00:15Z"
    findings = check_all(
        baselines={"w000": {"1001": view(A)}},
        served={"w000": SERVED},
        deliveries=[changed(A, B, 0)],
        runs=[RunLine(4.0, "b-2", "w000", slot, True)],
        window_edits={},
        texts=[],
        secrets=[],
        claims={"w000": {slot: 2.0}},
        process_started={"a-1": 0.0, "b-2": 3.0},
    )
    assert findings.double_runs == 1
