"""`kubectl matchlist`: run a watcher now and see what came of it, list watchers, show history,
import a snapshot, print the calendar feed's URL.

    kubectl matchlist run NAME [-n NS] [--wait] [--timeout 120]
    kubectl matchlist history NAME [-n NS]
    kubectl matchlist list [-n NS | -A]
    kubectl matchlist import NAME [-n NS] --file FILE [--force]
    kubectl matchlist calendar NAME [-n NS] [--base-url URL]

Installed as the console script `kubectl-matchlist`, which kubectl finds on PATH. `run` sets the
trigger annotation to a new value and, with --wait, waits for the run that value caused (its
status.lastHandledTrigger), not an older one, then prints its outcome; the exit code is 0 when
it succeeded, 1 when it failed, 2 for a usage or API error or a timeout. `import` seeds a
watcher's snapshots from a state file (exit 1 when it refuses the file or an existing snapshot).
`calendar` reads the watcher's feed token Secret with the user's own RBAC and prints the feed's
URL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from controller.adapters.kube import Kube
from controller.adapters.snapshots import (
    ConfigMapSnapshots,
    SnapshotCorrupt,
    config_map_name,
    parse_state,
)
from controller.core.diff import Snapshot
from controller.core.errors import DetectorError, InvalidSpec
from controller.core.feed import PATH_PREFIX, SUFFIX, TOKEN_KEY, token_secret_name
from controller.core.model import (
    GROUP,
    PLURAL,
    TRIGGER_ANNOTATION,
    VERSION,
    WatcherRef,
    parse_calendar,
)
from controller.core.status import RECONCILING, WatcherStatus, timestamp
from controller.runtime.logs import set_log_levels

OK, FAILED, TROUBLE = 0, 1, 2
# Touched to ask for a calendar token (any watch event makes the operator check it has one).
TOKEN_REQUEST_ANNOTATION = f"{GROUP}/calendar-token-requested"
_TOKEN_WAIT_SECONDS = 20.0


class PluginError(Exception):
    """Something the user must fix (no such watcher, no access, a timeout): one line, exit 2."""

    code = TROUBLE


class Refused(PluginError):
    """import will not go on (a file it cannot use, a snapshot already there): exit 1."""

    code = FAILED


def _api(kubeconfig: str | None, context: str | None) -> tuple[client.CustomObjectsApi, str]:
    """The API and the namespace of the current context (like kubectl's default)."""
    try:
        config.load_kube_config(config_file=kubeconfig, context=context)
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError) as exc:
        raise PluginError(f"cannot load the kubeconfig: {exc}") from None
    selected = next((c for c in contexts if c.get("name") == context), current)
    namespace = (selected.get("context") or {}).get("namespace") or "default"
    return client.CustomObjectsApi(), namespace


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        if exc.status == 404:
            raise PluginError(f"{what}: not found") from None
        raise PluginError(f"{what}: {exc.status} {exc.reason}") from None


def _get(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = _call(
        f"MatchWatcher {namespace}/{name}",
        api.get_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
    )
    return found


def _outcome(body: dict[str, Any]) -> tuple[int, str]:
    """The exit code and the lines describing the run that wrote this status."""
    raw = body.get("status") or {}
    status = WatcherStatus.parse(raw)
    ready = status.ready
    if ready is None:
        return TROUBLE, "no Ready condition yet"
    lines = [f"{'Succeeded' if ready.ready else 'Failed'}: {ready.reason}: {ready.message}"]
    pending = status.webhook.pending_changes
    if pending:
        lines.append(f"{pending} changes are pending delivery")
    return (OK if ready.ready else FAILED), "\n".join(lines)


def run(api: client.CustomObjectsApi, namespace: str, name: str, wait: bool, timeout: float) -> int:
    _get(api, namespace, name)  # a clear "not found" before anything is written
    value = f"kubectl-matchlist-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    patch = {"metadata": {"annotations": {TRIGGER_ANNOTATION: value}}}
    _call(
        f"MatchWatcher {namespace}/{name}",
        api.patch_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
        patch,
    )
    print(f"matchwatcher {namespace}/{name} triggered ({value})")
    if not wait:
        return OK
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = _get(api, namespace, name)
        if (body.get("status") or {}).get("lastHandledTrigger") == value:
            code, text = _outcome(body)
            print(text)
            return code
        time.sleep(0.5)
    raise PluginError(_no_outcome(value, body.get("status") or {}, timeout))


def _no_outcome(value: str, raw: dict[str, Any], timeout: float) -> str:
    """Why no outcome came for `value` within the timeout, as far as the status tells."""
    if raw.get("lastClaimedTrigger") != value:
        return f"no run for {value} within {timeout:g}s (is the operator running?)"
    busy = any(
        c.get("type") == RECONCILING and c.get("status") == "True"
        for c in WatcherStatus.parse(raw).other_conditions
    )
    if busy:
        return f"the run for {value} is still going after {timeout:g}s"
    # Claimed, as a slot is, and never run again: a run that took its process down would
    # otherwise do so again at every restart.
    return f"the run for {value} started but did not finish (its operator process died?): run again"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def history(api: client.CustomObjectsApi, namespace: str, name: str) -> int:
    status = WatcherStatus.parse(_get(api, namespace, name).get("status"))
    if not status.history:
        print(f"no change sets recorded for {namespace}/{name} yet")
        return OK
    rows = [("TIME", "TRIGGER", "NEW", "REMOVED", "CHANGED", "DELIVERED", "CATEGORIES", "ID")]
    rows += [
        (
            timestamp(e.time) or "",
            e.trigger,
            str(e.new),
            str(e.removed),
            str(e.changed),
            "yes" if e.delivered else "pending",
            ",".join(e.categories),
            e.delivery_id,
        )
        for e in status.history
    ]
    print(_table(rows))
    return OK


def list_watchers(api: client.CustomObjectsApi, namespace: str | None) -> int:
    if namespace is None:
        found = _call("MatchWatchers", api.list_cluster_custom_object, GROUP, VERSION, PLURAL)
    else:
        found = _call(
            "MatchWatchers", api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
        )
    rows = [("NAMESPACE", "NAME", "READY", "REASON", "NEXT RUN", "PENDING")]
    for item in found.get("items") or []:
        meta, status = item.get("metadata") or {}, WatcherStatus.parse(item.get("status"))
        ready = status.ready
        rows.append(
            (
                meta.get("namespace", ""),
                meta.get("name", ""),
                "-" if ready is None else ("True" if ready.ready else "False"),
                "-" if ready is None else ready.reason,
                timestamp(status.next_execution_time) or "-",
                str(status.webhook.pending_changes),
            )
        )
    print(_table(rows))
    return OK


IMPORT_HELP = """\
Seed the watcher's snapshots from FILE, so that its first run reports what changed since FILE
was written instead of recording a new baseline. FILE is the seed service's
previous_matches.json (the FOGIS match list as a JSON array), the service's or run-once's state
file, or a snapshot document. It becomes the webhook's snapshot (ConfigMap
NAME-matchlist-snapshot) and, when the watcher has spec.notify, the people's one
(NAME-matchlist-notified; from --notified-file, the service's previous_matches.notified.json,
when given), both owned by the watcher. A watcher that already has a snapshot is
refused unless --force. Create the MatchWatcher with `suspend: true`, import, then unsuspend.

Written with your own kubeconfig; the RBAC it needs in the watcher's namespace: get on
matchwatchers.matchlist.io; get, create and update on configmaps.
"""


def _read_state(path: Path) -> Snapshot:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise Refused(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise Refused(f"cannot import {path}: it is not UTF-8 text") from None
    try:
        return parse_state(text, str(path))
    except DetectorError as exc:
        # Not the stored snapshot's advice: deleting the file to import would lose that state.
        problem = exc.message.removesuffix("; delete it to record a new baseline")
        raise Refused(f"cannot import {path}: {problem}") from None


def _dates(snapshot: Snapshot) -> str:
    days = sorted(str(m["date"]) for m in snapshot.matches.values() if m.get("date"))
    return f"{days[0]} to {days[-1]}" if days else "no dates"


def _described(snapshot: Snapshot) -> str:
    return f"{len(snapshot.matches)} matches, {_dates(snapshot)}, revision {snapshot.revision}"


async def _seed(
    kube: Kube, ref: WatcherRef, snapshots: Mapping[str, Snapshot], force: bool
) -> list[str]:
    """Write each cursor's snapshot to its ConfigMap; refuse (before writing any) one that holds
    a snapshot of this watcher already, unless `force`. Returns the lines to print."""
    stores = [ConfigMapSnapshots(kube, ref, cursor) for cursor in snapshots]
    lines: list[str] = []
    taken: list[str] = []
    for store in stores:
        where = f"ConfigMap {ref.namespace}/{store.name}"
        try:
            existing = await store.load()
        except SnapshotCorrupt:
            taken.append(f"{where} (an unreadable snapshot)")
            continue
        if existing is not None:
            taken.append(f"{where} ({_described(existing)})")
        elif store.foreign_owner:
            lines.append(f"replacing {where}, left behind by an earlier watcher of that name")
    if taken and not force:
        raise Refused(
            f"{ref.namespace}/{ref.name} has a snapshot already: {'; '.join(taken)}; "
            "--force replaces it"
        )
    lines += [f"replacing {what}" for what in taken]
    for store, snapshot in zip(stores, snapshots.values(), strict=True):
        await store.save(snapshot)
    return lines


def import_state(
    api: client.CustomObjectsApi,
    namespace: str,
    name: str,
    *,
    path: Path,
    notified_path: Path | None,
    force: bool,
) -> int:
    snapshot = _read_state(path)
    people = None if notified_path is None else _read_state(notified_path)
    body = _get(api, namespace, name)
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    if people is not None and not spec.get("notify"):
        raise Refused(f"--notified-file: {namespace}/{name} has no spec.notify")
    ref = WatcherRef(namespace, name, str(meta.get("uid", "")))
    snapshots = {"snapshot": snapshot}
    if spec.get("notify"):
        # Without a file of their own, the webhook's list without its delivery records (they
        # concern its receiver).
        snapshots["notified"] = (
            people if people is not None else Snapshot(snapshot.matches, snapshot.revision)
        )
    kube = Kube.from_configuration(client.Configuration.get_default_copy(), workers=1)
    try:
        lines = asyncio.run(_seed(kube, ref, snapshots, force))
    except DetectorError as exc:
        raise PluginError(exc.message) from None
    finally:
        kube.close()
    lines.append(f"imported {path} into {namespace}/{name}: {_described(snapshot)}")
    lines.append(f"  webhook: ConfigMap {config_map_name(name)}")
    if "notified" in snapshots:
        source = "the same" if people is None else f"{notified_path}: {_described(people)}"
        lines.append(f"  people: ConfigMap {config_map_name(name, 'notified')}, {source}")
    print("\n".join(lines))
    if spec.get("suspend"):
        print(
            f"unsuspend it to start: kubectl patch mw {name} -n {namespace} --type merge "
            """-p '{"spec":{"suspend":false}}'"""
        )
    return OK


def calendar(api: client.CustomObjectsApi, namespace: str, name: str, base_url: str | None) -> int:
    """Print the one line a referee pastes into their calendar app."""
    body = _get(api, namespace, name)
    try:
        enabled = parse_calendar((body.get("spec") or {}).get("calendar")) is not None
    except InvalidSpec:
        enabled = False
    if not enabled:
        raise PluginError(
            f"MatchWatcher {namespace}/{name} has no calendar feed: set spec.calendar.enabled: true"
        )
    base = base_url or ((body.get("status") or {}).get("calendar") or {}).get("publicUrl")
    if not base:
        raise PluginError(
            "no base URL: pass --base-url URL (where the operator's calendar port "
            "is reached from outside), or set the chart's calendar.publicUrl"
        )
    if not base.startswith(("http://", "https://")):
        raise PluginError(f"--base-url {base!r} is not an http(s) URL")
    secret = _token_secret(api, namespace, name)
    where = f"Secret {namespace}/{token_secret_name(name)}"
    owners = {o.uid for o in (secret.metadata.owner_references or [])}
    if (body.get("metadata") or {}).get("uid") not in owners:
        raise PluginError(
            f"{where} is not this watcher's (an older namesake's?): delete it, "
            "and the operator makes a new one"
        )
    try:
        token = base64.b64decode((secret.data or {})[TOKEN_KEY]).decode("ascii")
    except (KeyError, binascii.Error, UnicodeDecodeError):
        raise PluginError(
            f"{where} has no readable key {TOKEN_KEY!r}: delete it, and the "
            "operator makes a new one"
        ) from None
    print(f"{base.rstrip('/')}{PATH_PREFIX}{namespace}/{name}/{token}{SUFFIX}")
    return OK


def _token_secret(api: client.CustomObjectsApi, namespace: str, name: str) -> Any:
    """The feed's token Secret. None yet (just enabled, or deleted to rotate the token): the
    operator makes one at the watcher's next watch event, which a touch of an annotation of
    its own is; waited for a few seconds."""
    core = client.CoreV1Api()
    where = f"Secret {namespace}/{token_secret_name(name)}"
    deadline: float | None = None
    while True:
        try:
            return core.read_namespaced_secret(token_secret_name(name), namespace)
        except ApiException as exc:
            if exc.status == 403:
                raise PluginError(f"you may not read {where} (RBAC: get on secrets)") from None
            if exc.status != 404:
                raise PluginError(f"{where}: {exc.status} {exc.reason}") from None
        if deadline is None:
            value = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
            patch = {"metadata": {"annotations": {TOKEN_REQUEST_ANNOTATION: value}}}
            _call(
                f"asking for a calendar token of MatchWatcher {namespace}/{name}",
                api.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
            )
            deadline = time.monotonic() + _TOKEN_WAIT_SECONDS
        elif time.monotonic() > deadline:
            raise PluginError(
                f"{where} not found, and the operator made none within {_TOKEN_WAIT_SECONDS:g}s "
                "(is it running, with its calendar port on?)"
            )
        time.sleep(0.5)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl matchlist", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run a MatchWatcher now")
    run_cmd.add_argument("name")
    run_cmd.add_argument("-n", "--namespace")
    run_cmd.add_argument("--wait", action="store_true", help="wait for this run and print it")
    run_cmd.add_argument("--timeout", type=float, default=120.0, help="seconds (with --wait)")
    history_cmd = commands.add_parser("history", help="the last change sets of a MatchWatcher")
    history_cmd.add_argument("name")
    history_cmd.add_argument("-n", "--namespace")
    list_cmd = commands.add_parser("list", help="MatchWatchers, readiness, next run, pending")
    scope = list_cmd.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace")
    scope.add_argument("-A", "--all-namespaces", action="store_true")
    import_cmd = commands.add_parser(
        "import",
        help="seed a MatchWatcher's snapshots from a state file (previous_matches.json)",
        description=IMPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    import_cmd.add_argument("name")
    import_cmd.add_argument("-n", "--namespace")
    import_cmd.add_argument("--file", required=True, type=Path, help="the state file to import")
    import_cmd.add_argument(
        "--notified-file",
        type=Path,
        help="the people's state (the service's previous_matches.notified.json); default: --file",
    )
    import_cmd.add_argument(
        "--force", action="store_true", help="replace a snapshot the watcher has already"
    )
    calendar_cmd = commands.add_parser("calendar", help="the URL of a MatchWatcher's calendar feed")
    calendar_cmd.add_argument("name")
    calendar_cmd.add_argument("-n", "--namespace")
    calendar_cmd.add_argument(
        "--base-url", help="where the feeds are served (default: status.calendar.publicUrl)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    set_log_levels()
    try:
        api, default_namespace = _api(args.kubeconfig, args.context)
        namespace = args.namespace or default_namespace
        if args.command == "run":
            return run(api, namespace, args.name, args.wait, args.timeout)
        if args.command == "history":
            return history(api, namespace, args.name)
        if args.command == "import":
            return import_state(
                api,
                namespace,
                args.name,
                path=args.file,
                notified_path=args.notified_file,
                force=args.force,
            )
        if args.command == "calendar":
            return calendar(api, namespace, args.name, args.base_url)
        return list_watchers(api, None if args.all_namespaces else namespace)
    except PluginError as exc:
        print(f"kubectl matchlist: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
