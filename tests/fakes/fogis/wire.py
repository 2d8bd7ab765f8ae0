"""HTTP as the fake sees it: a parsed request, a reply with cookies and redirects, HTML."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.background import Answer


class Reply:
    """An answer with FOGIS's headers: content type, redirect, cookies, compression."""

    def __init__(
        self,
        status: int = 200,
        body: str | bytes = b"",
        *,
        content_type: str = "text/html; charset=utf-8",
        location: str | None = None,
        cookies: Mapping[str, str] | None = None,
        delay: float = 0.0,
        encoding: str | None = None,
    ) -> None:
        self.encoding = encoding  # Content-Encoding of `body`, when compressed
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.location = location
        self.cookies = dict(cookies or {})
        self.delay = delay

    def wire(self) -> Answer:
        headers = [("Content-Type", self.content_type)]
        if self.location is not None:
            headers.append(("Location", self.location))
        if self.encoding is not None:
            headers.append(("Content-Encoding", self.encoding))
        headers += [("Set-Cookie", f"{k}={v}; path=/; HttpOnly") for k, v in self.cookies.items()]
        return Answer(self.status, headers, self.body, self.delay)


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # lower-cased, without a trailing slash
    query: Mapping[str, str]
    headers: Mapping[str, str]  # names lower-cased
    cookies: Mapping[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        pairs = parse_qs(self.body.decode(), keep_blank_values=True)
        return {name: values[0] for name, values in pairs.items()}


def json_reply(document: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(document, ensure_ascii=False), content_type="application/json")


def page(title: str, form: str, note: str = "") -> str:
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body>"
        f"<h1>{title}</h1><p class='error'>{html.escape(note)}</p>{form}</body></html>"
    )


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}" />'
