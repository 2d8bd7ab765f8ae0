"""Every alert of the chart's PrometheusRule has a runbook under the anchor its runbook_url names:
in docs/operations.md (the default runbookBaseUrl) and, for one release, as a stub in README.md
(installs upgraded with --reuse-values keep the old base)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from hack.check_links import anchors

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "match-list-change-detector"


def test_each_alert_has_its_runbook_anchor_in_operations_and_a_readme_stub() -> None:
    rules = (CHART / "templates" / "prometheusrule.yaml").read_text()
    alerts = re.findall(r"- alert: (\w+)", rules)
    linked = re.findall(r"runbook_url: \{\{ \$r\.runbookBaseUrl \}\}#(\S+)", rules)
    assert alerts
    assert linked == [alert.lower() for alert in alerts]
    assert set(linked) <= anchors((ROOT / "docs" / "operations.md").read_text())
    assert set(linked) <= anchors((ROOT / "README.md").read_text())


def test_the_default_runbook_base_is_docs_operations() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    base = values["metrics"]["prometheusRule"]["runbookBaseUrl"]
    assert base.endswith("/blob/main/docs/operations.md")
