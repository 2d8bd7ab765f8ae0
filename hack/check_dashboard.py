"""Check the Grafana dashboard the chart ships (called by hack/chart-check).

    python hack/check_dashboard.py RENDERED_CONFIGMAP.yaml RULES_OUT.yaml

Fails when a query names a metric the operator does not export (a typo, or a renamed metric),
and writes every query as a recording rule to RULES_OUT.yaml, so that `promtool check rules`
parses the PromQL (Grafana's `$job` variable replaced by a match-all regex).
"""

from __future__ import annotations

import json
import re
import sys

import yaml

from controller.adapters.metrics import Metrics

# Names a histogram or counter family has in Prometheus besides its own.
_SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_info")
_METRIC = re.compile(r"\b((?:matchwatcher|process|python)_\w+)")


def exported() -> set[str]:
    families = {metric.name for metric in Metrics().registry.collect()}
    return {family + suffix for family in families for suffix in _SUFFIXES}


def main(config_map_path: str, rules_path: str) -> int:
    with open(config_map_path) as rendered:
        config_map = yaml.safe_load(rendered)
    dashboard = json.loads(next(iter(config_map["data"].values())))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    unknown = {name for expr in exprs for name in _METRIC.findall(expr)} - exported()
    if unknown:
        print(f"dashboard queries unknown metrics: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 1
    rules = [
        {"record": f"dashboard:query{index}", "expr": expr.replace("$job", ".*")}
        for index, expr in enumerate(exprs)
    ]
    with open(rules_path, "w") as out:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
