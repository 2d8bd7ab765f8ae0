"""hack/check_links.py: GitHub's heading anchors, and the broken links it finds."""

from __future__ import annotations

from pathlib import Path

import pytest

from hack.check_links import Broken, anchors, check_file, main, slug


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("MatchWatcherNotReady", "matchwatchernotready"),
        ("Install on a cluster", "install-on-a-cluster"),
        ("The chaos soak: `make soak`", "the-chaos-soak-make-soak"),
        ("`kubectl matchlist`", "kubectl-matchlist"),
        ("The MatchWatcher (matchlist.io/v1alpha1)", "the-matchwatcher-matchlistiov1alpha1"),
        ("Without a cluster: run-once", "without-a-cluster-run-once"),
        ("snake_case and kebab-case", "snake_case-and-kebab-case"),
        ("A \u2013 B", "a--b"),  # an en dash
        ("**Bold** and [a link](other.md)", "bold-and-a-link"),
        ("Göteborg 2026", "göteborg-2026"),
    ],
)
def test_slug_follows_github(heading: str, expected: str) -> None:
    assert slug(heading) == expected


def test_repeated_headings_are_numbered_and_code_is_not_a_heading() -> None:
    text = "# Notes\n## Run\n## Run\n```sh\n# Run\n```\n### Run\n#no space\n"
    assert anchors(text) == {"notes", "run", "run-1", "run-2"}


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_finds_missing_files_and_anchors(tmp_path: Path) -> None:
    write(tmp_path, "docs/ops.md", "# Ops\n## Alerts\n")
    write(tmp_path, "charts/c/values.yaml", "")
    readme = write(
        tmp_path,
        "README.md",
        "# Top\n"
        "[ok](docs/ops.md#alerts) [ok](charts/c/values.yaml) [ok](charts/c) [ok](#top)\n"
        "[ok](https://example.com/missing.md#nothing) [ok](mailto:a@example.com)\n"
        "`[in code](nowhere.md)`\n"
        "```\n[in a block](nowhere.md)\n```\n"
        "[gone](docs/missing.md) [bad anchor](docs/ops.md#runbooks)\n"
        "[bad own anchor](#bottom) ![image](img.png)\n",
    )
    assert list(check_file(readme, tmp_path)) == [
        Broken(Path("README.md"), 8, "docs/missing.md", "no such file"),
        Broken(Path("README.md"), 8, "docs/ops.md#runbooks", "no heading with anchor #runbooks"),
        Broken(Path("README.md"), 9, "#bottom", "no heading with anchor #bottom"),
        Broken(Path("README.md"), 9, "img.png", "no such file"),
    ]


def test_links_resolve_from_the_linking_file(tmp_path: Path) -> None:
    write(tmp_path, "README.md", "# Top\n")
    write(tmp_path, "charts/c/values.yaml", "")
    ops = write(
        tmp_path, "docs/ops.md", "[up](../README.md#top) [chart](../charts/c/values.yaml)\n"
    )
    assert list(check_file(ops, tmp_path)) == []


def test_main_reports_and_fails_skipping_dot_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, ".venv/lib/pkg/README.md", "[gone](nowhere.md)\n")
    assert main([str(tmp_path)]) == 0
    write(tmp_path, "docs/a.md", "[gone](nowhere.md)\n")
    assert main([str(tmp_path)]) == 1
    assert capsys.readouterr().err == "broken link: docs/a.md:1: nowhere.md: no such file\n"
