"""hack/reference.py: docs/reference.md's tables come from the sources, and a source that lacks a
description fails the generation instead of leaving a hole."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.adapters.metrics import Metrics
from controller.core.reasons import Reason
from hack import reference

UNSUFFIXED = {"counter": "_total", "info": "_info"}


def test_metrics_read_from_source_are_the_ones_the_registry_exports() -> None:
    ours = {
        name.removesuffix(UNSUFFIXED.get(kind, "")): (kind, help_text)
        for name, kind, _, help_text in reference.metrics()
    }
    exported = {
        metric.name: (metric.type, metric.documentation)
        for metric in Metrics().registry.collect()
        if metric.name.startswith("matchwatcher_")
    }
    assert ours == exported


def test_metric_labels() -> None:
    labels = {name: labels for name, _, labels, _ in reference.metrics()}
    assert labels["matchwatcher_runs_total"] == ("namespace", "name", "trigger", "result")
    assert labels["matchwatcher_run_duration_seconds"] == ("trigger",)
    assert labels["matchwatcher_fogis_waiting"] == ("kind",)
    assert labels["matchwatcher_build_info"] == ("version",)
    assert labels["matchwatcher_watchers"] == ()


def test_every_reason_has_its_docstring() -> None:
    docs = reference.reason_docs()
    assert list(docs) == list(Reason)
    assert docs[Reason.SCHEDULED].startswith("Ready=True: waiting for the next slot")
    assert "\n" not in reference.reasons_section().split("| --- | --- |\n")[1].split("\n")[0]


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("log_level", "", "empty"),
        ("metrics_host", "127.0.0.1", "`127.0.0.1`"),
        ("allow_seconds_schedules", False, "`false`"),
        ("fogis_timeout_seconds", 30.0, "`30`"),
        ("fogis_logins_per_second", 2.5, "`2.5`"),
        ("fogis_max_response_bytes", 32 * 2**20, "`33554432` (32 MiB)"),
    ],
)
def test_setting_defaults(name: str, value: object, shown: str) -> None:
    assert reference.shown_default(name, value) == shown


def test_a_setting_without_a_meaning_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reference, "SETTINGS", reference.SETTINGS[1:])
    with pytest.raises(
        reference.SourceError, match=r"no meaning for \['health_host', 'health_port'\]"
    ):
        reference.settings_section()


def test_a_field_without_a_description_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crd = tmp_path / "crd.yaml"
    crd.write_text(
        reference.CRD.read_text().replace("description: Timeout of each delivery attempt.", "")
    )
    monkeypatch.setattr(reference, "CRD", crd)
    monkeypatch.setattr(reference, "ROOT", tmp_path)
    with pytest.raises(
        reference.SourceError, match=r"spec\.webhook\.timeoutSeconds has no description"
    ):
        reference.spec_section()


def test_check_reports_a_stale_file_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "docs" / "reference.md"
    output.parent.mkdir()
    monkeypatch.setattr(reference, "OUTPUT", output)
    monkeypatch.setattr(reference, "ROOT", tmp_path)
    assert reference.main(["--check"]) == 1
    assert capsys.readouterr().err.endswith(
        "docs/reference.md is out of date: run `make reference`\n"
    )
    assert reference.main([]) == 0
    assert reference.main(["--check"]) == 0
    assert output.read_text().startswith("# Reference\n")
