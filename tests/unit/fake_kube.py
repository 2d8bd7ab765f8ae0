"""Just enough of controller.adapters.kube.Kube for the stores and the people's pass: ConfigMaps
with a resourceVersion (a write based on an outdated read is refused, as the API server does)
and Secrets. Integration tests use the real API server instead."""

from __future__ import annotations

from collections.abc import Mapping

from controller.adapters.kube import SecretData, StoredConfigMap
from controller.core.errors import ConfigMapConflict, SecretNotFound
from controller.core.model import WatcherRef


class FakeKube:
    def __init__(self) -> None:
        self.config_maps: dict[tuple[str, str], StoredConfigMap] = {}
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.version = 0  # of the last write, across ConfigMaps (as resourceVersions are)

    def put_config_map(
        self, namespace: str, name: str, data: Mapping[str, bytes], owner: str
    ) -> None:
        """A ConfigMap as someone else (an older release, a user) left it."""
        self.version += 1
        self.config_maps[namespace, name] = StoredConfigMap(dict(data), (owner,), str(self.version))

    async def read_config_map(self, namespace: str, name: str) -> StoredConfigMap | None:
        return self.config_maps.get((namespace, name))

    async def write_config_map(
        self,
        ref: WatcherRef,
        name: str,
        binary_data: Mapping[str, bytes],
        labels: Mapping[str, str],
        resource_version: str | None,
    ) -> str:
        stored = self.config_maps.get((ref.namespace, name))
        current = None if stored is None else stored.resource_version
        if resource_version != current:
            raise ConfigMapConflict(f"ConfigMap {name} changed meanwhile")
        self.put_config_map(ref.namespace, name, binary_data, ref.uid)
        return str(self.version)

    async def read_secret(self, namespace: str, name: str, *, purpose: str) -> SecretData:
        values = self.secrets.get((namespace, name))
        if values is None:
            raise SecretNotFound(f"{purpose} Secret {namespace}/{name} not found")
        return SecretData(dict(values), "1")
