"""One command, one transaction: the state change, its outbox records and its idempotency record.

A store method hands `UnitOfWork.execute` a function that reads and writes inside the session and
returns the resource plus the events it caused. With an `Idempotency-Key` the first response is stored
in the same transaction and replayed for a retry with the same body; a different body under a used key
is refused (422), since the client is confused about what it already did.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.database import Database

from shared.errors import ValidationFailed
from shared.events import Event
from shared.mongo import run_in_transaction
from shared.outbox import Outbox

IDEMPOTENCY = "idempotency_keys"

Work = Callable[[ClientSession], "tuple[Any, list[Event]]"]


@dataclass(frozen=True)
class IdempotencyKey:
    scope: str  # the operation and the caller, so two users' keys never collide
    key: str
    fingerprint: str  # a hash of the request body

    @classmethod
    def of(cls, scope: str, key: str, body: Any) -> "IdempotencyKey":
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
        return cls(scope=scope, key=key, fingerprint=hashlib.sha256(canonical.encode()).hexdigest())

    @property
    def record_id(self) -> str:
        return f"{self.scope}|{self.key}"


class UnitOfWork:
    def __init__(self, client: MongoClient, db: Database, outbox: Outbox):
        self.client = client
        self.db = db
        self.outbox = outbox
        self.keys = db[IDEMPOTENCY]

    def execute(self, work: Work, *, idempotency: IdempotencyKey | None = None) -> Any:
        def transaction(session: ClientSession):
            if idempotency is not None:
                stored = self.keys.find_one({"_id": idempotency.record_id}, session=session)
                if stored is not None:
                    if stored["fingerprint"] != idempotency.fingerprint:
                        raise ValidationFailed(
                            "this Idempotency-Key was already used with a different request body",
                            errors={"Idempotency-Key": ["already used with a different request body"]},
                        )
                    return stored["response"]
            result, events = work(session)
            self.outbox.add(session, events)
            if idempotency is not None:
                # A concurrent retry with the same key conflicts on this _id; the loser's transaction is
                # retried and then finds this record and replays it.
                self.keys.insert_one({
                    "_id": idempotency.record_id,
                    "fingerprint": idempotency.fingerprint,
                    "response": result,
                    "at": datetime.now(timezone.utc),
                }, session=session)
            return result

        return run_in_transaction(self.client, transaction)
