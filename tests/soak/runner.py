"""The soak: N MatchWatchers on two operator replicas (leader elected on a Lease), lists changing
under them, faults at random times; then calm, a clean run for every watcher, and the invariants.

The seed decides every random choice of this process (lists, edits, triggers, faults and when,
the receiver's answers); the interleaving with the operator is the machine's, so a seed replays
the same story, not the same microseconds.
"""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from tests.soak.claims import ClaimWatch
from tests.soak.faults import FAULT_KINDS, MAX_ATTEMPTS, Faults, Replica
from tests.soak.invariants import Findings, RunLine, ServedState, check_all
from tests.soak.ledger import Ledger
from tests.soak.report import Timeline, explain, mib, parse_runs, print_rows, watcher_timeline
from tests.soak.truth import Truth, view_of_record
from tests.soak.world import (
    GROUP,
    PLURAL,
    ROOT,
    VERSION,
    Cluster,
    FakeFogis,
    LeaseStall,
    Served,
    local_cluster,
)

T = TypeVar("T")
NAMESPACE = "soak"
# Seconds-granularity schedules (6th field = seconds, the MLCD_ALLOW_SECONDS_SCHEDULES hook).
SCHEDULES = (
    "* * * * * */15",
    "* * * * * 5,25,45",
    "* * * * * */20",
    "* * * * * 8,38",
    "*/2 * * * * 12",
    "* * * * * 3,13,33,53",
)
ZONES = ("UTC", "Europe/Stockholm", "Asia/Kathmandu", "America/St_Johns", "Pacific/Chatham")
# Operator RSS at the end may exceed its value after warm-up by this much (and no more).
RSS_BOUND_MIB, RSS_BOUND_RATIO = 32.0, 0.25
RSS_WARM_SECONDS = 20.0


@dataclass
class Options:
    minutes: float
    seed: int
    watchers: int
    out: Path
    faults_per_minute: float = 6.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS


def retrying(what: str, call: Callable[[], T], timeout: float = 90.0) -> T:
    """An API call that outlives an API server restart (the soak causes them)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except (ApiException, HTTPError, OSError) as exc:
            status = getattr(exc, "status", None)
            if (
                status is not None and status < 500 and status != 429
            ) or time.monotonic() > deadline:
                raise RuntimeError(f"{what}: {exc}") from exc
            time.sleep(0.5)


class Soak:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.rng = random.Random(options.seed)
        self.timeline = Timeline()
        # A control plane of its own, not the test suite's (the soak kills its API server), one
        # per output directory so soaks with different seeds can run side by side.
        self.state_dir = options.out / "cluster"
        self.names = [f"w{i:03d}" for i in range(options.watchers)]
        self.users = {name: f"soak.{name}" for name in self.names}
        self.by_user = {user: name for name, user in self.users.items()}
        # Secret values, seeded: reproducible, and scanned for in everything the operator shows.
        self.passwords = {n: f"pw-{self.rng.getrandbits(64):016x}" for n in self.names}
        self.hmac_keys = {n: f"hk-{self.rng.getrandbits(64):016x}" for n in self.names}
        self.served: dict[str, list[ServedState]] = defaultdict(list)
        self.served_lock = threading.Lock()
        self.window_edits: dict[str, list[float]] = defaultdict(list)
        self.spec: dict[str, dict[str, Any]] = {}
        self.actions: Counter[str] = Counter()
        self.stop_world = threading.Event()
        # Truth generators are not thread-safe, and a fault scenario owns its watcher for a
        # while (the world thread leaves it alone).
        self.truth_lock = threading.Lock()
        self.step_rng = random.Random(f"{options.seed}-steps")
        self.stop_sampling = threading.Event()
        self.rss_samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.rss_age = 0.0

    # --- the recorded truth --------------------------------------------------------------------

    def _on_served(self, served: Served) -> None:
        watcher = self.by_user.get(served.user)
        if watcher is None:
            return
        views = {str(m["matchid"]): view_of_record(m) for m in served.matches}
        with self.served_lock:
            self.served[watcher].append(ServedState(time.time(), views, served.start, served.end))

    # --- setup ---------------------------------------------------------------------------------

    def run(self) -> int:
        self.o.out.mkdir(parents=True, exist_ok=True)
        info = local_cluster.up(self.state_dir)
        try:
            return self._run(info.kubeconfig)
        finally:
            local_cluster.down(self.state_dir, quiet=True)

    def _run(self, kubeconfig: str) -> int:
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        api = client.ApiClient(configuration)
        self.cluster = Cluster(api, kubeconfig)
        self.cluster.kubectl("apply", "-f", str(ROOT / "deploy" / "crds"))
        self.cluster.kubectl(
            "wait", "--for=condition=Established", "crd/matchwatchers.matchlist.io", "--timeout=30s"
        )
        with suppress(ApiException):
            self.cluster.core.create_namespace({"metadata": {"name": NAMESPACE}})
        today = datetime.now(UTC).date()
        with (
            FakeFogis(
                users={self.users[n]: self.passwords[n] for n in self.names},
                timeout_delay=7.0,
                slow_delay=1.5,
                on_served=self._on_served,
            ) as fogis,
            Ledger(self.hmac_keys, self.o.seed, timeout_hold=3.0) as ledger,
            LeaseStall() as lease_stall,
        ):
            if "lease_hang" in self.o.fault_kinds:
                lease_stall.register(self.cluster.api, NAMESPACE)
            self.fogis, self.ledger = fogis, ledger
            self.truths = {
                name: Truth(
                    random.Random(f"{self.o.seed}-{name}"),
                    index,
                    today,
                    self._publisher(name),
                )
                for index, name in enumerate(self.names)
            }
            self._create_watchers()
            replicas = [
                Replica(
                    name,
                    kubeconfig,
                    NAMESPACE,
                    self.o.out,
                    {"MLCD_LEASE_NAME": "soak", "MLCD_LEASE_NAMESPACE": NAMESPACE},
                )
                for name in ("a", "b")
            ]
            self.faults = Faults(
                rng=random.Random(f"{self.o.seed}-faults"),
                replicas=replicas,
                fogis=fogis,
                ledger=ledger,
                state_dir=self.state_dir,
                log=self.timeline,
                watchers=self.names,
                step=self._step,
                lease_stall=lease_stall,
                cluster=self.cluster,
                extra_spec={
                    "schedule": "@yearly",
                    "source": {
                        "fogis": {
                            "baseUrl": fogis.base_url,
                            "credentialsSecretRef": {"name": f"{self.names[0]}-fogis"},
                        }
                    },
                },
            )
            try:
                return self._soak(replicas)
            finally:
                for replica in replicas:
                    replica.stop()

    def _publisher(self, name: str) -> Callable[[Sequence[Mapping[str, Any]]], None]:
        def publish(records: Sequence[Mapping[str, Any]]) -> None:
            self.fogis.set_matches(records, user=self.users[name])

        return publish

    def _create_watchers(self) -> None:
        core = self.cluster.core
        for name in self.names:
            core.create_namespaced_secret(
                NAMESPACE,
                {
                    "metadata": {"name": f"{name}-fogis"},
                    "stringData": {"username": self.users[name], "password": self.passwords[name]},
                },
            )
            core.create_namespaced_secret(
                NAMESPACE,
                {
                    "metadata": {"name": f"{name}-hook"},
                    "stringData": {"hmacKey": self.hmac_keys[name]},
                },
            )
            spec: dict[str, Any] = {
                "schedule": self.rng.choice(SCHEDULES),
                "timeZone": self.rng.choice(ZONES),
                "source": {
                    "fogis": {
                        "baseUrl": self.fogis.base_url,
                        "credentialsSecretRef": {"name": f"{name}-fogis"},
                        "daysBack": 7,
                        "daysAhead": 60,
                    }
                },
                "webhook": {
                    "url": self.ledger.url(name),
                    "secretRef": {"name": f"{name}-hook"},
                    "timeoutSeconds": 2,
                    "maxAttempts": MAX_ATTEMPTS,
                },
            }
            if self.rng.random() < 0.3:
                spec["startingDeadlineSeconds"] = 30
            self.spec[name] = spec
            self.cluster.create_watcher(NAMESPACE, name, spec)
            self.timeline(name, f"created: {spec['schedule']} {spec['timeZone']}")

    # --- the soak ------------------------------------------------------------------------------

    def _soak(self, replicas: list[Replica]) -> int:
        began = time.monotonic()
        self.claim_watch = ClaimWatch(self.cluster.api, NAMESPACE)
        self.claim_watch.start()
        self.faults.start_all()
        # A manual run each records the baselines now rather than at each one's first slot.
        for name in self.names:
            self._patch(name, {"metadata": {"annotations": {"matchlist.io/trigger": "warm-up"}}})
        self._wait_all("a baseline", lambda s: s.get("matchCount") is not None, 120)
        self.timeline("*", "warm: every watcher has its baseline")
        sampler = threading.Thread(target=self._sample_rss, args=(replicas,), daemon=True)
        sampler.start()
        # The rest of the budget goes to faults, less a reserve for the clean runs at the end.
        budget = self.o.minutes * 60
        chaos_seconds = max(30.0, budget - (time.monotonic() - began) - min(60.0, 0.2 * budget))
        world = threading.Thread(target=self._world, name="world", daemon=True)
        chaos = threading.Thread(
            target=self._chaos, args=(chaos_seconds,), name="faults", daemon=True
        )
        world.start()
        chaos.start()
        chaos.join(chaos_seconds + 180)
        self.stop_world.set()
        world.join(60)
        self.timeline("*", "faults stopped, lists frozen: a clean run for every watcher")
        self.faults.calm()
        unsettled = self._settle()
        time.sleep(3)  # runs that started meanwhile finish
        report = self._collect(replicas)
        active = next((r for r in replicas if r.active()), replicas[0])
        rss_replica = active.label
        rss_start, rss_end = self._rss_of(rss_replica, active.rss_mib())
        self.stop_sampling.set()
        self.timeline("*", "stopping the operators")
        for replica in replicas:
            replica.stop()
        return self._verdict(report, unsettled, rss_start, rss_end, rss_replica)

    def _sample_rss(self, replicas: Sequence[Replica]) -> None:
        while not self.stop_sampling.wait(2.0):
            for replica in replicas:
                rss = replica.rss_mib()
                if rss is not None:
                    age = time.monotonic() - replica.started_at
                    self.rss_samples[replica.label].append((age, rss))

    def _rss_of(self, label: str, now: float | None) -> tuple[float | None, float | None]:
        """The process's RSS after its warm-up (its first sample at least RSS_WARM_SECONDS
        old: watchers loaded, sessions opened) and now."""
        samples = self.rss_samples.get(label) or []
        warm = next((rss for age, rss in samples if age >= RSS_WARM_SECONDS), None)
        self.rss_age = samples[-1][0] if samples else 0.0
        return warm, now

    def _world(self) -> None:
        """Lists change, watchers are edited, suspended, resumed and triggered, at random."""
        rng = random.Random(f"{self.o.seed}-world")
        period = max(0.05, 6.0 / max(1, len(self.names)))
        while not self.stop_world.wait(rng.expovariate(1 / period)):
            name = rng.choice(self.names)
            if name in self.faults.busy:
                continue
            action = rng.choices(("mutate", "trigger", "edit", "suspend"), (10, 3, 1, 1))[0]
            try:
                self._act(rng, name, action)
            except RuntimeError as exc:  # the API server stayed away too long
                self.timeline(name, f"{action} failed: {exc}")

    def _act(self, rng: random.Random, name: str, action: str) -> None:
        self.actions[action] += 1
        if action == "mutate":
            with self.truth_lock:
                what = self.truths[name].mutate()
            self.timeline(name, f"FOGIS list: {what}")
        elif action == "trigger":
            value = f"t-{rng.getrandbits(32):08x}"
            self._patch(name, {"metadata": {"annotations": {"matchlist.io/trigger": value}}})
            self.timeline(name, f"trigger {value}")
        elif action == "suspend":
            suspend = not self.spec[name].get("suspend", False)
            self.spec[name]["suspend"] = suspend
            self._patch(name, {"spec": {"suspend": suspend}})
            self.timeline(name, "suspended" if suspend else "resumed")
        else:
            what = rng.choice(("schedule", "timeZone", "window"))
            if what == "window":
                fogis = self.spec[name]["source"]["fogis"]
                fogis["daysBack"] = 2 if fogis["daysBack"] == 7 else 7
                patch: dict[str, Any] = {"source": {"fogis": {"daysBack": fogis["daysBack"]}}}
            else:
                value = rng.choice(SCHEDULES if what == "schedule" else ZONES)
                self.spec[name][what] = value
                patch = {what: value}
            self._patch(name, {"spec": patch})
            if what == "window":
                self.window_edits[name].append(time.time())
            self.timeline(name, f"edited {patch}")

    def _step(self, name: str, mutation: str) -> bool:
        """For a fault scenario: mutate `name`'s list, trigger a run, wait for its status."""
        with self.truth_lock:
            what = self.truths[name].mutate(mutation)
            value = f"f-{self.step_rng.getrandbits(32):08x}"
        self.timeline(name, f"FOGIS list: {what}")
        self._patch(name, {"metadata": {"annotations": {"matchlist.io/trigger": value}}})
        self.timeline(name, f"trigger {value}")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self._statuses_one(name).get("lastHandledTrigger") == value:
                return True
            time.sleep(0.3)
        return False

    def _patch(self, name: str, body: Mapping[str, Any]) -> None:
        retrying(
            f"patch {name}",
            lambda: self.cluster.custom.patch_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, name, dict(body)
            ),
        )

    def _chaos(self, seconds: float) -> None:
        rng = random.Random(f"{self.o.seed}-chaos")
        deadline = time.monotonic() + seconds
        # Every kind once (in random order), then random ones.
        order = list(self.o.fault_kinds)
        rng.shuffle(order)
        mean_gap = 60.0 / self.o.faults_per_minute
        while True:
            gap = rng.uniform(0.3, 1.7) * mean_gap
            if time.monotonic() + gap > deadline:
                break
            time.sleep(gap)
            kind = order.pop(0) if order else rng.choice(self.o.fault_kinds)
            try:
                self.faults.inject(kind)
            except Exception as exc:  # a failed fault is logged, the soak goes on
                self.timeline(
                    "*", f"fault {kind} could not be injected: {type(exc).__name__}: {exc}"
                )
            self.faults.restart_dead()

    # --- the end -------------------------------------------------------------------------------

    def _statuses(self) -> dict[str, dict[str, Any]]:
        listing = retrying(
            "list watchers",
            lambda: self.cluster.custom.list_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL
            ),
        )
        return {item["metadata"]["name"]: item.get("status") or {} for item in listing["items"]}

    def _wait_all(self, what: str, done: Callable[[dict[str, Any]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = self._statuses()
            missing = [n for n in self.names if not done(statuses.get(n, {}))]
            if not missing:
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}: {missing[:10]}")

    def _settle(self) -> list[str]:
        """A manual run per watcher until one succeeds with nothing pending (a sudden drop is
        held back until a second fetch confirms it, so some need two)."""

        def clean(name: str) -> str | None:
            status: dict[str, Any] = {}
            for attempt in range(6):
                value = f"final-{attempt}"
                self._patch(name, {"metadata": {"annotations": {"matchlist.io/trigger": value}}})
                deadline = time.monotonic() + 150
                while time.monotonic() < deadline:
                    status = self._statuses_one(name)
                    if status.get("lastHandledTrigger") == value:
                        break
                    time.sleep(0.5)
                ready: dict[str, Any] = next(
                    (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
                )
                pending = (status.get("webhook") or {}).get("pendingChanges") or 0
                if ready.get("reason") == "Succeeded" and not pending:
                    self.timeline(name, f"clean run ({value})")
                    return None
                self.timeline(
                    name, f"not clean after {value}: {ready.get('reason')} pending={pending}"
                )
            return f"{name}: no clean run ({status.get('conditions')})"

        with ThreadPoolExecutor(8) as pool:
            return [p for p in pool.map(clean, self.names) if p]

    def _statuses_one(self, name: str) -> dict[str, Any]:
        obj = retrying(
            f"get {name}",
            lambda: self.cluster.custom.get_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, name
            ),
        )
        status: dict[str, Any] = obj.get("status") or {}
        return status

    def _collect(self, replicas: list[Replica]) -> dict[str, Any]:
        report: dict[str, Any] = {"metrics": [], "probes": {}}
        for replica in replicas:
            if replica.operator is not None and replica.alive():
                report["metrics"].append(replica.operator.metrics())
                report["probes"][replica.label] = replica.probe()
        report["statuses"] = self._statuses()
        events = retrying(
            "list events", lambda: self.cluster.core.list_namespaced_event(NAMESPACE).items
        )
        report["events"] = [(e.reason or "", e.message or "") for e in events]
        return report

    def _verdict(
        self,
        report: Mapping[str, Any],
        unsettled: Sequence[str],
        rss_start: float | None,
        rss_end: float | None,
        rss_replica: str,
    ) -> int:
        runs = list(parse_runs(sorted(self.o.out.glob("operator-*.log"))))
        self.runs = runs
        logs = [(p.name, p.read_text(errors="replace")) for p in self.o.out.glob("operator-*.log")]
        texts = [
            *logs,
            *(("metrics", text) for text in report["metrics"]),
            ("events", json.dumps(report["events"])),
            ("statuses", json.dumps(report["statuses"])),
        ]
        deliveries = self.ledger.deliveries
        with (self.o.out / "ledger.jsonl").open("w") as ledger_file:
            for d in deliveries:
                ledger_file.write(json.dumps(asdict(d)) + "\n")
        with self.served_lock:
            served = {k: list(v) for k, v in self.served.items()}
        # Nothing changes before the warm-up ends: the first list served is every baseline.
        baselines = {name: states[0].views for name, states in served.items() if states}
        self.claim_watch.stop()
        findings = check_all(
            claims=self.claim_watch.claims,
            process_started={k: v for r in self.faults.replicas for k, v in r.starts.items()},
            baselines=baselines,
            served=served,
            deliveries=deliveries,
            runs=runs,
            window_edits=self.window_edits,
            texts=texts,
            secrets=[*self.passwords.values(), *self.hmac_keys.values()],
        )
        rss_ok = (
            rss_start is None
            or rss_end is None
            or rss_end <= rss_start + max(RSS_BOUND_MIB, RSS_BOUND_RATIO * rss_start)
        )
        self._table(report, findings, runs, deliveries, unsettled, rss_start, rss_end, rss_replica)
        failed = (
            findings.failed
            or bool(unsettled)
            or not rss_ok
            or bool(self.faults.unexpected_exits)
            or bool(self.faults.two_leaders)
            or bool(self.faults.ghosts)
            or bool(self.faults.held_up)
        )
        if failed:
            with self.served_lock:
                timelines = {
                    w: watcher_timeline(w, self.timeline, self.served.get(w, []), deliveries, runs)
                    for w in findings.problems
                    if w in self.truths
                }
            explain(
                seed=self.o.seed,
                out=self.o.out,
                findings=findings,
                other_problems=[
                    *unsettled,
                    *self.faults.unexpected_exits,
                    *self.faults.two_leaders,
                    *self.faults.ghosts,
                    *self.faults.held_up,
                    *([] if rss_ok else ["operator RSS grew beyond the bound"]),
                ],
                timelines=timelines,
            )
        print(
            f"soak: seed={self.o.seed} minutes={self.o.minutes:g} watchers={len(self.names)} "
            f"faults={sum(self.faults.counts.values())} runs={len(runs)} "
            f"deliveries={len(deliveries)} duplicates={findings.duplicates} "
            f"losses={findings.losses} invented={findings.invented} "
            f"double_runs={findings.double_runs} rss_start_mib={mib(rss_start)} "
            f"rss_end_mib={mib(rss_end)}",
            flush=True,
        )
        return 1 if failed else 0

    def _table(
        self,
        report: Mapping[str, Any],
        findings: Findings,
        runs: Sequence[RunLine],
        deliveries: Sequence[Any],
        unsettled: Sequence[str],
        rss_start: float | None,
        rss_end: float | None,
        rss_replica: str,
    ) -> None:
        rows: list[tuple[str, str]] = []
        for kind in sorted(self.faults.counts):
            rows.append((f"fault {kind}", str(self.faults.counts[kind])))
        rows.append(
            ("world actions", ", ".join(f"{k} {v}" for k, v in sorted(self.actions.items())))
        )
        scheduled = sum(r.slot is not None for r in runs)
        rows.append(
            (
                "runs (scheduled / manual / failed)",
                f"{scheduled} / {len(runs) - scheduled} / {sum(not r.ok for r in runs)}",
            )
        )
        rows.append(("operator processes", str(len({r.process for r in runs}))))
        claims = sum(len(slots) for slots in self.claim_watch.claims.values())
        rows.append(("slot claims seen on the watch", str(claims)))
        with self.served_lock:
            rows.append(("lists served by FOGIS", str(sum(len(v) for v in self.served.values()))))
        answers = Counter(d.answer for d in deliveries)
        rows.append(
            (
                "deliveries",
                f"{len(deliveries)} ({', '.join(f'{k} {v}' for k, v in sorted(answers.items()))})",
            )
        )
        rows.append(("deliveries applied by the receiver", str(sum(d.applied for d in deliveries))))
        rows.append(("requests cut short by a killed sender", str(self.ledger.truncated)))
        rows.append(("duplicates (repeated ids, allowed)", str(findings.duplicates)))
        for name in (
            "losses",
            "invented",
            "double_runs",
            "id_conflicts",
            "ids_not_reused",
            "bad_signatures",
            "leaks",
        ):
            rows.append((name.replace("_", " "), str(getattr(findings, name))))
        rows.append(("watchers without a clean final run", str(len(unsettled))))
        rows.append(("unexpected operator exits", str(len(self.faults.unexpected_exits))))
        rows.append(("two leaders at a takeover", str(len(self.faults.two_leaders))))
        rows.append(("deleted watchers still served", str(len(self.faults.ghosts))))
        rows.append(("triggers held up by receivers in maintenance", str(len(self.faults.held_up))))
        bound = (
            None
            if rss_start is None
            else rss_start + max(RSS_BOUND_MIB, RSS_BOUND_RATIO * rss_start)
        )
        rows.append(
            (
                f"RSS of {rss_replica} (up {self.rss_age:.0f}s): warm / end (bound)",
                f"{mib(rss_start)} / {mib(rss_end)} ({mib(bound)}) MiB",
            )
        )
        for label, probe in (report.get("probes") or {}).items():
            if not probe:
                continue
            tasks = probe.get("total")
            pools = {
                name: pool.get("connections")
                for name, pool in (probe.get("httpcorePools") or {}).items()
            }
            rows.append((f"{label}: asyncio tasks / pooled connections", f"{tasks} / {pools}"))
        print_rows(rows)


def run(options: Options) -> int:
    if options.out.exists():
        shutil.rmtree(options.out)
    return Soak(options).run()
