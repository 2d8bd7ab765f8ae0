"""The soak's invariants, as pure functions over what was recorded: the lists FOGIS served,
the ledger of deliveries, the runs the operators logged, and every text they exposed.

1. convergence: the receiver's state, rebuilt from the applied deliveries in order (repeated
   ids dropped), equals the last list FOGIS served, inside that list's window (a match that
   slid out of the window is no change, so the receiver may still hold it);
2. nothing invented: every delivered change is a real difference between lists FOGIS served to
   that watcher before the delivery;
3. no slot ran twice: per watcher, the slots of scheduled runs strictly increase over all
   runs of all processes;
4. ids: one id never names two different transitions, and a redelivery of a transition that
   was not accepted carries the same id;
5. no secret value in any log line, Event, status or metric.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from tests.soak.ledger import IN_DOUBT, Delivery
from tests.soak.truth import View, canonical, field_of_payload, view_of_payload


@dataclass(frozen=True)
class ServedState:
    at: float  # wall clock
    views: Mapping[str, View]  # matchId -> view
    start: date
    end: date


@dataclass(frozen=True)
class RunLine:
    at: float  # wall clock of the log line (the run's end)
    process: str
    watcher: str
    slot: str | None  # None for a manual run
    ok: bool


@dataclass
class Findings:
    losses: int = 0  # matches where the receiver's state differs from FOGIS's last list
    invented: int = 0  # delivered changes that FOGIS never served
    double_runs: int = 0  # a slot run again, or a slot older than one already run
    duplicates: int = 0  # applied deliveries whose id was applied before (allowed)
    id_conflicts: int = 0  # one id, two different transitions
    ids_not_reused: int = 0  # a redelivery of a refused transition with a new id
    bad_signatures: int = 0
    leaks: int = 0
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, watcher: str, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.problems[watcher].append(f"{kind}: {text}")

    @property
    def failed(self) -> bool:
        return bool(
            self.losses
            or self.invented
            or self.double_runs
            or self.id_conflicts
            or self.ids_not_reused
            or self.bad_signatures
            or self.leaks
        )


@dataclass
class ReceiverState:
    matches: dict[str, View]
    touched: dict[str, float]  # matchId -> when a delivery last said something about it
    repeats: int  # applied deliveries dropped because their id was applied before


def receiver_state(baseline: Mapping[str, View], deliveries: Iterable[Delivery]) -> ReceiverState:
    """Start from the baseline (the first run reports nothing: the receiver loads the list
    once), apply the applied deliveries in order as upserts/removals, dropping repeated ids."""
    state: dict[str, View] = dict(baseline)
    touched: dict[str, float] = {}
    seen: set[str] = set()
    repeats = 0
    for delivery in deliveries:
        if not delivery.applied or delivery.payload is None:
            continue
        if delivery.delivery_id in seen:
            repeats += 1
            continue
        seen.add(delivery.delivery_id)
        for change in delivery.payload.get("changes") or []:
            key = str(change.get("matchId"))
            touched[key] = delivery.at
            if change.get("type") == "removed":
                state.pop(key, None)
            else:
                state[key] = view_of_payload(change.get("match") or {})
    return ReceiverState(state, touched, repeats)


def _slid_out(view: View, since: float, served: Sequence[ServedState]) -> bool:
    """Whether a list served after `since` was fetched for a window without the match's date:
    it slid out of view then, and its later fate is no change (design notes, section 5)."""
    day = view.get("date")
    return isinstance(day, str) and any(
        state.at > since and not state.start.isoformat() <= day <= state.end.isoformat()
        for state in served
    )


def check_convergence(
    watcher: str,
    baseline: Mapping[str, View],
    deliveries: Sequence[Delivery],
    served: Sequence[ServedState],
    findings: Findings,
) -> None:
    """What FOGIS last served must be what the receiver holds. A match the receiver holds and
    FOGIS no longer lists is fine only when it slid out of the window since the receiver last
    heard of it (shrinking daysBack, or time passing, hides it; widening it again may show
    that it is gone, and no change ever says so)."""
    last = max(served, key=lambda s: s.at)
    receiver = receiver_state(baseline, deliveries)
    findings.duplicates += receiver.repeats
    state = receiver.matches
    for key in sorted(set(state) | set(last.views)):
        have, want = state.get(key), last.views.get(key)
        if (
            want is None
            and have is not None
            and _slid_out(have, receiver.touched.get(key, 0.0), served)
        ):
            continue
        if have != want:
            findings.add(watcher, "losses", f"match {key}: receiver has {have}, FOGIS says {want}")


def _served_values(
    served: Sequence[ServedState], before: float
) -> tuple[dict[str, list[View]], bool]:
    """Per match id, the views FOGIS served before `before`; and whether any list was served."""
    values: dict[str, list[View]] = defaultdict(list)
    for state in served:
        if state.at <= before:
            for key, view in state.views.items():
                values[key].append(view)
    return values, any(state.at <= before for state in served)


def _absent(served: Sequence[ServedState], key: str, before: float) -> bool:
    return any(state.at <= before and key not in state.views for state in served)


def check_invented(
    watcher: str, deliveries: Sequence[Delivery], served: Sequence[ServedState], findings: Findings
) -> None:
    for delivery in deliveries:
        if delivery.payload is None:
            continue
        values, _ = _served_values(served, delivery.at)
        for change in delivery.payload.get("changes") or []:
            key, kind = str(change.get("matchId")), change.get("type")
            view = view_of_payload(change.get("match") or {})
            where = f"delivery #{delivery.seq} {delivery.delivery_id[:8]} {kind} {key}"
            if view not in values.get(key, []):
                findings.add(watcher, "invented", f"{where}: match {view} was never served")
                continue
            if kind in ("new", "removed") and not _absent(served, key, delivery.at):
                findings.add(watcher, "invented", f"{where}: FOGIS never served a list without it")
                continue
            if kind != "changed":
                continue
            fields: Mapping[str, Any] = change.get("fields") or {}
            real = False
            for name, pair in fields.items():
                old, new = (field_of_payload(name, pair.get(side)) for side in ("old", "new"))
                seen = [v.get(name) for v in values.get(key, [])]
                if old not in seen or new not in seen:
                    findings.add(
                        watcher, "invented", f"{where}: {name} {old!r}->{new!r} never served"
                    )
                real = real or old != new
            if not real:
                findings.add(watcher, "invented", f"{where}: no compared field differs {fields}")


def check_slots(
    watcher: str,
    runs: Sequence[RunLine],
    claims: Mapping[str, float],
    started: Mapping[str, float],
    findings: Findings,
) -> None:
    """Slots strictly increase over the logged runs of all processes. A run killed before its
    log line leaves only its claim (status.lastScheduleTime, seen on a watch): a process that
    started after a slot was claimed and still ran it is a second run of that slot."""
    last: str | None = None
    seen: dict[str, RunLine] = {}
    for run in sorted(runs, key=lambda r: r.at):
        if run.slot is None:
            continue
        # RFC 3339 UTC timestamps to the second compare correctly as text.
        if run.slot in seen:
            first = seen[run.slot]
            findings.add(
                watcher,
                "double_runs",
                f"slot {run.slot} ran in {first.process} and again in {run.process}",
            )
        elif last is not None and run.slot < last:
            findings.add(
                watcher, "double_runs", f"slot {run.slot} ({run.process}) ran after slot {last}"
            )
        claimed = claims.get(run.slot)
        if claimed is not None and started.get(run.process, 0.0) > claimed:
            findings.add(
                watcher,
                "double_runs",
                f"slot {run.slot} ran in {run.process}, which started after the slot was claimed",
            )
        seen.setdefault(run.slot, run)
        last = max(last or run.slot, run.slot)


def _served_changed(served: Sequence[ServedState], since: float, until: float) -> bool:
    """Whether FOGIS served anything between `since` and `until` that differs (matches or
    window: a time zone edit or midnight moves the window too) from what it served before."""
    before = [s for s in served if s.at <= since]
    if not before:
        return True
    last = max(before, key=lambda s: s.at)
    return any(
        (s.views, s.start, s.end) != (last.views, last.start, last.end)
        for s in served
        if since < s.at <= until
    )


def check_ids(
    watcher: str,
    deliveries: Sequence[Delivery],
    runs: Sequence[RunLine],
    window_edits: Sequence[float],
    findings: Findings,
    served: Sequence[ServedState] = (),
) -> None:
    bodies: dict[str, str] = {}
    last_seen: dict[str, int] = {}  # id -> index of its latest delivery
    previous: Delivery | None = None
    for index, delivery in enumerate(deliveries):
        if delivery.payload is None:
            continue
        changes = canonical(delivery.payload.get("changes"))
        known = bodies.setdefault(delivery.delivery_id, changes)
        if known != changes:
            findings.add(
                watcher,
                "id_conflicts",
                f"delivery #{delivery.seq}: id {delivery.delivery_id} named other changes before",
            )
        elif delivery.delivery_id in last_seen:
            # The id comes back after another transition that may have been applied (in
            # doubt): a receiver that took both drops this one as a repeat, yet it is news.
            between = deliveries[last_seen[delivery.delivery_id] + 1 : index]
            doubtful = next(
                (
                    d
                    for d in between
                    if d.delivery_id != delivery.delivery_id and d.answer in IN_DOUBT
                ),
                None,
            )
            if doubtful is not None:
                findings.add(
                    watcher,
                    "id_conflicts",
                    f"delivery #{delivery.seq}: id {delivery.delivery_id} again after "
                    f"in-doubt #{doubtful.seq} ({doubtful.delivery_id}) moved on from it",
                )
        last_seen[delivery.delivery_id] = index
        if (
            previous is not None
            and not previous.accepted
            and canonical(previous.payload.get("changes")) == changes
            and previous.delivery_id != delivery.delivery_id
            # A changed window can change the stored list without any reported change, and so
            # can a successful run in between (it settles an in-doubt delivery, or the list
            # went back and forth): then the snapshot advanced and it is a new transition.
            and not any(previous.at <= t <= delivery.at for t in window_edits)
            and not (served and _served_changed(served, previous.at, delivery.at))
            and not any(r.ok and previous.at < r.at < delivery.at for r in runs)
        ):
            findings.add(
                watcher,
                "ids_not_reused",
                f"delivery #{delivery.seq} repeats refused #{previous.seq} under a new id",
            )
        previous = delivery


def check_all(
    *,
    baselines: Mapping[str, Mapping[str, View]],
    served: Mapping[str, Sequence[ServedState]],
    deliveries: Sequence[Delivery],
    runs: Sequence[RunLine],
    window_edits: Mapping[str, Sequence[float]],
    texts: Iterable[tuple[str, str]],
    secrets: Iterable[str],
    claims: Mapping[str, Mapping[str, float]] | None = None,
    process_started: Mapping[str, float] | None = None,
) -> Findings:
    """Every invariant; `claims` is per watcher when each slot was first seen claimed, and
    `process_started` when each operator process (`<replica>-<n>`) was started."""
    findings = Findings()
    runs_by: dict[str, list[RunLine]] = defaultdict(list)
    for run in runs:
        runs_by[run.watcher].append(run)
    by_watcher: dict[str, list[Delivery]] = defaultdict(list)
    owners: dict[str, str] = {}
    for delivery in deliveries:
        by_watcher[delivery.watcher].append(delivery)
        if not delivery.signature_ok:
            findings.add(delivery.watcher, "bad_signatures", f"delivery #{delivery.seq}")
        owner = owners.setdefault(delivery.delivery_id, delivery.watcher)
        if owner != delivery.watcher:
            findings.add(
                delivery.watcher, "id_conflicts", f"id {delivery.delivery_id} also used by {owner}"
            )
    for watcher, states in served.items():
        mine = sorted(by_watcher.get(watcher, []), key=lambda d: d.seq)
        if states:
            check_convergence(watcher, baselines.get(watcher, {}), mine, states, findings)
        check_invented(watcher, mine, states, findings)
        check_ids(
            watcher,
            mine,
            runs_by.get(watcher, []),
            window_edits.get(watcher, ()),
            findings,
            states,
        )
    for watcher, lines in runs_by.items():
        check_slots(
            watcher, lines, (claims or {}).get(watcher, {}), process_started or {}, findings
        )
    values = [s for s in secrets if s]
    for source, text in texts:
        for value in values:
            if value in text:
                findings.add("-", "leaks", f"a secret value in {source}")
    return findings


def count(items: Iterable[str]) -> Counter[str]:
    return Counter(items)
