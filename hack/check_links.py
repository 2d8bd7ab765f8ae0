"""Check the relative links of every Markdown file in the repository, offline (run by `make lint`).

    python -m hack.check_links [ROOT]

Every `[text](path)`, `[text](path#anchor)` and `[text](#anchor)` outside code must name a file or
folder that exists and, when the target is a Markdown file, one of its headings' anchors as GitHub
makes them. Links with a scheme (https:, mailto:) are not followed. Folders whose name starts with
a dot (.venv, .cache, .git) are not searched.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+).*?\1")
# [text](target) or ![alt](target), with an optional "title".
_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class Broken:
    path: Path
    line: int
    target: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.target}: {self.why}"


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it (before numbering duplicates): the text as rendered
    (links as their text, no code or emphasis marks), lowercase, every character but letters,
    digits, `-`, `_` and spaces removed, spaces turned into `-`."""
    text = _LINK.sub(r"\1", heading).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def _lines_outside_code(text: str) -> Iterator[tuple[int, str]]:
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield number, line


def anchors(text: str) -> set[str]:
    """Every heading anchor of a Markdown text: a repeated slug gets `-1`, `-2`, ..."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in _lines_outside_code(text):
        match = _HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


@cache
def _anchors_of(path: Path) -> set[str]:
    return anchors(path.read_text(encoding="utf-8"))


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every inline link outside fenced blocks and code spans."""
    for number, line in _lines_outside_code(text):
        for match in _LINK.finditer(_CODE_SPAN.sub("", line)):
            yield number, match.group(2)


def check_file(path: Path, root: Path) -> Iterator[Broken]:
    shown = path.relative_to(root)
    text = path.read_text(encoding="utf-8")
    for line, target in links(text):
        if not target:
            yield Broken(shown, line, target, "empty link")
            continue
        if _SCHEME.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not linked.exists():
            yield Broken(shown, line, target, "no such file")
        elif (
            anchor
            and linked.suffix == ".md"
            and linked.is_file()
            and unquote(anchor) not in _anchors_of(linked)
        ):
            yield Broken(shown, line, target, f"no heading with anchor #{anchor}")


def markdown_files(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*.md")
        if not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else ".").resolve()
    broken = [problem for path in markdown_files(root) for problem in check_file(path, root)]
    for problem in broken:
        print(f"broken link: {problem}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
