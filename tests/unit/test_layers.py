"""The layer contracts (.importlinter, run by `make lint`) bite: on a copy of the package, one
`import kopf` added to a core module makes lint-imports fail, and the copy as it is passes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on `tree` (a copy of controller/ beside .importlinter): it puts its working
    directory first on sys.path, so the copy is analysed, not the installed package."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, check=False
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "controller", tmp_path / "controller", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def test_the_package_as_it_is_keeps_the_contracts(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_kopf_in_core_breaks_the_contracts(tree: Path) -> None:
    module = tree / "controller" / "core" / "sharding.py"
    module.write_text(module.read_text() + "\nimport kopf  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "controller.core.sharding -> kopf" in result.stdout
    assert "BROKEN" in result.stdout
