"""Fail when a JUnit report shows no tests, failures, or skipped tests.

A skipped integration test is not a passing one: `make test` (and so CI) must prove that the
suite ran against the real API server.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def check(path: str) -> str | None:
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - our own pytest output, not untrusted
    except (OSError, ET.ParseError) as exc:
        return f"{path}: no readable test report ({exc})"
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = sum(int(s.get("tests", 0)) for s in suites)
    bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    if total == 0:
        return f"{path}: no tests ran"
    if bad or skipped:
        return f"{path}: {bad} failed, {skipped} skipped of {total}"
    print(f"{path}: {total} passed, 0 failed, 0 skipped")
    return None


def main(paths: list[str]) -> int:
    problems = [p for p in map(check, paths) if p]
    for problem in problems:
        print(f"check_results: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
