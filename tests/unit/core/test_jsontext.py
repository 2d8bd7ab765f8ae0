"""JSON in pieces: the very text json.dumps gives and the values json.loads gives, for any
document; what json.loads refuses, refused too."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.core.jsontext import canonical_json, load_json

# Big enough containers (over 16 entries) to be encoded entry by entry, nested, with keys
# json sorts and converts itself (numbers, None) mixed in.
KEYS = st.text(max_size=6) | st.integers(-3, 3) | st.none()
DOCUMENT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=40)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=6), inner, max_size=40)
        | st.dictionaries(KEYS, inner, max_size=20)
    ),
    max_leaves=100,
)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@settings(derandomize=True, max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(DOCUMENT)
def test_the_same_text_as_one_dumps(value: Any) -> None:
    try:
        expected = dumps(value)
    except TypeError:  # keys json cannot sort (text next to numbers): not ours to encode
        return
    assert canonical_json(value) == expected


def test_a_big_document_with_non_ascii_text() -> None:
    matches = {f"{i:05d}": {"venue": "Råsunda", "referees": list(range(20))} for i in range(50)}
    document = {"matches": matches, "format": 1, "note": 'ä "quoted" \u2028'}
    assert canonical_json(document) == dumps(document)
    assert canonical_json([document, "x"]) == dumps([document, "x"])


@settings(derandomize=True, max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(DOCUMENT, st.sampled_from([None, 0, 2]), st.booleans())
def test_decoded_as_one_loads_would(value: Any, indent: int | None, as_bytes: bool) -> None:
    text = json.dumps(value, indent=indent)  # keys become text; white space in every place
    assert load_json(text.encode() if as_bytes else text) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    ["", " ", "{", "[1,]", "[1 2]", '{"a" 1}', '{"a":1,}', "{1:2}", '{"a":[}', "[] []", "\ufeff[]",
     '{"a":[1,{"b":}]}', "nul"],
)  # fmt: skip
def test_what_loads_refuses_is_refused(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        load_json(text)
