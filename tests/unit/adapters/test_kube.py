"""The Kubernetes adapter's Lease calls: apart from the other calls, and sent once.

A loopback socket stands in for the API server; these pin down how the calls are made, which
the integration suite (a real API server that answers) cannot provoke."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from controller.adapters import kube as kube_module
from controller.adapters.kube import Kube
from controller.core.errors import KubernetesError


class Silent:
    """Accepts connections and reads requests, but never answers: a hung API server."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.requests = 0
        self._held: list[socket.socket] = []
        self._closing = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            self._held.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buffered = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffered += chunk
            while b"\r\n\r\n" in buffered:  # bodiless GETs: one request per header block
                _, buffered = buffered.split(b"\r\n\r\n", 1)
                self.requests += 1

    def close(self) -> None:
        self._closing = True
        self._socket.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


def kube_at(port: int, workers: int) -> Kube:
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    return Kube.from_configuration(configuration, workers)


async def test_a_lease_call_is_not_queued_behind_busy_kube_threads() -> None:
    """Issue: in a storm every kube thread is busy with status writes; a renewal queued behind
    them keeps the leader past its renew deadline. Here both threads are held (until the end
    of the test, or 30 s): the Lease read must still be sent, and end first (refused: nothing
    listens on the port)."""
    with socket.create_server(("127.0.0.1", 0)) as free:
        port = free.getsockname()[1]
    kube = kube_at(port, workers=2)
    release = threading.Event()

    def busy(**_: Any) -> None:
        release.wait(30)

    storm = [asyncio.ensure_future(kube._call("a status write", busy)) for _ in range(2)]
    await asyncio.sleep(0)  # both are in their threads now
    lease = asyncio.ensure_future(kube.read_lease("ops", "mlcd"))
    try:
        done, _ = await asyncio.wait({lease, *storm}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {lease}
        assert isinstance(lease.exception(), KubernetesError)
    finally:
        release.set()
        await asyncio.gather(lease, *storm, return_exceptions=True)
        kube.close()


async def test_a_lease_call_that_times_out_is_not_sent_again(
    silent: Silent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """urllib3 sends a timed-out GET or PUT up to 3 times more by default: a hung renewal's
    thread would then outlive the renew deadline, holding the next round's call."""
    monkeypatch.setattr(kube_module, "_LEASE_REQUEST_TIMEOUT", (0.5, 0.2))
    kube = kube_at(silent.port, workers=1)
    try:
        with pytest.raises(KubernetesError, match="ReadTimeoutError"):
            await kube.read_lease("ops", "mlcd")
    finally:
        kube.close()
    assert silent.requests == 1
