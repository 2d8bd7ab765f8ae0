"""JSON text in pieces: canonical JSON (sorted keys, compact, non-ASCII kept), the bytes
snapshots are digested and stored as and reports are signed and sent as, and the decoding of
big documents (stored snapshots, FOGIS answers).

`json.dumps` or `json.loads` of a whole 20,000-match document is one C call that holds the GIL
from start to end (hundreds of milliseconds): run in a thread, it still stalls the event loop.
Taking the entries of big containers one at a time lets the interpreter switch threads between
them; the text and the values are the same as one call would give.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
# Containers with more entries than this (and the outermost one) are encoded entry by entry.
_SPLIT = 16


def canonical_json(value: Any) -> str:
    """`json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`."""
    return "".join(_pieces(value, outermost=True))


def _pieces(value: Any, *, outermost: bool = False) -> Iterator[str]:
    if isinstance(value, dict) and (outermost or len(value) > _SPLIT):
        # Other keys (numbers, None) sort and convert as json does only in one call.
        if all(isinstance(key, str) for key in value):
            yield "{"
            for index, key in enumerate(sorted(value)):
                yield f"{',' if index else ''}{_ENCODER.encode(key)}:"
                yield from _pieces(value[key])
            yield "}"
            return
    elif isinstance(value, list | tuple) and (outermost or len(value) > _SPLIT):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _pieces(item)
        yield "]"
        return
    yield _ENCODER.encode(value)


def load_json(text: str | bytes) -> Any:
    """`json.loads(text)`, the outermost container and those in it decoded entry by entry (a
    list of records, a map of matches), each entry in one call. JSONDecodeError as json's."""
    if isinstance(text, bytes):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    value, at = _value(text, _skip(text, 0), depth=0)
    at = _skip(text, at)
    if at != len(text):
        raise json.JSONDecodeError("Extra data", text, at)
    return value


def _skip(text: str, at: int) -> int:
    found = _SPACE.match(text, at)
    return at if found is None else found.end()


def _expect(text: str, at: int, char: str, what: str) -> int:
    """The position after `char` (and any white space) at `at`."""
    if not text.startswith(char, at):
        raise json.JSONDecodeError(f"Expecting {what}", text, at)
    return _skip(text, at + 1)


def _value(text: str, at: int, depth: int) -> tuple[Any, int]:
    if depth < 2 and text.startswith("{", at):
        return _object(text, _skip(text, at + 1), depth)
    if depth < 2 and text.startswith("[", at):
        return _array(text, _skip(text, at + 1), depth)
    value, end = _DECODER.raw_decode(text, at)
    return value, end


def _object(text: str, at: int, depth: int) -> tuple[dict[str, Any], int]:
    found: dict[str, Any] = {}
    if text.startswith("}", at):
        return found, at + 1
    while True:
        if not text.startswith('"', at):
            raise json.JSONDecodeError(
                "Expecting property name enclosed in double quotes", text, at
            )
        key, at = _DECODER.raw_decode(text, at)
        at = _expect(text, _skip(text, at), ":", "':' delimiter")
        found[key], at = _value(text, at, depth + 1)
        at = _skip(text, at)
        if text.startswith("}", at):
            return found, at + 1
        at = _expect(text, at, ",", "',' delimiter")


def _array(text: str, at: int, depth: int) -> tuple[list[Any], int]:
    found: list[Any] = []
    if text.startswith("]", at):
        return found, at + 1
    while True:
        item, at = _value(text, at, depth + 1)
        found.append(item)
        at = _skip(text, at)
        if text.startswith("]", at):
            return found, at + 1
        at = _expect(text, at, ",", "',' delimiter")
