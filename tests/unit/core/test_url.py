"""model.is_http_url, checked without httpx, accepts the URLs httpx accepts (and urlsplit too).

The oracle is the check as it was when model.py parsed with httpx itself, except that it asks
httpx for the host it sends to (`raw_host`), not the decoded one (`host`): decoding an invalid
`xn--` first label raised IDNAError out of the old check (out of parse_spec), where the new one
accepts the URL as httpx does when it sends.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.core.model import is_http_url

# Derandomized like tests/unit/test_properties.py: the same examples on every run.
PROPERTY = settings(
    derandomize=True,
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def httpx_accepts(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsed on access; raises ValueError when out of range
        parsed = httpx.URL(url)
    except Exception:  # the old check's: any refusal, whatever its type
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname and parsed.raw_host)


# Pieces that reach each rule: IPv4-looking hosts, [IPv6] and [IPvFuture] literals, non-ASCII
# hosts (valid and invalid IDNA), userinfo, ports in and out of range or not ASCII digits,
# control characters and spaces, other schemes.
SCHEMES = st.sampled_from(["http", "https", "HTTPS", "ftp", "", " http", "1http", "ht tp"])
SEPARATORS = st.sampled_from(["://", "://", "://", ":/", ":", ":///"])
HOST_PIECES = st.sampled_from(
    [
        *"aZ09.-_[]:%@!~ ",
        "example.org",
        "xn--",
        "xn--zz",
        "xn--bcher-kva",
        "127.0.0.1",
        "999.1.1.1",
        "01.2.3.4",
        "1.2.3",
        "[::1]",
        "[fe80::1%25eth0]",
        "[v1.fe]",
        "[127.0.0.1]",
        "bücher",
        "ß",
        "☃",
        "\u200d",
        "\uff46",  # fullwidth f
        "Ⅻ",
        "\u0661",  # Arabic-Indic digit one
        "\x00",
        "\t",
        "\n",
        "\x7f",
        "\x85",
        "user@",
        "u:p@",
    ]
)
PORTS = st.sampled_from(["", ":", ":80", ":65535", ":65536", ":-1", ":٨٠", ":8_0", ": 80", ":0"])
PATHS = st.sampled_from(["", "/", "/a?b#c", "?q", "#f", "/ä", "/%zz", "/ x", "\\x"])


@st.composite
def urls(draw: st.DrawFn) -> str:
    host = "".join(draw(st.lists(HOST_PIECES, max_size=5)))
    return draw(SCHEMES) + draw(SEPARATORS) + host + draw(PORTS) + draw(PATHS)


@PROPERTY
@given(urls())
def test_accepts_what_httpx_and_urlsplit_accept(url: str) -> None:
    assert is_http_url(url) == httpx_accepts(url)


@PROPERTY
@given(st.text(max_size=40))
def test_accepts_what_httpx_and_urlsplit_accept_after_any_scheme(rest: str) -> None:
    for url in (f"http://{rest}", f"https://{rest}", rest):
        assert is_http_url(url) == httpx_accepts(url)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://example.org/hook?a=b#c", True),
        ("HTTP://user:pw@Example.ORG:8080/", True),
        ("https://bücher.example/", True),
        ("https://[::1]:8443/", True),
        ("https://127.0.0.1/", True),
        ("https://999.1.1.1/", False),  # IPv4-looking: must be an address
        ("https://[v1.fe]/", False),  # urlsplit takes IPvFuture; httpx does not
        ("https://[::1]x:80/", False),  # urlsplit finds port 80; httpx a port "x:80"
        ("https://☃.example/", False),  # not IDNA 2008
        ("https://example.org:65536/", False),
        ("https://exa\tmple.org/", False),  # urlsplit drops the tab; httpx refuses it
        (" https://example.org/", False),  # urlsplit skips the space; httpx finds no scheme
        ("ftp://example.org/", False),
        ("https:///path", False),
        ("https://" + "a" * 65536, False),
        # The change: httpx sends to this host; the old check raised IDNAError decoding it.
        ("https://xn--zz.example/", True),
    ],
)
def test_examples(url: str, accepted: bool) -> None:
    assert is_http_url(url) is accepted
    if "xn--zz" not in url:
        assert httpx_accepts(url) is accepted
