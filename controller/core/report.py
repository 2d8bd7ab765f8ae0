"""The change document the webhook receives and run-once prints (design notes, section 6).

Pure: the caller supplies the clock, the delivery id and the changes. `encode_report` gives the
exact bytes that are signed and sent, so a retry of the same report is byte-identical.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from controller.core.diff import MatchChange, summarise
from controller.core.jsontext import canonical_json
from controller.core.model import GROUP, VERSION, WatcherRef

API_VERSION = f"{GROUP}/{VERSION}"
REPORT_KIND = "MatchListChanged"
TRIGGERS: tuple[str, ...] = ("schedule", "manual", "run-once")

# Fixed namespace: delivery ids must stay stable across operator versions and restarts.
_DELIVERY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://matchlist.io/delivery")


def delivery_id(
    uid: str, revision: int, old_digest: str, new_digest: str, retargets: int = 0
) -> str:
    """A UUID naming one transition of one watcher, so receivers can drop redeliveries.

    `revision` is the revision of the snapshot the transition starts from: a retried or
    redelivered pending transition starts from the same one (same id), while a later transition
    starts from a later one, so A->B->A->B yields three ids, not two. `retargets` tells apart
    transitions from one snapshot whose deliveries stayed in doubt (A->B, back to A, then B
    again); 0 leaves the id as it always was.
    """
    name = f"{uid}\n{revision}\n{old_digest}\n{new_digest}" + (
        f"\n{retargets}" if retargets else ""
    )
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, name))


def rfc3339(moment: datetime) -> str:
    """`moment` in UTC with a Z suffix, to the second; naive datetimes are refused, not guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a timestamp must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _change_document(change: MatchChange) -> dict[str, Any]:
    return {
        "type": change.type,
        "matchId": change.match_id,
        "matchNumber": change.match_number,
        "categories": list(change.categories),
        "fields": {
            name: {"old": value.old, "new": value.new} for name, value in change.fields.items()
        },
        "match": change.match,
    }


def build_report(
    *,
    watcher: WatcherRef,
    delivery_id: str,
    detected_at: datetime,
    trigger: str,
    changes: Sequence[MatchChange],
) -> dict[str, Any]:
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {', '.join(TRIGGERS)}, not {trigger!r}")
    summary = summarise(changes)
    return {
        "apiVersion": API_VERSION,
        "kind": REPORT_KIND,
        "id": delivery_id,
        "watcher": {"namespace": watcher.namespace, "name": watcher.name, "uid": watcher.uid},
        "detectedAt": rfc3339(detected_at),
        "trigger": trigger,
        "summary": {
            "new": summary.new,
            "removed": summary.removed,
            "changed": summary.changed,
            "total": summary.total,
        },
        "changes": [_change_document(change) for change in changes],
    }


def encode_report(report: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON with sorted keys: equal reports encode to equal bytes."""
    return canonical_json(dict(report)).encode("utf-8")
