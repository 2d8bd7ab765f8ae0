"""Injected failures of the match-list answer, and the canned answers that are no list."""

from __future__ import annotations

import functools
import json
import zlib

from tests.fakes.fogis.wire import Reply, json_reply

# "gzipped" is no failure: the normal answer, gzip-compressed. "gzip_bomb" is 100 MiB of zeros
# in 100 KiB of gzip; "huge" is a valid answer padded to 40 MiB. "slow" is the normal answer held
# back for `slow_delay` seconds (shorter than a client's timeout, unlike "timeout").
ANSWER_FAILURES = (
    "500", "timeout", "garbage", "success_false", "no_matchlista", "gzipped", "gzip_bomb", "huge",
    "slow",
)  # fmt: skip
FAILURE_KINDS = (*ANSWER_FAILURES, "expire_session", "login_rejected")


def broken_answer(failure: str | None) -> Reply | None:
    """The canned answer of a failure that is no match list at all, else None."""
    if failure == "500":
        return json_reply({"Message": "Ett fel har uppstått."}, 500)
    if failure == "garbage":
        return Reply(200, '<html>Runtime Error</html>{"d":', content_type="application/json")
    if failure == "gzip_bomb":
        return Reply(200, gzip_bomb(), content_type="application/json", encoding="gzip")
    if failure == "huge":
        return Reply(200, huge_answer(), content_type="application/json")
    return None


@functools.cache
def huge_answer() -> bytes:
    """A match-list answer padded to 40 MiB (built once: encoding it per request is slow)."""
    inner = json.dumps({"success": True, "matchlista": [], "padding": "x" * (40 * 1024 * 1024)})
    return json.dumps({"d": inner}).encode()


@functools.cache
def gzip_bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1024 * 1024)
    return b"".join([*(compressor.compress(zeros) for _ in range(100)), compressor.flush()])
