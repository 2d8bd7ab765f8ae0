"""A stdlib HTTP server on 127.0.0.1 serving from a daemon thread: the shared shell of the fakes.

A fake subclasses `BackgroundServer` and answers each request in `answer()`; the server, the
request handler and the threading are here, once."""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass
class Answer:
    """What goes back on the wire; `delay` holds it back (a "timeout" for the client)."""

    status: int
    headers: Sequence[tuple[str, str]] = ()  # Content-Length is added
    body: bytes = b""
    delay: float = 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Hundreds of watchers connect at the same second in the benchmark; the default of 5
    # queued connections would drop most of them.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], fake: BackgroundServer) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out leaves a broken pipe behind (over TLS: an SSL error); tests
        # provoke that on purpose.
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake = self.server.fake
        answer = fake.answer(self.command, self.path, headers, body)
        if answer.delay and fake._stopping.wait(answer.delay):
            return  # stopped meanwhile: drop the connection without an answer
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests look at the fakes' records, the CLIs print their own lines."""


class Service:
    """Something started and stopped, also as a `with` block (the fakes, a fake's process)."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class BackgroundServer(Service):
    """start()/stop() (or a `with` block); a stop then start listens on the same port again."""

    thread_name = "fake-server"

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        # Set while stopping, so handlers holding a reply back (a "timeout") let go at once.
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """The answer to one request (`headers` with lower-cased names), in a handler thread."""
        raise NotImplementedError

    def _make_server(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        """The server that `start` runs: one answering through `answer()`, unless a subclass
        needs a handler of its own (one that resets connections, say)."""
        return _Server(address, self)

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        self._server = self._make_server((self.host, self.port))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.thread_name}-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None
