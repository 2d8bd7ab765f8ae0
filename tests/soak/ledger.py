"""The ledger receiver: verifies every signature, records every delivery, and answers as the
current fault mode says (2xx, 5xx, 429 with Retry-After, a timeout after reading the body, a
reset connection, or the operator killed mid-delivery).

Written out here rather than built on tests/fakes/receiver.py: it needs one HMAC key per watcher
(the path names the watcher), connection resets, and to decide per in-doubt delivery whether the
"application" behind it applied the change (a receiver may apply a delivery and then fail to
answer). Signature checks use hashlib/hmac directly so they cannot agree with a broken signer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.soak.world import BackgroundServer

# Answers a receiver can give; the in-doubt ones leave the operator not knowing what happened.
# "ackkill" answers 2xx and then kills the operator (between the answer and its snapshot write).
# "maintenance" is a receiver behind a maintenance page: 503 with a long Retry-After.
ANSWERS = ("ok", "5xx", "429", "timeout", "reset", "kill", "ackkill", "maintenance")
MAINTENANCE_RETRY_AFTER = 60
IN_DOUBT = frozenset({"timeout", "reset", "kill"})


@dataclass(frozen=True)
class Delivery:
    seq: int
    at: float  # wall clock (time.time()) when the body was read
    watcher: str
    delivery_id: str
    payload: Any  # the body as JSON (None if it was not JSON)
    signature_ok: bool
    answer: str  # one of ANSWERS
    applied: bool  # whether the receiver's state took it (2xx always; in-doubt ones at random)

    @property
    def accepted(self) -> bool:
        return self.answer in ("ok", "ackkill")


class Ledger(BackgroundServer):
    thread_name = "soak-ledger"

    def __init__(self, keys: Mapping[str, str], seed: int, *, timeout_hold: float) -> None:
        super().__init__("127.0.0.1", 0)
        self._keys = {name: key.encode() for name, key in keys.items()}
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._deliveries: list[Delivery] = []
        # Weights of ANSWERS; "ok" only when no fault runs.
        self._weights: dict[str, float] = {"ok": 1.0}
        self._queued: dict[str, list[str]] = {}
        self._maintained: frozenset[str] = frozenset()  # watchers whose receiver is down
        self.timeout_hold = timeout_hold  # longer than the watchers' webhook timeoutSeconds
        # Called for "kill" before the answer: SIGKILLs the active operator (mid-delivery).
        self.on_kill: Callable[[], None] = lambda: None
        self.truncated = 0

    def url(self, watcher: str) -> str:
        return f"http://{self.host}:{self.port}/hook/{watcher}"

    def queue_for(self, watcher: str, answers: Sequence[str]) -> None:
        """The next answers to `watcher`'s deliveries, whatever the mode (in-doubt ones are
        then applied by the receiver)."""
        with self._lock:
            self._queued.setdefault(watcher, []).extend(answers)

    def clear_queue(self, watcher: str) -> None:
        with self._lock:
            self._queued.pop(watcher, None)

    def maintain(self, watchers: Iterable[str]) -> None:
        """These watchers' deliveries are answered "maintenance" (the others as the mode says)
        until the next call."""
        with self._lock:
            self._maintained = frozenset(watchers)

    def set_mode(self, weights: Mapping[str, float]) -> None:
        with self._lock:
            self._weights = dict(weights) or {"ok": 1.0}

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def _make_server(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        return _Server(address, self)

    def _record(
        self, path: str, headers: Mapping[str, str], body: bytes, complete: bool
    ) -> Delivery | None:
        """The delivery, or None for a request cut short (its sender died while sending it:
        nothing arrived that an application could have taken)."""
        if not complete:
            with self._lock:
                self.truncated += 1
            return None
        watcher = path.rstrip("/").rpartition("/")[2]
        key = self._keys.get(watcher)
        expected = (
            "" if key is None else "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        )
        given = headers.get("x-signature", "")
        signature_ok = key is not None and hmac.compare_digest(given.encode(), expected.encode())
        try:
            payload = json.loads(body) if signature_ok else None  # verify before parsing
        except ValueError:
            payload = None
        with self._lock:
            kinds, weights = zip(*self._weights.items(), strict=True)
            answer = self._rng.choices(kinds, weights)[0]
            applied = answer in ("ok", "ackkill") or (
                answer in IN_DOUBT and self._rng.random() < 0.5
            )
            queued = self._queued.get(watcher)
            if queued:  # answers set aside for this watcher: in doubt, and applied
                answer, applied = queued.pop(0), True
            elif watcher in self._maintained:
                answer, applied = "maintenance", False
            if answer in ("kill", "ackkill"):  # one kill per request for it
                self._weights = {"ok": 1.0}
            delivery = Delivery(
                seq=len(self._deliveries),
                at=time.time(),
                watcher=watcher,
                delivery_id=headers.get("x-matchlist-delivery", ""),
                payload=payload,
                signature_ok=signature_ok,
                answer=answer,
                applied=applied and signature_ok,
            )
            self._deliveries.append(delivery)
        return delivery


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], ledger: Ledger) -> None:
        self.ledger = ledger
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Resets and abandoned timeouts leave broken sockets behind on purpose.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        ledger = self.server.ledger
        delivery = ledger._record(self.path, headers, body, complete=len(body) == length)
        if delivery is None:
            self.close_connection = True
            return
        answer = delivery.answer
        if answer == "kill":
            ledger.on_kill()
            answer = "reset"
        if answer == "timeout":
            # Hold the answer past the client's timeout, then go away without one.
            ledger._stopping.wait(ledger.timeout_hold)
            self.close_connection = True
            return
        if answer == "reset":
            # SO_LINGER 0: close() sends RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        status, extra = {
            "ok": (204, {}),
            "429": (429, {"Retry-After": "1"}),
            "maintenance": (503, {"Retry-After": str(MAINTENANCE_RETRY_AFTER)}),
        }.get(answer, (503, {}))
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if answer == "ackkill":
            self.wfile.flush()
            # A few milliseconds later the operator is writing its snapshot.
            threading.Timer(0.005, ledger.on_kill).start()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the ledger is the record."""
