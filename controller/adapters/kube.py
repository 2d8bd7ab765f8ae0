"""Kubernetes adapter: the few API calls the run path makes, off the event loop.

The official client is synchronous, so every call runs in a bounded thread pool of its own
(never the loop's default executor, which other libraries share), and the Lease calls in one
more, so that a storm of status writes never holds up a renewal. ApiException becomes our own
errors; messages name objects, never their contents.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import functools
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from controller.core.errors import (
    AlreadyExists,
    ConfigMapConflict,
    DetectorError,
    Forbidden,
    KubernetesError,
    LeaseConflict,
    SecretNotFound,
    StatusConflict,
    WatcherGone,
    clip,
)
from controller.core.lease import LeaseRecord
from controller.core.model import GROUP, KIND, PLURAL, VERSION, WatcherRef

T = TypeVar("T")
# (connect, read) seconds for every API call: a half-open connection must not hold one of the
# few worker threads (and with it every watcher's status writes) for ever.
_REQUEST_TIMEOUT = (5, 30)
# The Lease calls' (connect, read) seconds: below controller/runtime/leadership.py's renew
# deadline (10 s). The election abandons a call at that deadline, but its thread goes on until
# the request times out; this frees the thread for the next round soon after.
_LEASE_REQUEST_TIMEOUT = (2, 4)
# A list of objects' metadata only (no spec, no status): what telling deleted watchers needs.
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
# Events name us, and the pod (HOSTNAME) that wrote them.
EVENT_COMPONENT = "match-list-change-detector"
_INSTANCE = os.environ.get("HOSTNAME", "local")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SecretData:
    values: dict[str, str] = field(repr=False)  # decoded: never shown
    version: str  # resourceVersion: tells whether the Secret changed since
    uid: str = ""  # with `version`, names what the login backoff is for (a re-created Secret)
    owner_uids: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredConfigMap:
    data: dict[str, bytes]  # data and binaryData together
    owner_uids: tuple[str, ...]
    resource_version: str = ""


class Kube:
    def __init__(self, api: client.ApiClient, lease_api: client.ApiClient, workers: int) -> None:
        self._api, self._lease_api = api, lease_api
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._coordination = client.CoordinationV1Api(lease_api)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        # One thread: the election makes one call at a time.
        self._lease_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kube-lease")

    @classmethod
    def from_environment(cls, workers: int) -> Kube:
        """In-cluster config when running in a pod, else the kubeconfig (KUBECONFIG)."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            config.load_kube_config(client_configuration=configuration)
        return cls.from_configuration(configuration, workers)

    @classmethod
    def from_configuration(cls, configuration: client.Configuration, workers: int) -> Kube:
        # The Lease calls' own client: a connection of their own, and no urllib3 retries (by
        # default a timed-out PUT or GET is sent up to 3 times more, keeping the call's thread
        # 4 request timeouts long, past the renew deadline); the next round retries instead.
        leases = copy.deepcopy(configuration)
        leases.retries = False
        leases.connection_pool_maxsize = 1
        # One pooled connection per worker thread, so threads never wait for a socket.
        configuration.connection_pool_maxsize = workers
        return cls(client.ApiClient(configuration), client.ApiClient(leases), workers)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._lease_pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()
        self._lease_api.close()

    async def _call(
        self,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        errors: Mapping[int, DetectorError] | None = None,
        absent_ok: bool = False,
        lease: bool = False,
    ) -> T | None:
        """Run a client call in the pool (a Lease call in the Lease pool); None for a 404 when
        `absent_ok`, else our own error (from `errors` by HTTP status, or a KubernetesError
        naming `what`)."""
        loop = asyncio.get_running_loop()
        pool, timeout = (
            (self._lease_pool, _LEASE_REQUEST_TIMEOUT) if lease else (self._pool, _REQUEST_TIMEOUT)
        )
        try:
            call = functools.partial(fn, *args, _request_timeout=timeout)
            return await loop.run_in_executor(pool, call)
        except ApiException as exc:
            if exc.status == 404 and absent_ok:
                return None
            known = (errors or {}).get(exc.status)
            if known is not None:
                raise known from None
            raise KubernetesError(f"{what}: {exc.status} {exc.reason}".strip()) from None
        except HTTPError as exc:
            raise KubernetesError(f"{what}: {type(exc).__name__}") from None

    async def read_secret(self, namespace: str, name: str, *, purpose: str) -> SecretData:
        """Decoded data of a Secret in the watcher's own namespace, with its version."""
        where = f"{purpose} Secret {namespace}/{name}"
        secret = await self._call(
            f"reading {where}",
            self._core.read_namespaced_secret,
            name,
            namespace,
            errors={
                404: SecretNotFound(f"{where} not found"),
                403: SecretNotFound(f"the operator may not read {where} (RBAC)"),
            },
        )
        return _secret_data(secret, where)

    async def find_secret(self, namespace: str, name: str, *, purpose: str) -> SecretData | None:
        """Like read_secret, but None when the Secret does not exist."""
        where = f"{purpose} Secret {namespace}/{name}"
        secret = await self._call(
            f"reading {where}",
            self._core.read_namespaced_secret,
            name,
            namespace,
            errors={403: Forbidden(f"the operator may not read {where} (RBAC)")},
            absent_ok=True,
        )
        return None if secret is None else _secret_data(secret, where)

    async def create_owned_secret(
        self, ref: WatcherRef, name: str, values: Mapping[str, str], labels: Mapping[str, str]
    ) -> bool:
        """Create an Opaque Secret owned by the watcher (garbage-collected with it); False when
        one of that name exists already (another replica made it first)."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": ref.namespace,
                "labels": dict(labels),
                "ownerReferences": [_owner(ref)],
            },
            "stringData": dict(values),
        }
        what = f"creating Secret {ref.namespace}/{name}"
        exists = AlreadyExists(f"Secret {ref.namespace}/{name} exists")
        try:
            await self._call(
                what,
                self._core.create_namespaced_secret,
                ref.namespace,
                body,
                errors={409: exists, 403: Forbidden(f"{what}: not allowed (RBAC)")},
            )
        except AlreadyExists:
            return False
        return True

    async def patch_status(
        self, ref: WatcherRef, status: Mapping[str, Any], resource_version: str | None = None
    ) -> tuple[dict[str, Any], str]:
        """One merge patch of the status subresource; returns the new status and the object's
        new version. With `resource_version` it applies only to that version of the object
        (StatusConflict otherwise): a compare-and-swap."""
        what = f"patching status of {ref.namespace}/{ref.name}"
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        result = await self._call(
            what,
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            ref.namespace,
            PLURAL,
            ref.name,
            body,
            errors={
                409: StatusConflict(f"{what}: the object changed meanwhile"),
                404: WatcherGone(f"{what}: it no longer exists"),
            },
        )
        obj: dict[str, Any] = result if isinstance(result, dict) else {}
        new_status: dict[str, Any] = obj.get("status") or {}
        return new_status, str((obj.get("metadata") or {}).get("resourceVersion") or "")

    async def read_status(self, ref: WatcherRef) -> tuple[dict[str, Any], str]:
        """The watcher's status as the API server has it now, and the object's version."""
        what = f"reading {ref.namespace}/{ref.name}"
        result = await self._call(
            what,
            self._custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            ref.namespace,
            PLURAL,
            ref.name,
            errors={404: WatcherGone(f"{what}: it no longer exists")},
        )
        obj: dict[str, Any] = result if isinstance(result, dict) else {}
        status: dict[str, Any] = obj.get("status") or {}
        return status, str((obj.get("metadata") or {}).get("resourceVersion") or "")

    async def watcher_uids(self, namespace: str | None, *, page: int = 500) -> set[str]:
        """The uid of every MatchWatcher (in `namespace`, else in every namespace) as the API
        server has them now: metadata only, `page` objects per request, one consistent
        snapshot (continued pages are read at the first one's version)."""
        where = f"in {namespace}" if namespace else "in all namespaces"
        what = f"listing MatchWatchers {where}"
        uids: set[str] = set()
        token: str | None = None
        while True:
            query = {"limit": page, "_continue": token, "_headers": {"Accept": _METADATA_LIST}}
            if namespace:
                call = functools.partial(
                    self._custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    **query,
                )
            else:
                call = functools.partial(
                    self._custom.list_cluster_custom_object, GROUP, VERSION, PLURAL, **query
                )
            listing = await self._call(
                what, call, errors={403: Forbidden(f"{what}: not allowed (RBAC)")}
            )
            body: dict[str, Any] = listing if isinstance(listing, dict) else {}
            uids.update(
                uid
                for item in body.get("items") or []
                if (uid := (item.get("metadata") or {}).get("uid"))
            )
            token = (body.get("metadata") or {}).get("continue") or None
            if token is None:
                return uids

    async def post_event(self, ref: WatcherRef, type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about the watcher, written before this returns (kopf's own posting
        queue is dropped at shutdown, losing the Events of runs that finish while stopping).
        A refused Event is logged, never raised: it must not fail the run it describes."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
            },
            "type": type_,
            "reason": reason,
            "message": clip(message),
            "source": {"component": EVENT_COMPONENT, "host": _INSTANCE},
            "reportingComponent": EVENT_COMPONENT,
            "reportingInstance": _INSTANCE,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._call(
                f"posting an Event about {ref.namespace}/{ref.name}",
                self._core.create_namespaced_event,
                ref.namespace,
                body,
            )
        except DetectorError as exc:
            log.warning("%s (reason %s was not recorded)", exc.message, reason)

    async def read_config_map(self, namespace: str, name: str) -> StoredConfigMap | None:
        """A ConfigMap's data (binaryData decoded) and owners, or None when it does not exist."""
        cm = await self._call(
            f"reading ConfigMap {namespace}/{name}",
            self._core.read_namespaced_config_map,
            name,
            namespace,
            absent_ok=True,
        )
        if cm is None:
            return None
        merged = {key: value.encode() for key, value in (cm.data or {}).items()}
        for key, value in (cm.binary_data or {}).items():
            try:
                merged[key] = base64.b64decode(value)
            except binascii.Error:
                raise KubernetesError(
                    f"ConfigMap {namespace}/{name}: {key} is not base64"
                ) from None
        owners = tuple(ref.uid for ref in (cm.metadata.owner_references or []))
        return StoredConfigMap(merged, owners, cm.metadata.resource_version or "")

    async def write_config_map(
        self,
        ref: WatcherRef,
        name: str,
        binary_data: Mapping[str, bytes],
        labels: Mapping[str, str],
        resource_version: str | None,
    ) -> str:
        """Create the ConfigMap (`resource_version` None: it did not exist when read) or replace
        the version that was read, owned by the watcher so it is garbage-collected. Anything
        written in between makes this raise ConfigMapConflict instead of overwriting it.
        Returns the version written, for the writer's next write."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": ref.namespace,
                "labels": dict(labels),
                "ownerReferences": [_owner(ref)],
            },
            "binaryData": {k: base64.b64encode(v).decode() for k, v in binary_data.items()},
        }
        what = f"writing ConfigMap {ref.namespace}/{name}"
        conflict = {409: ConfigMapConflict(f"ConfigMap {ref.namespace}/{name} changed meanwhile")}
        if resource_version is None:
            created = await self._call(
                what, self._core.create_namespaced_config_map, ref.namespace, body, errors=conflict
            )
            if created is None:
                raise KubernetesError(f"{what}: the API server returned no object")
            return str(created.metadata.resource_version)
        body["metadata"]["resourceVersion"] = resource_version
        replaced = await self._call(
            what,
            self._core.replace_namespaced_config_map,
            name,
            ref.namespace,
            body,
            errors=conflict,
            absent_ok=True,
        )
        if replaced is None:  # deleted since it was read: someone else's move, not ours to undo
            raise conflict[409]
        return str(replaced.metadata.resource_version)

    async def read_lease(self, namespace: str, name: str) -> tuple[LeaseRecord, str] | None:
        """The leader-election Lease and its version, or None when it does not exist."""
        lease = await self._call(
            f"reading Lease {namespace}/{name}",
            self._coordination.read_namespaced_lease,
            name,
            namespace,
            absent_ok=True,
            lease=True,
        )
        if lease is None:
            return None
        spec = lease.spec
        record = LeaseRecord(
            holder=spec.holder_identity or None,
            lease_seconds=int(spec.lease_duration_seconds or 0),
            acquired=spec.acquire_time,
            renewed=spec.renew_time,
            transitions=int(spec.lease_transitions or 0),
        )
        return record, str(lease.metadata.resource_version)

    async def write_lease(
        self, namespace: str, name: str, record: LeaseRecord, version: str | None
    ) -> str:
        """Create the Lease (`version` None) or replace the version read; LeaseConflict when
        another replica wrote it meanwhile. Returns the version written."""
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "holderIdentity": record.holder,
                "leaseDurationSeconds": record.lease_seconds,
                "acquireTime": _micro_time(record.acquired),
                "renewTime": _micro_time(record.renewed),
                "leaseTransitions": record.transitions,
            },
        }
        what = f"writing Lease {namespace}/{name}"
        conflict = {409: LeaseConflict(f"Lease {namespace}/{name} changed meanwhile")}
        if version is None:
            written = await self._call(
                what,
                self._coordination.create_namespaced_lease,
                namespace,
                body,
                errors=conflict,
                lease=True,
            )
        else:
            body["metadata"]["resourceVersion"] = version
            written = await self._call(
                what,
                self._coordination.replace_namespaced_lease,
                name,
                namespace,
                body,
                errors={**conflict, 404: conflict[409]},
                lease=True,
            )
        if written is None:
            raise KubernetesError(f"{what}: the API server returned no object")
        return str(written.metadata.resource_version)


def _owner(ref: WatcherRef) -> dict[str, Any]:
    """The ownerReference that makes an object the watcher's (garbage-collected with it)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": ref.name,
        "uid": ref.uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }


def _secret_data(secret: Any, where: str) -> SecretData:
    """A read Secret's data, decoded, with its version, uid and owners."""
    decoded: dict[str, str] = {}
    for key, value in (secret.data or {}).items():
        try:
            decoded[key] = base64.b64decode(value).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise SecretNotFound(f"{where} key {key!r} is not UTF-8 text") from None
    meta = secret.metadata
    return SecretData(
        decoded,
        (meta.resource_version if meta else None) or "",
        (meta.uid if meta else None) or "",
        tuple(o.uid for o in ((meta.owner_references if meta else None) or [])),
    )


def _micro_time(moment: datetime | None) -> str | None:
    """A Lease's MicroTime: RFC 3339 with microseconds, in UTC."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
