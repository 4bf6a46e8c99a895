"""Events as plain data, and their CloudEvents 1.0 envelope (structured JSON mode).

A domain function returns `Event`s; the outbox wraps each in an envelope when the state change that
caused it is written. Consumers get the envelope back through `decode`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from shared.text import TOO_DEEP, UnpairedSurrogate, check_text, may_hold_surrogates

SPECVERSION = "1.0"
TYPE_PREFIX = "org.socorg."
SYSTEM_ACTOR = "system"

# The topic each service publishes to (CONTRACT.md, "Services and processes").
TOPICS = {
    "registry": "registry.organizations.v1",
    "evaluation": "evaluation.awards.v1",
    "fund": "fund.ledger.v1",
}
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data")


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def source_of(service: str) -> str:
    return f"/socorg/{service}"


class InvalidEvent(ValueError):
    """A message that is not a CloudEvents document we can read; retrying cannot fix it."""


@dataclass(frozen=True)
class Event:
    """What happened, as plain data. `type` is written without the `org.socorg.` prefix.

    `key` is the Kafka message key (the aggregate whose events must stay in order); it defaults to
    `subject`. `data` must carry `actor`.
    """

    type: str
    subject: str
    data: dict[str, Any]
    key: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # When it happened, if the event is recorded later than that (else: when the outbox records it).
    time: datetime | None = None

    @property
    def partition_key(self) -> str:
        return self.key or self.subject


def now_utc() -> datetime:
    """The current time at the millisecond precision MongoDB stores, so a stored time reads back equal."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def envelope(event: Event, source: str, time: datetime | None = None) -> dict[str, Any]:
    if "actor" not in event.data:
        raise ValueError(f"event {event.type} has no actor in its data")
    time = time or event.time or now_utc()
    return {
        "specversion": SPECVERSION,
        "id": event.id,
        "source": source,
        "type": TYPE_PREFIX + event.type,
        "subject": event.subject,
        "time": time.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        # CloudEvents partitioning extension: the key the message is published under.
        "partitionkey": event.partition_key,
        "data": event.data,
    }


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=_json_default).encode()


def decode(raw: bytes | None) -> dict[str, Any]:
    """Parse and check a CloudEvents document; raise InvalidEvent when it is not one."""
    if raw is None:
        raise InvalidEvent("empty message")
    try:
        document = json.loads(raw)
        if may_hold_surrogates(raw):
            check_text(document)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    except RecursionError:
        raise InvalidEvent(f"not JSON: {TOO_DEEP}") from None
    except UnpairedSurrogate as exc:
        raise InvalidEvent(str(exc)) from None
    if not isinstance(document, dict):
        raise InvalidEvent("not a JSON object")
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in document]
    if missing:
        raise InvalidEvent(f"missing CloudEvents attributes: {', '.join(missing)}")
    if document["specversion"] != SPECVERSION:
        raise InvalidEvent(f"unsupported specversion {document['specversion']!r}")
    if not isinstance(document["type"], str) or not document["type"].startswith(TYPE_PREFIX):
        raise InvalidEvent(f"unknown event type {document['type']!r}")
    if not isinstance(document["data"], dict):
        raise InvalidEvent("data is not an object")
    return document


def short_type(document: dict[str, Any]) -> str:
    return document["type"][len(TYPE_PREFIX):]


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")
