"""Write docs/reference.md from what it describes, so that it cannot drift from it.

    python -m hack.reference            # (re)write docs/reference.md (make reference)
    python -m hack.reference --check    # fail with a diff when it differs (make lint)

Spec and status fields and printer columns come from the CRD's schema, reasons from the `Reason`
members' docstrings, metrics from their definitions in controller/adapters/metrics.py (read as
source, not run), operator settings from `Settings` (names, types, defaults) and the meanings in
SETTINGS below. A field, reason or setting without a description is an error.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import inspect
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from controller.core.config import PREFIX, Settings
from controller.core.reasons import Reason

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "reference.md"
CRD = ROOT / "deploy" / "crds" / "matchwatchers.matchlist.io.yaml"
REASONS = ROOT / "controller" / "core" / "reasons.py"
METRICS = ROOT / "controller" / "adapters" / "metrics.py"
FIX = "make reference"

# Operator settings, one row each: the Settings fields it covers, and what they mean. Every
# field is in exactly one row; names, types and defaults come from Settings itself.
SETTINGS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("health_host", "health_port"), "kopf liveness endpoint `/healthz`"),
    (("metrics_host", "metrics_port"), "Prometheus `/metrics`; port 0 disables"),
    (("kube_workers",), "threads for the (synchronous) Kubernetes client"),
    (
        ("http_max_connections",),
        "size of each of the two shared connection pools (FOGIS, webhooks)",
    ),
    (("fogis_timeout_seconds",), "per connect/read/write step of FOGIS requests"),
    (
        ("fogis_max_concurrent_per_host",),
        "FOGIS exchanges (login and match list of one run) in flight per FOGIS host and operator "
        "process (with `shards: N`, N times this in all); more runs queue in order of arrival, "
        "and the queue is not part of a run's time budget (4 × the timeout)",
    ),
    (
        ("fogis_logins_per_second",),
        "new logins (the requests that post credentials) per second per FOGIS host and operator "
        "process (with `shards: N`, N times this in all), bursts of as many; runs that reuse "
        "their session cookie do not wait, and the wait is not part of a run's time budget",
    ),
    (
        ("fogis_max_response_bytes",),
        "largest FOGIS answer read, counted after decompression (which happens in bounded "
        "steps); a larger one fails the run with `SourceUnavailable` and is never held whole in "
        "memory",
    ),
    (
        ("shutdown_timeout_seconds",),
        "on SIGTERM runs in progress may finish until this deadline (one for all of them); what "
        "is still going then is cut, its changes stay pending. The chart sets it from "
        "`operator.shutdownTimeoutSeconds` and the pod's grace period to that + 15 s",
    ),
    (("webhook_backoff_base_seconds", "webhook_backoff_max_seconds"), "retry backoff"),
    (("webhook_max_retry_after_seconds",), "cap on a receiver's `Retry-After`"),
    (
        ("fogis_allowed_hosts",),
        "comma-separated FOGIS hosts a `baseUrl` may name; empty: any (see "
        "[Security notes](install.md#security-notes))",
    ),
    (
        ("webhook_allowed_hosts",),
        "comma-separated hosts webhooks may be sent to; empty: any (see "
        "[Security notes](install.md#security-notes))",
    ),
    (
        ("notify_allowed_hosts",),
        "comma-separated host names notification sends may look up (`api.telegram.org`, "
        "`ntfy.sh`, an SMTP server, ...), checked for every connection a send opens; empty: any "
        "(see [Notifications to people](usage.md#notifications-to-people))",
    ),
    (
        ("calendar_host", "calendar_port"),
        "the calendar feeds (`spec.calendar`), served by every replica; port 0 disables (see "
        "[Calendar feed](usage.md#calendar-feed))",
    ),
    (
        ("calendar_public_url",),
        "where the feeds are reached from outside (an Ingress), without a token: shown in "
        "`status.calendar.publicUrl` for `kubectl matchlist calendar`; empty: not known",
    ),
    (
        ("notify_key",),
        "the key people's cursors are kept under (an HMAC of each Apprise URL), so whoever reads "
        "the `-notified` ConfigMaps cannot test guesses of a URL; the chart generates one into a "
        "Secret; empty: a built-in key, no better than a plain hash (see "
        "[Notifications to people](usage.md#notifications-to-people))",
    ),
    (
        ("lease_name",),
        "HA: replicas sharing this `coordination.k8s.io` Lease elect one leader that serves the "
        "watchers; empty: no election (one replica). The chart sets it to the Deployment's name",
    ),
    (
        ("lease_namespace",),
        "where the Lease lives (the chart sets the release namespace); needs get/create/update "
        "on `leases` there",
    ),
    (
        ("shards", "shard_index"),
        "scale-out: this process serves the watchers whose uid hashes to shard `SHARD_INDEX` (0 "
        "to `SHARDS`-1); each shard is its own Deployment with its own Lease (the chart sets both)",
    ),
    (
        ("max_concurrent_runs",),
        "watcher steps (slot claims, runs, status writes) working at once, whatever the watcher "
        "count; a run waiting on its webhook receiver (attempt, backoff, `Retry-After`) or a "
        "notification send does not count meanwhile (see [Scheduling](usage.md#scheduling))",
    ),
    (
        ("log_level",),
        "`DEBUG`, `INFO`, `WARNING`, `ERROR`; empty leaves it to kopf's flags (INFO, `--verbose` "
        "DEBUG, `-q` WARNING). The HTTP libraries (httpx, httpcore, urllib3) stay at WARNING "
        "even at DEBUG: their request lines would show URLs from Secrets",
    ),
    (
        ("allow_seconds_schedules",),
        "**test hook only**: accept 6-field cron with seconds as the 6th field (croniter's "
        "format) so integration tests need not wait whole minutes",
    ),
)

INTRO = """\
# Reference

Generated by `make reference` (`python -m hack.reference`) from the CRD
(`deploy/crds/matchwatchers.matchlist.io.yaml`), the `Reason` enum (`controller/core/reasons.py`),
the metric definitions (`controller/adapters/metrics.py`) and `Settings`
(`controller/core/config.py`): edit those, not this file; `make lint` checks it is up to date. How
the fields behave is in [usage.md](usage.md), what to watch in [operations.md](operations.md).
"""

SETTINGS_INTRO = """\
`python -m controller operator [kopf run options]` (console script `match-list-change-detector`)
serves all namespaces unless `--namespace=NAME` (repeatable) is given. Settings are environment
variables, validated at startup (an unknown `MLCD_*` name is an error, not ignored). The one
exception are the docker-link variables a kubelet injects for every Service in the namespace: a
Service named `mlcd...` yields `MLCD_..._SERVICE_HOST=<ip>`, `MLCD_..._PORT=tcp://<ip>:<port>` and
so on; these are recognised by name *and* value shape and skipped (a typo such as
`MLCD_METRIC_PORT=9090` still fails). The chart sets `enableServiceLinks: false` anyway.
"""

SETTINGS_OUTRO = """\
On SIGTERM runs in progress finish until the one shutdown deadline (what is left then is cut),
the Lease is released (a standby takes over within 2 s) and the process exits 0, inside the pod's
grace period (the chart: `operator.shutdownTimeoutSeconds` + 15 s, see
[High availability](install.md#high-availability)).
"""


class SourceError(Exception):
    """A source lacks what the reference needs (a description, a meaning)."""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --- the CRD


def _type_of(schema: Mapping[str, Any]) -> str:
    kind = str(schema.get("type", "object"))
    if kind == "array":
        return f"array of {_type_of(schema.get('items', {}))}"
    if schema.get("format") == "date-time":
        return "string (date-time)"
    return kind


def _validation(schema: Mapping[str, Any], required: bool) -> str:
    parts = ["required"] if required else []
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{value}`" for value in schema["enum"]))
    for low, high, what in (
        ("minimum", "maximum", "value"),
        ("minLength", "maxLength", "length"),
    ):
        if low in schema and high in schema:
            parts.append(f"{what} {schema[low]}–{schema[high]}")
        elif low in schema:
            parts.append(f"{what} ≥ {schema[low]}")
        elif high in schema:
            parts.append(f"{what} ≤ {schema[high]}")
    if "maxItems" in schema:
        parts.append(f"at most {schema['maxItems']} items")
    if "pattern" in schema:
        parts.append(f"matches `{schema['pattern']}`")
    parts += [rule["message"] for rule in schema.get("x-kubernetes-validations", ())]
    return "; ".join(parts)


def _fields(schema: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
    """(path, schema, required) of every field below `schema`, depth first, in schema order."""
    if schema.get("type") == "array":
        schema = schema.get("items", {})
        path += "[]"
    required = set(schema.get("required", ()))
    for name, child in schema.get("properties", {}).items():
        child_path = f"{path}.{name}"
        yield child_path, child, name in required
        yield from _fields(child, child_path)


def _plain(text: str) -> str:
    """Plain text (the CRD's descriptions, metric help) that Markdown shows as it is."""
    return re.sub(r"([\\*<>`\[\]])", r"\\\1", text)


def _scalar(value: object) -> str:
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def _described(path: str, schema: Mapping[str, Any]) -> str:
    description = schema.get("description")
    if not description:
        raise SourceError(f"{CRD.relative_to(ROOT)}: {path} has no description")
    return _plain(str(description))


def _crd_version() -> Mapping[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    version: Mapping[str, Any] = crd["spec"]["versions"][0]
    return version


def spec_section() -> str:
    schema = _crd_version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rows = [
        (
            f"`{path}`",
            _type_of(field),
            _scalar(field["default"]) if "default" in field else "",
            _validation(field, required),
            _described(path, field),
        )
        for path, field, required in _fields(schema, "spec")
    ]
    return (
        "## Spec\n\n"
        "`matchlist.io/v1alpha1`, kind `MatchWatcher` (plural `matchwatchers`, short name `mw`),\n"
        "namespaced. The API server fills in the defaults and refuses what fails the validation\n"
        "column at `kubectl apply`; the rest is checked at every run ([Reasons](#reasons)).\n\n"
        + _table(("field", "type", "default", "validation", "description"), rows)
    )


def status_section() -> str:
    schema = _crd_version()["schema"]["openAPIV3Schema"]["properties"]["status"]
    rows = [
        (f"`{path}`", _type_of(field), _described(path, field))
        for path, field, _ in _fields(schema, "status")
    ]
    return (
        "## Status\n\n"
        + _described("status", schema)
        + " Each run ends with one status patch.\n\n"
        + _table(("field", "type", "description"), rows)
    )


def columns_section() -> str:
    rows = [
        (
            column["name"].upper(),
            f"`{column['jsonPath']}`",
            "`-o wide`" if column.get("priority", 0) else "always",
        )
        for column in _crd_version()["additionalPrinterColumns"]
    ]
    return "## Columns of `kubectl get mw`\n\n" + _table(("column", "from", "shown"), rows)


# --- reasons


def reason_docs() -> dict[Reason, str]:
    """Each Reason member's docstring (the string right after its assignment)."""
    tree = ast.parse(REASONS.read_text())
    enum = next(
        node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Reason"
    )
    docs: dict[Reason, str] = {}
    for statement, following in zip(enum.body, enum.body[1:], strict=False):
        if (
            isinstance(statement, ast.Assign)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            (name,) = (target.id for target in statement.targets if isinstance(target, ast.Name))
            docs[Reason[name]] = inspect.cleandoc(following.value.value)
    missing = [reason.name for reason in Reason if reason not in docs]
    if missing:
        raise SourceError(f"{REASONS.relative_to(ROOT)}: no docstring for {', '.join(missing)}")
    return docs


def reasons_section() -> str:
    rows = [(f"`{reason}`", doc) for reason, doc in reason_docs().items()]
    return (
        "## Reasons\n\n"
        "Reasons of the `Ready`, `Stalled` and `Reconciling` conditions and of the operator's\n"
        "Events, each with what it means and what to do; a spec or run problem comes with a\n"
        "Warning Event, and the watcher recovers by itself once it is fixed.\n\n"
        + _table(("reason", "meaning"), rows)
    )


# --- metrics


_KINDS = {"Gauge": "gauge", "Counter": "counter", "Histogram": "histogram", "Info": "info"}
_SUFFIX = {"counter": "_total", "info": "_info"}


def _literal_strings(node: ast.expr) -> tuple[str, ...]:
    return tuple(str(value) for value in ast.literal_eval(node))


def metrics() -> list[tuple[str, str, tuple[str, ...], str]]:
    """(sample name, type, labels, help) of every metric metrics.py defines, in source order."""
    tree = ast.parse(METRICS.read_text())
    # An Info's labels are the keys of the dict its .info() call sets.
    info_labels = {
        id(call.func.value): tuple(str(ast.literal_eval(key)) for key in call.args[0].keys if key)
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "info"
        and isinstance(call.func.value, ast.Call)
        and isinstance(call.args[0], ast.Dict)
    }
    found: list[tuple[int, str, str, tuple[str, ...], str]] = []
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
            continue
        constructor = call.func.id
        if constructor == "WatcherFamily":
            kind = str(ast.literal_eval(call.args[2]))
            extra = _literal_strings(call.args[3]) if len(call.args) > 3 else ()
            labels: tuple[str, ...] = ("namespace", "name", *extra)
        elif constructor in _KINDS:
            kind = _KINDS[constructor]
            given = [k.value for k in call.keywords if k.arg == "labelnames"] + call.args[2:3]
            labels = _literal_strings(given[0]) if given else info_labels.get(id(call), ())
        else:
            continue
        name, help_text = (str(ast.literal_eval(arg)) for arg in call.args[:2])
        found.append((call.lineno, name + _SUFFIX.get(kind, ""), kind, labels, help_text))
    return [entry[1:] for entry in sorted(found)]


def metrics_section() -> str:
    rows = [
        (f"`{name}`", kind, ", ".join(f"`{label}`" for label in labels), _plain(help_text))
        for name, kind, labels, help_text in metrics()
    ]
    return (
        "## Metrics\n\n"
        "Served on `GET :8080/metrics` (`MLCD_METRICS_PORT`), next to prometheus-client's\n"
        "`process_*`, `python_info` and `python_gc_*`. Series labelled `namespace`, `name` belong\n"
        "to one watcher and are removed with it; histograms are operator-wide.\n\n"
        + _table(("metric", "type", "labels", "meaning"), rows)
    )


# --- settings


def shown_default(name: str, value: object) -> str:
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    shown = f"`{value}`"
    if name.endswith("_bytes") and isinstance(value, int) and value % 2**20 == 0:
        shown += f" ({value // 2**20} MiB)"
    return shown


def settings_section() -> str:
    known = {field.name: field for field in fields(Settings)}
    covered = [name for names, _ in SETTINGS for name in names]
    if sorted(covered) != sorted(known):
        extra, missing = set(covered) - set(known), set(known) - set(covered)
        raise SourceError(
            f"hack/reference.py SETTINGS does not match Settings: no meaning for "
            f"{sorted(missing)}, no such field {sorted(extra)}, or a field in two rows"
        )
    rows = []
    for names, meaning in SETTINGS:
        defaults = [shown_default(name, known[name].default) for name in names]
        rows.append(
            (
                " / ".join(f"`{PREFIX}{name.upper()}`" for name in names),
                " / ".join(defaults),
                meaning,
            )
        )
    return (
        "## Operator settings\n\n"
        + SETTINGS_INTRO
        + "\n"
        + _table(("variable", "default", "meaning"), rows)
        + "\n"
        + SETTINGS_OUTRO
    )


def render() -> str:
    sections = (
        INTRO,
        spec_section(),
        status_section(),
        columns_section(),
        reasons_section(),
        metrics_section(),
        settings_section(),
    )
    return "\n".join(sections)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.reference", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when docs/reference.md differs")
    args = parser.parse_args(argv)
    try:
        fresh = render()
    except SourceError as error:
        print(f"hack.reference: {error}", file=sys.stderr)
        return 1
    shown = str(OUTPUT.relative_to(ROOT))
    if not args.check:
        OUTPUT.write_text(fresh)
        return 0
    current = OUTPUT.read_text() if OUTPUT.exists() else ""
    if current == fresh:
        return 0
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        fresh.splitlines(keepends=True),
        f"{shown} (committed)",
        f"{shown} (generated)",
    )
    sys.stderr.writelines(diff)
    print(f"{shown} is out of date: run `{FIX}`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
