"""The service's state in files (RUN_MODE=service): what the operator keeps in the cluster.

The scheduler's status lives in one JSON file with a version, so its compare-and-swap claims work
as against the API server; the runner's Secrets come from the environment and its snapshots are
files (FileSnapshots: the webhook's is PREVIOUS_MATCHES_FILE). Every write is atomic: a temp file
in the same directory, fsync, rename, fsync of the directory, so a kill at any instant leaves the
old file or the new one, never half of one.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.adapters.kube import SecretData
from controller.adapters.snapshots import FileSnapshots, write_atomic
from controller.core.errors import DetectorError, SecretNotFound, StatusConflict, clip
from controller.core.jsontext import canonical_json, load_json
from controller.core.model import WatcherRef
from controller.core.status import parse_timestamp, timestamp

STATUS_FORMAT = 1


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch, as the API server applies a status patch: null removes a
    key, objects merge, anything else replaces."""
    merged = copy.deepcopy(dict(target))
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping):
            current = merged.get(key)
            merged[key] = merge_patch(current if isinstance(current, Mapping) else {}, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class FileStatus:
    """The scheduler's Cluster (controller/runtime/scheduler.py) for the one watcher of the
    service: its status in a file, with a version every write advances."""

    def __init__(
        self, path: Path, status: Mapping[str, Any], version: int, created: datetime, salt: str
    ) -> None:
        self.path = path
        self.created = created  # the first start: no slot before it counts as missed
        # Keys the versions of the environment's Secrets (EnvBacking), which land in status.
        self.salt = salt
        self._status = dict(status)
        self._version = version
        # Why the last write failed (None: it did not): the service cannot do its job then.
        self.write_error: str | None = None
        self.last_event: dict[str, str] | None = None

    @classmethod
    def open(cls, path: Path, now: datetime) -> FileStatus:
        """The status file's state, or a new one written at once (which proves the directory
        writable). DetectorError for a file that is not ours, which is left as it is."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            fresh = cls(path, {}, 0, now, secrets.token_hex(16))
            fresh._store(fresh._status, 0)
            return fresh
        except (OSError, UnicodeDecodeError) as exc:
            raise DetectorError(f"cannot read the status file {path}: {exc}") from None
        try:
            document = load_json(text)
            if not isinstance(document, dict) or document.get("format") != STATUS_FORMAT:
                raise ValueError(f"not a format {STATUS_FORMAT} status document")
            status, version = document.get("status"), document.get("resourceVersion")
            created, salt = parse_timestamp(document.get("created")), document.get("salt")
            if not isinstance(status, dict) or not isinstance(version, int) or created is None:
                raise ValueError("status, resourceVersion or created is missing")
            if not isinstance(salt, str) or not salt:
                raise ValueError("salt is missing")
        except (ValueError, TypeError, RecursionError) as exc:
            raise DetectorError(
                f"the status file {path} is unreadable ({clip(str(exc), 200)}); it was left "
                "as it is: fix it, or delete it to start over (the snapshot stays)"
            ) from None
        return cls(path, status, version, created, salt)

    @property
    def status(self) -> dict[str, Any]:
        return copy.deepcopy(self._status)

    @property
    def version(self) -> str:
        return str(self._version)

    def _store(self, status: Mapping[str, Any], version: int) -> None:
        document = {
            "format": STATUS_FORMAT,
            "created": timestamp(self.created),
            "resourceVersion": version,
            "salt": self.salt,
            "status": status,
        }
        try:
            write_atomic(self.path, canonical_json(document))
        except OSError as exc:
            self.write_error = f"cannot write {self.path}: {exc.strerror}"
            raise DetectorError(self.write_error) from None
        self.write_error = None

    async def patch_status(
        self, ref: WatcherRef, status: Mapping[str, Any], resource_version: str | None = None
    ) -> tuple[dict[str, Any], str]:
        if resource_version is not None and resource_version != self.version:
            raise StatusConflict(f"{self.path} changed since version {resource_version}")
        merged = merge_patch(self._status, status)
        await asyncio.to_thread(self._store, merged, self._version + 1)
        self._status, self._version = merged, self._version + 1
        return self.status, self.version

    async def read_status(self, ref: WatcherRef) -> tuple[dict[str, Any], str]:
        return self.status, self.version

    async def post_event(self, ref: WatcherRef, type_: str, reason: str, message: str) -> None:
        """An Event has no place here: the scheduler logged it already; /status shows it."""
        self.last_event = {"type": type_, "reason": reason, "message": message}


def _version(values: Mapping[str, str], salt: str) -> str:
    """A version of a Secret's values, so the login backoff holds for these credentials only
    (a changed password is retried at once); keyed by the status file's salt, since it lands
    in the status, which must not let anyone test guesses of the password."""
    material = canonical_json(dict(values)).encode()
    return hmac.new(salt.encode(), material, hashlib.sha256).hexdigest()[:16]


class EnvBacking:
    """The service's backing of runs (controller/runtime/runner.py's Backing): Secrets by name
    from the environment (FOGIS_*, WEBHOOK_*, NOTIFY_URLS), snapshot files by cursor."""

    def __init__(
        self, by_name: Mapping[str, Mapping[str, str]], files: Mapping[str, Path], salt: str
    ) -> None:
        self._secrets = {
            name: SecretData(dict(values), _version(values, salt), name)
            for name, values in by_name.items()
        }
        self._files = dict(files)

    async def read_secret(self, namespace: str, name: str, *, purpose: str) -> SecretData:
        secret = self._secrets.get(name)
        if secret is None:
            raise SecretNotFound(f"{purpose}: {name} is not set")
        return secret

    def snapshots(self, ref: WatcherRef, cursor: str) -> FileSnapshots:
        return FileSnapshots(self._files[cursor])
