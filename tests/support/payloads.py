"""What every delivery the tests receive must be, checked independently of controller/: the
document against the published JSON Schema, and the Standard Webhooks signature with the
reference implementation (`standardwebhooks`) rather than our own signing code."""

from __future__ import annotations

import json
from collections.abc import Callable

import jsonschema
import standardwebhooks

from hack.local_cluster import ROOT
from tests.fakes.receiver import Received

SCHEMA = json.loads((ROOT / "schemas/matchlistchanged.v1alpha1.schema.json").read_text())
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
API_VERSION = SCHEMA["properties"]["apiVersion"]["const"]


def schema_problems(document: object) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(document)'}: {error.message}"
        for error in _VALIDATOR.iter_errors(document)
    ]


def delivery_check(hmac_key: str | None = None) -> Callable[[Received], list[str]]:
    """For WebhookReceiver(check=...): the problems of one received request (none: fine).
    Only our documents are checked (a notification's JSON or a test's own body is not one)."""
    verifier = standardwebhooks.Webhook(hmac_key.encode()) if hmac_key else None

    def check(received: Received) -> list[str]:
        payload = received.payload
        if not isinstance(payload, dict) or payload.get("apiVersion") != API_VERSION:
            return []
        problems = schema_problems(payload)
        if received.header("webhook-id") != payload.get("id"):
            problems.append("webhook-id is not the document's id")
        if verifier is not None:
            try:
                verifier.verify(received.body, dict(received.headers), json_parse=False)
            except standardwebhooks.WebhookVerificationError as exc:
                problems.append(f"webhook-signature does not verify: {exc}")
        return problems

    return check
