"""Faults at random times, counted by kind: operator processes (two replicas electing a leader
on a Lease) killed or stopped and restarted, the API server killed and restarted on its etcd
data, the leader's Lease renewals hanging, the receiver failing in every way a webhook can (some
watchers' receivers in maintenance too), FOGIS failing in every way it does, and watchers deleted
while the watch is down or created and deleted in a hurry."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from tests.soak.ledger import Ledger
from tests.soak.world import (
    GROUP,
    HOLD_SECONDS,
    PLURAL,
    VERSION,
    Cluster,
    FakeFogis,
    LeaseStall,
    Operator,
    http_get,
    local_cluster,
    metric_value,
)

TASKPROBE = Path(__file__).resolve().parents[1] / "bench" / "taskprobe"

# Receiver fault windows: answer weights while one lasts.
RECEIVER_MODES: Mapping[str, Mapping[str, float]] = {
    "receiver_5xx": {"5xx": 3, "ok": 1},
    "receiver_429": {"429": 3, "ok": 1},
    "receiver_timeout": {"timeout": 2, "ok": 1},
    "receiver_reset": {"reset": 2, "ok": 1},
    "receiver_mixed": {"5xx": 1, "429": 1, "timeout": 1, "reset": 1, "ok": 1},
}
# The watchers' webhook maxAttempts: an in-doubt run needs every attempt to time out.
MAX_ATTEMPTS = 3
# Watchers whose receivers receivers_maintenance takes down, at least (a quarter if more).
MAINTAINED = 4
FOGIS_KINDS = ("500", "garbage", "slow", "timeout", "success_false")
FAULT_KINDS = (
    "operator_sigkill",
    "operator_sigterm",
    "sigkill_mid_delivery",
    "sigkill_after_ack",
    "apiserver_restart",
    "lease_hang",
    *RECEIVER_MODES,
    *(f"fogis_{kind}" for kind in FOGIS_KINDS),
    "fogis_expired_401",
    "fogis_expired_redirect",
    "fogis_expired_login_page",
    "in_doubt_flipflop",
    "deleted_while_watch_down",
    "watcher_churn",
    "receivers_maintenance",
)
# Watchers those two faults create besides the soak's own (never run: @yearly, no trigger).
EXTRA_PREFIX = "extra-"
# Seconds within which no replica may serve (or export series of) a deleted extra watcher.
GHOST_DEADLINE = 90.0


class Replica:
    """One operator replica: restarted as a new process (a new log file) after each fault."""

    def __init__(
        self, name: str, kubeconfig: str, namespace: str, out: Path, env: Mapping[str, str]
    ) -> None:
        self.name = name
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.out = out
        self.env = dict(env)
        self.incarnation = 0
        self.operator: Operator | None = None
        self.started_at = 0.0
        self.starts: dict[str, float] = {}  # process label -> wall clock when it was started

    @property
    def tasks_file(self) -> Path:
        return self.out / f"tasks-{self.name}.json"

    @property
    def label(self) -> str:
        return f"{self.name}-{self.incarnation}"

    def start(self) -> None:
        self.incarnation += 1
        self.starts[self.label] = time.time()
        env = {
            **self.env,
            "PYTHONPATH": str(TASKPROBE),
            "BENCH_TASKS_FILE": str(self.tasks_file),  # the bench's SIGUSR1 task probe
        }
        operator = Operator(
            self.kubeconfig, [self.namespace], self.out / f"operator-{self.label}.log", env
        )
        operator.start()
        self.operator = operator
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        op = self.operator
        return None if op is None or op.proc is None else op.proc.pid

    def alive(self) -> bool:
        op = self.operator
        return op is not None and op.proc is not None and op.proc.poll() is None

    def active(self) -> bool:
        """Serving the watchers (the Lease holder): the `watchers` probe is 0 on a standby."""
        op = self.operator
        if op is None or not self.alive():
            return False
        text = http_get(op.health_url)
        try:
            return bool(text) and int(json.loads(text or "{}").get("watchers") or 0) > 0
        except ValueError:
            return False

    def served(self) -> float | None:
        """Watchers served now, from the live gauge (/healthz's probe is cached for 10 s)."""
        op = self.operator
        if op is None or not self.alive():
            return None
        return metric_value(op.metrics(), "matchwatcher_watchers", {})

    def send(self, sig: int) -> None:
        pid = self.pid
        if pid is not None and self.alive():
            os.kill(pid, sig)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        op = self.operator
        if op is None:
            return None
        code = op.stop(sig)
        self.operator = None
        return code

    def rss_mib(self) -> float | None:
        pid = self.pid
        if pid is None:
            return None
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def probe(self, timeout: float = 5.0) -> dict[str, object] | None:
        """The task probe's JSON (asyncio tasks by coroutine, connection pools)."""
        self.tasks_file.unlink(missing_ok=True)
        self.send(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.tasks_file.exists():
                document: dict[str, object] = json.loads(self.tasks_file.read_text())
                return document
            time.sleep(0.1)
        return None


class Faults:
    """Injects one fault at a time and counts them; `log` writes the global timeline."""

    def __init__(
        self,
        *,
        rng: random.Random,
        replicas: list[Replica],
        fogis: FakeFogis,
        ledger: Ledger,
        state_dir: Path,
        log: Callable[[str, str], None],
        watchers: Sequence[str] = (),
        step: Callable[[str, str], bool] = lambda name, mutation: False,
        lease_stall: LeaseStall | None = None,
        cluster: Cluster | None = None,
        extra_spec: Mapping[str, object] | None = None,
    ) -> None:
        self.rng = rng
        self.replicas = replicas
        self.fogis = fogis
        self.ledger = ledger
        self.state_dir = state_dir
        self.log = log
        self.counts: Counter[str] = Counter()
        self.watchers = list(watchers)
        self.busy: set[str] = set()  # watchers a fault scenario owns: the world leaves them be
        # Mutates a watcher's list and triggers a run; True once the run's status shows.
        self.step = step
        self.unexpected_exits: list[str] = []
        # Holds the leader's Lease renewals back (lease_hang), registered for the soak's Leases.
        self.lease_stall = lease_stall
        self.two_leaders: list[str] = []  # takeovers while the old leader still served
        self.cluster = cluster
        self.extra_spec = dict(extra_spec or {})
        self._extras = 0
        self.ghosts: list[str] = []  # deleted extra watchers still served after the deadline
        self.held_up: list[str] = []  # triggers that did not run while receivers were down
        self._killed = threading.Event()
        ledger.on_kill = self._kill_from_receiver

    def start_all(self) -> None:
        for replica in self.replicas:
            replica.start()
            self.log("*", f"started {replica.label} (pid {replica.pid})")

    def _active(self) -> Replica | None:
        return next((r for r in self.replicas if r.active()), None)

    def _target(self) -> Replica:
        return self._active() or self.rng.choice(
            [r for r in self.replicas if r.alive()] or self.replicas
        )

    def restart_dead(self) -> None:
        for replica in self.replicas:
            if not replica.alive():
                if replica.operator is not None and replica.operator.proc is not None:
                    code = replica.operator.proc.poll()
                    replica.operator.proc = None
                    replica.operator = None
                    if code not in (0, -signal.SIGKILL, -signal.SIGTERM):
                        self.unexpected_exits.append(f"{replica.label} exited with {code}")
                        self.log("*", f"UNEXPECTED: {replica.label} exited with {code}")
                replica.start()
                self.log("*", f"restarted as {replica.label} (pid {replica.pid})")

    def _kill_from_receiver(self) -> None:
        replica = self._target()
        replica.send(signal.SIGKILL)
        self.log("*", f"SIGKILL {replica.label} from inside the receiver")
        self._killed.set()

    def inject(self, kind: str) -> None:
        self.counts[kind] += 1
        self.log("*", f"fault {kind}")
        scenarios: dict[str, Callable[[], None]] = {
            "lease_hang": self._lease_hang,
            "in_doubt_flipflop": self._in_doubt_flipflop,
            "deleted_while_watch_down": self._deleted_while_watch_down,
            "watcher_churn": self._churn,
            "receivers_maintenance": self._receivers_in_maintenance,
        }
        if kind in ("operator_sigkill", "operator_sigterm"):
            replica = self._target()
            sig = signal.SIGKILL if kind == "operator_sigkill" else signal.SIGTERM
            self.log(
                "*", f"{signal.Signals(sig).name} {replica.label} (active: {replica.active()})"
            )
            code = replica.stop(sig)
            if kind == "operator_sigterm" and code != 0:
                self.unexpected_exits.append(f"{replica.label} exited with {code} on SIGTERM")
            time.sleep(self.rng.uniform(0.2, 3.0))
            self.restart_dead()
        elif kind in ("sigkill_mid_delivery", "sigkill_after_ack"):
            self._killed.clear()
            self.ledger.set_mode({"kill" if kind == "sigkill_mid_delivery" else "ackkill": 1})
            self._killed.wait(30)
            self.ledger.set_mode({"ok": 1})
            time.sleep(self.rng.uniform(0.2, 2.0))
            self.restart_dead()
        elif kind == "apiserver_restart":
            began = time.monotonic()
            local_cluster.restart_apiserver(self.state_dir, kill=True)
            self.log("*", f"kube-apiserver back after {time.monotonic() - began:.1f}s")
        elif kind in scenarios:
            scenarios[kind]()
        elif kind in RECEIVER_MODES:
            # Until a few deliveries met it (none come while a failover is under way).
            wanted = len(self.ledger.deliveries) + self.rng.randint(3, 8)
            deadline = time.monotonic() + 45
            self.ledger.set_mode(RECEIVER_MODES[kind])
            while len(self.ledger.deliveries) < wanted and time.monotonic() < deadline:
                time.sleep(0.2)
            self.ledger.set_mode({"ok": 1})
        elif kind.startswith("fogis_expired_"):
            self.fogis.expired_answer = kind.removeprefix("fogis_expired_")
            self.fogis.expire_sessions()
        else:
            self.fogis.fail_next(kind.removeprefix("fogis_"), self.rng.randint(1, 4))

    def _lease_hang(self) -> None:
        """The leader's Lease renewals hang (held in an admission webhook, tests/fakes/
        lease_stall.py) until a standby took over: the old leader must have stepped down by
        then. Its other calls go on, as when its renewals wait behind a storm of status writes."""
        stall = self.lease_stall
        if stall is None:
            return
        took_over = threading.Event()

        def takeover(old: str | None, new: str) -> None:
            # Identities are `<host>-<pid>-<random>` (controller/entrypoints/handlers.py).
            old_pid = None if old is None else old.rsplit("-", 2)[-2]
            for replica in self.replicas:
                if old_pid == str(replica.pid):
                    served = replica.served()
                    self.log("*", f"lease_hang: taken over; {replica.label} serves {served}")
                    if served:
                        self.two_leaders.append(f"{replica.label} served {served} at a takeover")
            took_over.set()

        stall.on_takeover = takeover
        stall.hold()
        try:
            if not took_over.wait(HOLD_SECONDS - 2):
                self.log("*", "lease_hang: no takeover while the renewals hung")
        finally:
            stall.release()
            stall.on_takeover = lambda old, new: None

    def _in_doubt_flipflop(self) -> None:
        """A->B and back to A, each delivered in doubt (every attempt of the run times out
        after the receiver read and applied it), then B again, answered: the receiver must
        end at B."""
        if not self.watchers:
            return
        name = self.rng.choice(self.watchers)
        self.busy.add(name)
        self.log(name, "fault in_doubt_flipflop")
        for mutation, in_doubt in (("time", True), ("flipflop", True), ("flipflop", False)):
            if in_doubt:
                self.ledger.queue_for(name, ["timeout"] * MAX_ATTEMPTS)
            ran = self.step(name, mutation)
            self.log(name, f"in_doubt_flipflop: {mutation} {'ran' if ran else 'did not run'}")
        self.ledger.clear_queue(name)
        self.busy.discard(name)

    def _extra(self, name: str | None = None) -> str:
        """Create an extra watcher (a new one, or one re-created under `name`)."""
        assert self.cluster is not None, "the extra watchers' faults need the cluster"
        if name is None:
            self._extras += 1
            name = f"{EXTRA_PREFIX}{self._extras}"
        self.cluster.create_watcher(self.replicas[0].namespace, name, self.extra_spec)
        return name

    def _delete(self, name: str) -> None:
        assert self.cluster is not None
        self.cluster.delete_watcher(self.replicas[0].namespace, name)

    def _served(self) -> set[str]:
        """Extra watchers any live replica exports series of (only the leader exports any)."""
        text = "".join(r.operator.metrics() for r in self.replicas if r.operator and r.alive())
        label = 'name="'
        return {
            part.partition('"')[0]
            for part in text.split(label)[1:]
            if part.startswith(EXTRA_PREFIX)
        }

    def _existing_extras(self) -> set[str]:
        assert self.cluster is not None
        items = self.cluster.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.replicas[0].namespace, PLURAL
        )["items"]
        return {
            name
            for name in (item["metadata"]["name"] for item in items)
            if name.startswith(EXTRA_PREFIX)
        }

    def _no_ghosts(self, kind: str) -> None:
        """Within GHOST_DEADLINE, no replica serves an extra watcher that no longer exists."""
        deadline = time.monotonic() + GHOST_DEADLINE
        ghosts: set[str] = set()
        while time.monotonic() < deadline:
            with contextlib.suppress(ApiException, HTTPError, OSError):  # the API server is back
                ghosts = self._served() - self._existing_extras()
                if not ghosts:
                    return
            time.sleep(1.0)
        problem = f"{kind}: deleted watchers still served: {sorted(ghosts)}"
        self.ghosts.append(problem)
        self.log("*", f"UNEXPECTED: {problem}")

    def _deleted_while_watch_down(self) -> None:
        """Every replica frozen, the API server restarted (so no watch can resume: kopf
        re-lists), watchers deleted, the replicas thawed: a re-listing sends no DELETED."""
        names = [self._extra() for _ in range(self.rng.randint(1, 3))]
        time.sleep(3)  # seen and served (their first status written)
        frozen = [r for r in self.replicas if r.alive()]
        for replica in frozen:
            replica.send(signal.SIGSTOP)
        try:
            local_cluster.restart_apiserver(self.state_dir, kill=True)
            for name in names:
                self._delete(name)
        finally:
            for replica in frozen:
                replica.send(signal.SIGCONT)
        self.log("*", f"deleted {names} while every watch was down")
        self._no_ghosts("deleted_while_watch_down")

    def _churn(self) -> None:
        """Watchers created and deleted in a hurry, some re-created under the same name."""
        names = [self._extra() for _ in range(self.rng.randint(5, 15))]
        for name in names:
            self._delete(name)
            if self.rng.random() < 0.3:  # re-created under its name: a new uid
                self._extra(name)
                self._delete(name)
        self.log("*", f"churned {len(names)} watchers")
        self._no_ghosts("watcher_churn")

    def _receivers_in_maintenance(self) -> None:
        """A quarter of the watchers' receivers (at least MAINTAINED) answer 503 with a long
        Retry-After while the world goes on: their runs wait it out (without holding a permit),
        and meanwhile another watcher's change must still be delivered."""
        free = [name for name in self.watchers if name not in self.busy]
        if len(free) < 2:
            return
        maintained = self.rng.sample(free, min(len(free) - 1, max(MAINTAINED, len(free) // 4)))
        healthy = self.rng.choice([name for name in free if name not in maintained])
        self.busy.add(healthy)
        self.log("*", f"receivers in maintenance: {', '.join(sorted(maintained))}")
        seen = len(self.ledger.deliveries)
        self.ledger.maintain(maintained)
        try:
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:  # until some of their runs are waiting
                waiting = {
                    d.watcher for d in self.ledger.deliveries[seen:] if d.answer == "maintenance"
                }
                if len(waiting) >= min(3, len(maintained)):
                    break
                time.sleep(0.2)
            ran = self.step(healthy, "time")
            self.log(healthy, f"receivers_maintenance: a change {'ran' if ran else 'did not run'}")
            if not ran:
                self.held_up.append(f"{healthy}: not run while receivers were in maintenance")
        finally:
            self.ledger.maintain(())
            self.busy.discard(healthy)

    def calm(self) -> None:
        """Stop every fault: a healthy receiver and FOGIS, both replicas running."""
        self.ledger.set_mode({"ok": 1})
        self.fogis.clear_failures()
        self.fogis.expired_answer = "401"
        self.restart_dead()
