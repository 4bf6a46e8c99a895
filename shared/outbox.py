"""The transactional outbox and its relay.

`Outbox.add` writes an event's envelope into the service's `outbox` collection inside the caller's
transaction, beside the state change that caused it, so the event exists if and only if the change
committed. The `Relay` publishes unsent records to Kafka, in order per key, and marks them sent.
Sent records are kept: they are the service's event log, and a broker that lost its data (Tansu keeps
everything in memory) is refilled by replaying them; consumers are idempotent, so replays are harmless.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Iterable

from kafka.errors import KafkaError
from pymongo import ASCENDING, ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from shared import faults
from shared.events import Event, envelope, encode

log = logging.getLogger("socorg.outbox")

OUTBOX = "outbox"
LEASES = "relay_leases"
TOPICS_PUBLISHED = "relay_topics"  # {_id: topic, topic_id}: the topic incarnation the relay publishes to
UNUSED_KEY_INDEX = "key_1_order_1"  # created by earlier versions
INDEX_NOT_FOUND = 27


class Outbox:
    def __init__(self, db: Database, source: str):
        self.collection = db[OUTBOX]
        self.source = source

    def ensure_indexes(self) -> None:
        self.collection.create_index([("sent", ASCENDING), ("order", ASCENDING)])
        # Every index costs each recorded event (on SecantusDB about 0.2 ms of its CPU per insert), and no query
        # reads by key: the relay keeps a key's order by reading unsent records in `order`.
        try:
            self.collection.drop_index(UNUSED_KEY_INDEX)
        except OperationFailure as exc:
            if exc.code != INDEX_NOT_FOUND:  # already gone (dropped earlier, or by another process just now)
                raise
        # The audit trail's queries (shared/audit.py).
        self.collection.create_index([("event.subject", ASCENDING), ("order", ASCENDING)])
        self.collection.create_index([("event.data.actor", ASCENDING), ("order", ASCENDING)])

    def add(self, session: ClientSession | None, events: Iterable[Event]) -> list[dict]:
        """Record events in the caller's transaction. Returns their envelopes."""
        records, documents = [], []
        for event in events:
            document = envelope(event, self.source)
            documents.append(document)
            records.append({
                "_id": event.id,
                "key": event.partition_key,
                # Wall-clock nanoseconds order the records of one key: two transactions on the same
                # aggregate conflict, so the later one is created after the earlier one committed.
                "order": time.time_ns(),
                "event": document,
                "sent": False,
                "created_at": datetime.now(timezone.utc),
            })
        if records:
            self.collection.insert_many(records, session=session, ordered=True)
        return documents

    def pending(self, limit: int) -> list[dict]:
        return list(self.collection.find({"sent": False}).sort([("order", ASCENDING), ("_id", ASCENDING)]).limit(limit))

    def mark_sent(self, ids: list[str]) -> None:
        if ids:
            self.collection.update_many({"_id": {"$in": ids}}, {"$set": {"sent": True, "sent_at": datetime.now(timezone.utc)}})

    def mark_all_for_replay(self) -> int:
        """Queue every recorded event for publishing again (after the broker lost its data)."""
        return self.collection.update_many({"sent": True}, {"$set": {"sent": False}}).modified_count

    def backlog(self) -> int:
        return self.collection.count_documents({"sent": False})

    def audit(self, *, subject: str | None = None, actor: str | None = None, event_type: str | None = None,
              skip: int = 0, limit: int = 20) -> tuple[int, list[dict]]:
        query = {}
        if subject:
            query["event.subject"] = subject
        if actor:
            query["event.data.actor"] = actor
        if event_type:
            query["event.type"] = event_type
        total = self.collection.count_documents(query)
        records = list(self.collection.find(query).sort("order", -1).skip(skip).limit(limit))
        return total, records

    def events(self, *, after_order: int = 0, limit: int = 1000) -> list[dict]:
        """The event log in order, for replays and audits."""
        cursor = self.collection.find({"order": {"$gt": after_order}}).sort("order", ASCENDING).limit(limit)
        return list(cursor)


class Relay:
    """Publishes the outbox to one topic. One relay per service is active at a time (a lease in MongoDB),
    so extra worker replicas stand by instead of publishing the same records twice."""

    def __init__(self, outbox: Outbox, db: Database, kafka, topic: str, *, poll_seconds: float = 0.05,
                 batch_size: int = 500, lease_seconds: float = 10.0, topic_check_seconds: float = 2.0):
        self.outbox = outbox
        self.leases = db[LEASES]
        self.topics_published = db[TOPICS_PUBLISHED]
        self.kafka = kafka  # shared.kafka.KafkaLink
        self.topic = topic
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.topic_check_seconds = topic_check_seconds
        self.owner = f"relay-{uuid.uuid4()}"
        self._lease_until = 0.0
        self._next_topic_check = 0.0
        self._topic_id: str | None = None  # the topic incarnation last seen (kept in `relay_topics` too)

    def run(self, stop: threading.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                if not self._hold_lease():
                    stop.wait(self.lease_seconds / 3)
                    continue
                self._check_topic()
                published = self.publish_pending()
                backoff = 0.1
                if published < self.batch_size:
                    stop.wait(self.poll_seconds)
            except (KafkaError, PyMongoError, OSError) as exc:
                log.warning("relay for %s paused: %s", self.topic, exc)
                self._next_topic_check = 0.0  # the broker may have come back empty
                self.kafka.reset()
                stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
        self._release_lease()

    def publish_pending(self) -> int:
        records = self.outbox.pending(self.batch_size)
        if not records:
            return 0
        producer = self.kafka.producer()
        futures = [
            (record["_id"], producer.send(self.topic, key=record["key"].encode(), value=encode(record["event"])))
            for record in records
        ]
        producer.flush(timeout=10)
        sent = []
        for record_id, future in futures:
            future.get(timeout=10)  # raises: nothing after a failure is marked sent
            sent.append(record_id)
        faults.point("relay.after_publish")
        self.outbox.mark_sent(sent)
        return len(sent)

    def _check_topic(self) -> None:
        now = time.monotonic()
        if now < self._next_topic_check:
            return
        self._next_topic_check = now + self.topic_check_seconds
        created = self.kafka.ensure_topics([self.topic])
        replaced = self._topic_replaced(self.kafka.topic_id(self.topic))
        if created or replaced:
            # A broker without our topic has lost what we had published: publish everything again. The topic
            # may also have been re-created by a consumer of it before we looked: its id tells.
            replayed = self.outbox.mark_all_for_replay()
            if replayed:
                log.warning("topic %s was %s on the broker; replaying %d events", self.topic,
                            "missing" if created else "re-created", replayed)

    def _topic_replaced(self, topic_id: str | None) -> bool:
        """True when the topic now on the broker is not the one this service published to before (its id
        changed); remembers the current one. Unknown ids (an old broker) never count as a change."""
        if topic_id is None or topic_id == self._topic_id:
            return False
        known = self.topics_published.find_one({"_id": self.topic})
        if known is None or known.get("topic_id") != topic_id:
            self.topics_published.update_one({"_id": self.topic}, {"$set": {"topic_id": topic_id}}, upsert=True)
        self._topic_id = topic_id
        return known is not None and known.get("topic_id") != topic_id

    def _hold_lease(self) -> bool:
        now = time.time()
        if now < self._lease_until - self.lease_seconds / 2:
            return True
        expires = now + self.lease_seconds
        try:
            doc = self.leases.find_one_and_update(
                {"_id": self.topic, "$or": [{"owner": self.owner}, {"expires": {"$lt": now}}]},
                {"$set": {"owner": self.owner, "expires": expires}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            return False  # another relay holds a live lease
        held = doc is not None and doc.get("owner") == self.owner
        self._lease_until = expires if held else 0.0
        return held

    def _release_lease(self) -> None:
        try:
            self.leases.delete_one({"_id": self.topic, "owner": self.owner})
        except PyMongoError:
            pass
