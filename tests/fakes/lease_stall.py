"""A hung Lease call, made from outside the operator: an admission webhook that holds renewals.

The API server calls it (a ValidatingWebhookConfiguration for UPDATEs of the Leases in one
namespace, pointing at 127.0.0.1) before it writes a Lease. While `hold()` is on, a renewal (the
holder writing its own Lease again) is answered only at `release()`, or after HOLD_SECONDS: the
holder's call hangs as one does behind a stalled API server or connection, while every other
request, a standby's takeover included, goes through at once. `on_takeover(old, new)` is called
in the handler thread before a takeover is admitted (the old holder's renewal still held).
Reads are not admission-controlled: only the writes hang.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Callable, Mapping
from http.server import ThreadingHTTPServer
from typing import Any

import trustme
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.fakes.background import Answer, BackgroundServer

# Below the webhook's timeoutSeconds (30, the most the API server allows), so the API server
# gets an answer rather than giving up on the webhook.
HOLD_SECONDS = 28.0


class LeaseStall(BackgroundServer):
    thread_name = "lease-stall"

    def __init__(self, on_takeover: Callable[[str | None, str], None] = lambda old, new: None):
        super().__init__("127.0.0.1", 0)
        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert("127.0.0.1")
        self.on_takeover = on_takeover
        self._holding = threading.Event()
        self._released = threading.Event()
        self.reviews = 0  # Lease writes the API server asked about
        self.held = 0  # renewals held back

    @property
    def holding(self) -> bool:
        return self._holding.is_set()

    def hold(self) -> None:
        self._released.clear()
        self._holding.set()

    def release(self) -> None:
        self._holding.clear()
        self._released.set()

    def stop(self) -> None:
        self.release()
        super().stop()

    def _make_server(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        server = super()._make_server(address)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._cert.configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        return server

    def answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        request: dict[str, Any] = json.loads(body or b"{}").get("request") or {}
        self.reviews += 1
        old, new = (
            ((request.get(side) or {}).get("spec") or {}).get("holderIdentity")
            for side in ("oldObject", "object")
        )
        if new and new == old and self.holding:
            self.held += 1
            self._released.wait(HOLD_SECONDS)
        elif new and new != old:
            self.on_takeover(old, new)
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": request.get("uid"), "allowed": True},
        }
        return Answer(200, [("Content-Type", "application/json")], json.dumps(review).encode())

    @staticmethod
    def _name(namespace: str) -> str:
        return f"lease-stall-{namespace}"

    def register(self, api: client.ApiClient, namespace: str) -> None:
        """Have the API server ask this webhook about every Lease update in `namespace`."""
        webhook = {
            "name": "lease-stall.test.matchlist.io",
            "clientConfig": {
                "url": f"https://127.0.0.1:{self.port}/admit",
                "caBundle": base64.b64encode(self._ca.cert_pem.bytes()).decode(),
            },
            "rules": [
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "apiVersions": ["v1"],
                    "operations": ["UPDATE"],
                    "resources": ["leases"],
                    "scope": "Namespaced",
                }
            ],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            # A webhook gone (the test ended badly) must not block Lease writes for good.
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 30,
        }
        client.AdmissionregistrationV1Api(api).create_validating_webhook_configuration(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": self._name(namespace)},
                "webhooks": [webhook],
            }
        )

    def unregister(self, api: client.ApiClient, namespace: str) -> None:
        try:
            client.AdmissionregistrationV1Api(api).delete_validating_webhook_configuration(
                self._name(namespace)
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
