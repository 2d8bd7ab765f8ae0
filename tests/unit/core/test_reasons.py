"""docs/reference.md's reason table, generated from the `Reason` docstrings, lists every reason."""

from __future__ import annotations

import re
from pathlib import Path

from controller.core.reasons import Reason

REFERENCE = Path(__file__).resolve().parents[3] / "docs" / "reference.md"


def test_reference_table_mirrors_the_reason_enum() -> None:
    text = REFERENCE.read_text()
    table = text[text.index("| reason | meaning |") :]
    table = table[: table.index("\n\n")]
    # The first column of each row: one or more `Reason` names.
    named = {
        name
        for row in table.splitlines()[2:]
        for name in re.findall(r"`([A-Za-z]+)`", row.split("|")[1])
    }
    # ... and names given in the meaning column of the Succeeded row (its Events).
    named |= {name for name in re.findall(r"`([A-Z][A-Za-z]+)`", table) if name in set(Reason)}
    assert named == {str(reason) for reason in Reason}
