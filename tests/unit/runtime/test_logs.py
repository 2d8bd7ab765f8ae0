"""The logging policy (controller/runtime/logs.py): what stays quiet even at DEBUG."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator

import pytest
import urllib3

from controller.runtime.logs import set_log_levels

QUIETED = ("httpx", "httpcore", "urllib3", "kopf.objects")


@pytest.fixture(autouse=True)
def _levels() -> Iterator[None]:
    """Each test starts from unset library levels and leaves them as it found them."""
    before = {name: logging.getLogger(name).level for name in ("", *QUIETED)}
    for name in QUIETED:
        logging.getLogger(name).setLevel(logging.NOTSET)
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        # MLCD_LOG_LEVEL=DEBUG shows kopf's per-object lines, never request lines with URLs.
        ("DEBUG", {"httpx": 30, "httpcore": 30, "urllib3": 30, "kopf.objects": 10}),
        ("INFO", {"httpx": 30, "httpcore": 30, "urllib3": 30, "kopf.objects": 30}),
        ("WARNING", {"httpx": 30, "httpcore": 30, "urllib3": 30, "kopf.objects": 30}),
    ],
)
def test_library_levels(level: str, expected: dict[str, int]) -> None:
    set_log_levels(level)
    assert {name: logging.getLogger(name).getEffectiveLevel() for name in expected} == expected


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_token_in_a_request_path_is_not_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue: with MLCD_LOG_LEVEL=DEBUG, urllib3 (under Apprise's requests, and the kubernetes
    client) logged `POST /webhook/<token>`: a capability URL in the log."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        set_log_levels("DEBUG")
        with caplog.at_level(logging.DEBUG):
            pool = urllib3.PoolManager()
            answer = pool.request("POST", f"http://127.0.0.1:{server.server_port}/hook/s3cr3t")
            pool.clear()
        assert answer.status == 204
        assert not [r.getMessage() for r in caplog.records if "s3cr3t" in r.getMessage()]
    finally:
        server.shutdown()
        server.server_close()
