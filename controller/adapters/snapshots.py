"""Where the last accepted snapshot lives: a ConfigMap per watcher, or a file for run-once and
the service.

Both stores hold the same document (Snapshot.to_json), so a snapshot taken by run-once could be
loaded into a ConfigMap and vice versa; a file may also be the seed detector's own state
(parse_state).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from controller.core.diff import Snapshot, normalise_all
from controller.core.errors import ConfigMapConflict, DetectorError, clip
from controller.core.jsontext import load_json
from controller.core.model import WatcherRef
from controller.core.reasons import Reason

if TYPE_CHECKING:  # run-once uses FileSnapshots only and must not load the Kubernetes client
    from controller.adapters.kube import Kube, SecretData

# gzip: a snapshot is ~500 bytes a match as JSON and ConfigMaps stop at 1 MiB; compressed, a
# watcher can hold ten times more matches than a plain ConfigMap would allow.
DATA_KEY = "snapshot.json.gz"
WATCHER_LABEL = "matchlist.io/watcher"
MANAGED_BY = {"app.kubernetes.io/managed-by": "match-list-change-detector"}
# A ConfigMap holds at most 1 MiB, about 20 MiB of our JSON once decompressed. Anything that
# inflates beyond this is not ours (a gzip bomb from whoever may edit ConfigMaps there).
MAX_SNAPSHOT_JSON_BYTES = 64 * 1024 * 1024


# ConfigMaps stop at 1 MiB (data, metadata and encoding together): keep a margin.
MAX_STORED_BYTES = 900 * 1024


class SnapshotCorrupt(DetectorError):
    reason = Reason.SNAPSHOT_CORRUPT


class SnapshotTooLarge(DetectorError):
    reason = Reason.SNAPSHOT_TOO_LARGE


class SnapshotConflict(DetectorError):
    reason = Reason.SNAPSHOT_CONFLICT


class SnapshotStore(Protocol):
    async def load(self) -> Snapshot | None: ...

    async def check(self, snapshot: Snapshot) -> None:
        """Raise SnapshotTooLarge if `snapshot` could not be saved: called before delivering,
        so a receiver is never sent a change that then fails to be recorded (and is redelivered
        for ever)."""

    async def save(self, snapshot: Snapshot) -> None: ...


class NamedSnapshots(SnapshotStore, Protocol):
    """A store a run can name in a BaselineReset Event."""

    where: str  # "ConfigMap NAME", or "file PATH"
    foreign_owner: bool  # load() found a snapshot left by another watcher (so: none)


def _short(value: str, limit: int) -> str:
    """`value` if it fits, else a prefix plus a hash, so names stay unique and within limits."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{value[: limit - 11]}-{digest}"


def config_map_name(watcher_name: str, cursor: str = "snapshot") -> str:
    return _short(f"{watcher_name}-matchlist-{cursor}", 253)


def _encode(snapshot: Snapshot) -> bytes:
    return gzip.compress(snapshot.to_json().encode(), mtime=0)


def _gunzip(data: bytes, limit: int = MAX_SNAPSHOT_JSON_BYTES) -> bytes:
    """gzip-decompress at most `limit` bytes; OSError for anything that is not that."""
    decompressor = zlib.decompressobj(wbits=31)  # 31: gzip framing
    try:
        out = decompressor.decompress(data, limit + 1)
    except zlib.error as exc:
        raise OSError(str(exc)) from None
    if len(out) > limit:
        raise OSError(f"it inflates beyond {limit // (1024 * 1024)} MiB")
    if not decompressor.eof:
        raise OSError("truncated")
    return out


def _decode(data: bytes, where: str) -> Snapshot:
    """The stored bytes to a Snapshot (CPU-heavy for big lists: called off the event loop)."""
    try:
        text = _gunzip(data).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotCorrupt(
            f"snapshot in {where} is not gzip-compressed JSON ({exc}); delete it to record a "
            "new baseline"
        ) from None
    return _parse(text, where)


def _parse(text: str, where: str) -> Snapshot:
    try:
        return Snapshot.from_json(text)
    except ValueError as exc:
        raise _corrupt(where, str(exc)) from None


def _corrupt(where: str, problem: str) -> SnapshotCorrupt:
    return SnapshotCorrupt(
        f"snapshot in {where} is unreadable ({clip(problem, 300)}); delete it to record a "
        "new baseline"
    )


def parse_state(text: str, where: str) -> Snapshot:
    """A state file: our snapshot document, or the seed detector's previous_matches.json (the
    raw FOGIS match list as a JSON array), so a seed user's first run compares against their
    last seed run instead of recording a new baseline. SnapshotCorrupt for anything else."""
    if not text.lstrip().startswith("["):
        return _parse(text, where)
    try:
        records = load_json(text)
    except (TypeError, ValueError) as exc:
        raise _corrupt(where, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise _corrupt(where, "not valid JSON: nested too deeply") from None
    matches = normalise_all(records)
    if records and not matches:
        raise _corrupt(where, f"none of its {len(records)} entries is a match with a matchid")
    # Revision 0: the seed kept none, and delivery ids of its successor's first run start there.
    return Snapshot(matches)


class ConfigMapSnapshots:
    """A snapshot ConfigMap of one watcher, in the watcher's namespace, owned by it. `cursor`
    names whose last accepted list it is: "snapshot" for the webhook's, "notified" for the
    people's (spec.notify), so neither holds the other back."""

    def __init__(self, kube: Kube, ref: WatcherRef, cursor: str = "snapshot") -> None:
        self._kube = kube
        self._ref = ref
        self.name = config_map_name(ref.name, cursor)
        self.where = f"ConfigMap {self.name}"
        # The resourceVersion that load() saw (None: no ConfigMap), so save() never overwrites
        # a snapshot written in between (a second replica in a leader or shard handover, a restart
        # racing a slow write) with one computed from an older state.
        self._version: str | None = None
        # load() found a ConfigMap of ours owned by another uid (a re-created or restored watcher)
        self.foreign_owner = False

    async def load(self) -> Snapshot | None:
        stored = await self._kube.read_config_map(self._ref.namespace, self.name)
        self._version = None if stored is None else stored.resource_version
        self.foreign_owner = stored is not None and self._ref.uid not in stored.owner_uids
        # Another owner: left behind by a deleted watcher of the same name (garbage collection
        # is not instant); this watcher has no snapshot yet and records its own baseline.
        if stored is None or DATA_KEY not in stored.data or self._ref.uid not in stored.owner_uids:
            return None
        where = f"ConfigMap {self._ref.namespace}/{self.name}"
        return await asyncio.to_thread(_decode, stored.data[DATA_KEY], where)

    async def check(self, snapshot: Snapshot) -> None:
        await self._encoded(snapshot)

    async def save(self, snapshot: Snapshot) -> None:
        labels = {**MANAGED_BY, WATCHER_LABEL: _short(self._ref.name, 63)}
        data = await self._encoded(snapshot)
        try:
            # The version written becomes ours: a write-ahead then its final save chain.
            self._version = await self._kube.write_config_map(
                self._ref, self.name, {DATA_KEY: data}, labels, self._version
            )
        except ConfigMapConflict:
            raise SnapshotConflict(
                f"the snapshot in ConfigMap {self._ref.namespace}/{self.name} was written by "
                "someone else during this run (another replica?); not overwritten: the next run "
                "compares against it"
            ) from None

    async def _encoded(self, snapshot: Snapshot) -> bytes:
        data = await asyncio.to_thread(_encode, snapshot)
        if len(data) > MAX_STORED_BYTES:
            raise SnapshotTooLarge(
                f"the match list ({len(snapshot.matches)} matches) is {len(data) // 1024} KiB "
                f"compressed, more than a snapshot ConfigMap holds ({MAX_STORED_BYTES // 1024} "
                "KiB); nothing was delivered: narrow the window (daysBack, daysAhead)"
            )
        return data


class KubeBacking:
    """The operator's backing of runs (controller/runtime/runner.py's Backing): Secrets and
    snapshot ConfigMaps in the watcher's namespace."""

    def __init__(self, kube: Kube) -> None:
        self._kube = kube

    async def read_secret(self, namespace: str, name: str, *, purpose: str) -> SecretData:
        return await self._kube.read_secret(namespace, name, purpose=purpose)

    def snapshots(self, ref: WatcherRef, cursor: str) -> ConfigMapSnapshots:
        return ConfigMapSnapshots(self._kube, ref, cursor)


class FileSnapshots:
    """run-once's and the service's store: a JSON file (the old service's PREVIOUS_MATCHES_FILE),
    in our format or the seed's (parse_state); it is rewritten in ours."""

    foreign_owner = False  # a file has no owner

    def __init__(self, path: Path) -> None:
        self._path = path
        self.where = f"file {path}"

    async def load(self) -> Snapshot | None:
        return await asyncio.to_thread(self._load)

    async def check(self, snapshot: Snapshot) -> None:
        """A file takes any size."""

    async def save(self, snapshot: Snapshot) -> None:
        await asyncio.to_thread(self._write, snapshot)

    def _load(self) -> Snapshot | None:
        """In a thread: reading and parsing a big list is I/O and CPU."""
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DetectorError(f"cannot read {self._path}: {exc.strerror}") from None
        return parse_state(text, str(self._path))

    def _write(self, snapshot: Snapshot) -> None:
        """In a thread, encoding included: a crash never leaves half a snapshot behind."""
        text = snapshot.to_json()
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self._path, text)
        except OSError as exc:
            raise DetectorError(f"cannot write {self._path}: {exc.strerror}") from None


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text`, durably; OSError when the directory cannot be written."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the directory is.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
