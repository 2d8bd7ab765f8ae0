"""A watch on the benchmark's MatchWatchers: when each status change arrived."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from tests.support.watchers import GROUP, PLURAL, VERSION


class Observer:
    """Every event of the namespace's MatchWatchers, timestamped on arrival (monotonic)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.cond = threading.Condition()
        self.expect_next: str | None = None  # the nextExecutionTime that means "seen"
        self.seen: dict[str, float] = {}  # name -> when NEXT RUN first showed expect_next
        self.landed: dict[str, dict[str, float]] = {}  # lastScheduleTime -> name -> when
        self.triggers: dict[str, float] = {}  # lastHandledTrigger value -> when
        self.status: dict[str, dict[str, Any]] = {}
        self.modified: Counter[str] = Counter()  # MODIFIED events per watcher
        self.names: set[str] = set()
        # While not None: name -> when status.nextExecutionTime first showed a value (restart).
        self.next_known: dict[str, float] | None = None
        # Runs that claimed no new slot and answered no new trigger: executionCount went up
        # while lastScheduleTime and lastHandledTrigger stayed those of the previous run (a
        # slot run twice, e.g. again after a restart). name -> (slot, trigger, count) of the
        # last run seen, and the names with such a run.
        self._last_run: dict[str, tuple[Any, Any, int]] = {}
        self.doubled: Counter[str] = Counter()
        self.events = 0
        self.last_event = time.monotonic()
        self._rv = ""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)

    def start(self) -> None:
        listing = self._custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        self._rv = listing["metadata"]["resourceVersion"]
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self._custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=self._rv,
                    timeout_seconds=30,
                    deserialize=False,
                ):
                    self._handle(event)
                    if self._stopping.is_set():
                        stream.stop()
                        break
            except ApiException as exc:
                if exc.status == 410:  # too old: start again from a fresh listing
                    self._rv = self._custom.list_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL
                    )["metadata"]["resourceVersion"]
                else:
                    time.sleep(0.2)
            except (HTTPError, OSError):
                time.sleep(0.2)

    def _handle(self, event: Mapping[str, Any]) -> None:
        now = time.monotonic()
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        self._rv = meta.get("resourceVersion") or self._rv
        if event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
            return
        name = meta.get("name", "")
        status = obj.get("status") or {}
        with self.cond:
            self.events += 1
            self.last_event = now
            if event["type"] == "DELETED":
                self.names.discard(name)
            else:
                self.names.add(name)
                self.status[name] = status
            if event["type"] == "MODIFIED":
                self.modified[name] += 1
            if name not in self.seen and status.get("nextExecutionTime") == self.expect_next:
                self.seen[name] = now
            if self.next_known is not None and status.get("nextExecutionTime"):
                self.next_known.setdefault(name, now)
            slot = status.get("lastScheduleTime")
            self._note_run(name, slot, status)
            if slot:
                self.landed.setdefault(slot, {}).setdefault(name, now)
            trigger = status.get("lastHandledTrigger")
            if trigger:
                self.triggers.setdefault(trigger, now)
            self.cond.notify_all()

    def _note_run(self, name: str, slot: Any, status: Mapping[str, Any]) -> None:
        count = status.get("executionCount")
        if not isinstance(count, int):
            return
        mark = (slot, status.get("lastHandledTrigger"), count)
        previous = self._last_run.get(name)
        if previous is not None and count > previous[2] and mark[:2] == previous[:2]:
            self.doubled[name] += 1
        if previous is None or count > previous[2]:
            self._last_run[name] = mark

    def wait(self, predicate: Callable[[], bool], until: float) -> bool:
        """Wait until `predicate()` (called under the lock) holds or monotonic `until` passes."""
        with self.cond:
            while not predicate():
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(min(remaining, 1.0))
            return True

    def settle(self, quiet: float, timeout: float) -> bool:
        """Wait for `quiet` seconds without an event (at most `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.cond:
                idle = time.monotonic() - self.last_event
            if idle >= quiet:
                return True
            time.sleep(min(quiet - idle + 0.05, max(0.0, deadline - time.monotonic())))
        return False
