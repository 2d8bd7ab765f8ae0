"""Slot claims as they happen: a watch on the MatchWatchers that notes when each value of
status.lastScheduleTime was first seen. A scheduled run claims its slot there before it starts,
so a run killed before its log line still leaves a trace (invariant 3)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from tests.soak.world import GROUP, PLURAL, VERSION


class ClaimWatch:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._namespace = namespace
        self._lock = threading.Lock()
        self._claims: dict[str, dict[str, float]] = defaultdict(dict)  # watcher -> slot -> when
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="claim-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def claims(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {name: dict(slots) for name, slots in self._claims.items()}

    def _note(self, obj: Any) -> None:
        name = (obj.get("metadata") or {}).get("name")
        slot = (obj.get("status") or {}).get("lastScheduleTime")
        if name and slot:
            with self._lock:
                self._claims[name].setdefault(slot, time.time())

    def _run(self) -> None:
        # A listing after every break (the soak restarts the API server): values that changed
        # meanwhile are noted late, which only makes the check more lenient.
        while not self._stopping.is_set():
            try:
                listing = self._custom.list_namespaced_custom_object(
                    GROUP, VERSION, self._namespace, PLURAL
                )
                for item in listing["items"]:
                    self._note(item)
                stream = watch.Watch()
                for event in stream.stream(
                    self._custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self._namespace,
                    PLURAL,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=30,
                ):
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._note(event.get("object") or {})
                    if self._stopping.is_set():
                        stream.stop()
                        break
            except (ApiException, HTTPError, OSError, ValueError):
                time.sleep(0.5)
