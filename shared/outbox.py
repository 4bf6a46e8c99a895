"""The transactional outbox and its relay.

`Outbox.add` writes an event's envelope into the service's `outbox` collection inside the caller's
transaction, beside the state change that caused it, so the event exists if and only if the change
committed. The `Relay` publishes unsent records to Kafka, in order per key, and then marks them sent.

"Unsent" is a marker document in `outbox_pending`, one per transaction that recorded events, listing
their ids and carrying their messages (key and envelope); it is written in that transaction and deleted
once its records are published. So the relay reads markers alone, never the records: reading the
records back cost SecantusDB 0.27 ms of its CPU per event, the larger marker 0.03. The records are never
changed after they are written. Marking by updating a `sent` flag in each record, as earlier versions did,
rewrote every record and its index entries: on SecantusDB that cost 1.9 ms of its CPU per event, against
0.4 ms to delete a marker (measured with bench-sized events), and one marker per transaction rather than
per record makes a batch (the registry's follower copies its events in batches) cost one. A marker's id
is its first record's order and id, so the relay reads markers in order from the `_id` index alone.

Every index costs each recorded event (on SecantusDB about 0.23 ms of its CPU, whatever the index; a
multikey one more), so the records have none but `_id`. The audit trail's two queries, by subject and by
actor, read *audit pages* (`outbox_audit`): one document per write of records (a command's transaction, a
batch the registry's follower publishes), listing each record's id, order, type, subject and actor, with one
multikey index on the `keys` (subjects and actors) it holds. A page of a hundred records costs about as
much as one record did with its own index (measured on SecantusDB, records and page together: 0.30 ms of
its CPU per record against 0.57 with the index on the records).

Records written by a DirectPublisher (below) have no marker: their events were published before they were
written. Sent records are kept: they are the service's event log, and a broker that lost its data (Tansu keeps
everything in memory) is refilled by replaying them; consumers are idempotent, so replays are harmless.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable

from kafka.errors import KafkaError
from pymongo import ASCENDING, ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from shared import faults
from shared.events import Event, envelope
from shared.mongo import (batches, create_collection_if_missing, drop_index_if_present, find_by_ids, ids_present,
                          in_lists, insert_missing)

log = logging.getLogger("socorg.outbox")

OUTBOX = "outbox"
PENDING = "outbox_pending"  # {_id: marker_id(first record), records: [ids]}: the records not published yet
LEASES = "relay_leases"
TOPICS_PUBLISHED = "relay_topics"  # {_id: topic, topic_id}: the topic incarnation the relay publishes to
SENT_FLAG_INDEX = "sent_1_order_1"  # earlier versions marked records with a `sent` flag
UNUSED_KEY_INDEX = "key_1_order_1"  # created by earlier versions
AUDIT = "outbox_audit"  # {_id: marker_id(first record), keys, entries: [[id, order, type, subject, actor], ...]}
AUDIT_PAGE = 500  # records per audit page at most
# Before the ids of the pages `page_every_record` writes: the first record of such a page may have a page of its own
# already, with its marker id for an id. The same records give the same pages, so a second run writes none.
EVERY_RECORD = "every|"
# Earlier versions indexed the records for the audit trail: by subject and by actor, then by their `audit` keys.
AUDIT_INDEXES_BEFORE = ("event.subject_1_order_1", "event.data.actor_1_order_1", "audit_1_order_1")
ORDER_WIDTH = 20  # digits of `order` in a marker id (nanoseconds since 1970 have 19 until the year 2286)


def marker_id(record: dict) -> str:
    """The id of the marker whose first record this is: sorting markers by id sorts them by (order, _id)."""
    return f"{record['order']:0{ORDER_WIDTH}d}|{record['_id']}"


def marker(records: list[dict]) -> dict:
    """The marker of records recorded together (by one change, or one record a replay queues), in order,
    with what the relay publishes of each."""
    return {"_id": marker_id(records[0]), "records": [r["_id"] for r in records],
            "messages": [{"key": r["key"], "event": r["event"]} for r in records]}


def audit_pages_of(records: list[dict], id_prefix: str = "") -> list[dict]:
    """The audit pages of records written together: what the trail lists of each record, and the keys (its
    subject and its actor) it finds them by. A page's id is its first record's marker id, after `id_prefix`."""
    pages = []
    for start in range(0, len(records), AUDIT_PAGE):
        part = records[start:start + AUDIT_PAGE]
        entries = [[r["_id"], r["order"], r["event"].get("type", ""), r["event"].get("subject", ""),
                    r["event"].get("data", {}).get("actor", "")] for r in part]
        keys = sorted({f"subject:{subject}" for _, _, _, subject, _ in entries}
                      | {f"actor:{actor}" for _, _, _, _, actor in entries})
        pages.append({"_id": id_prefix + marker_id(part[0]), "keys": keys, "entries": entries})
    return pages


@dataclass
class Pending:
    """Unsent records (`_id`, `key`, `event`) in the order to publish them, and the markers they came from."""

    records: list[dict] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)


class Outbox:
    def __init__(self, db: Database, source: str):
        self.collection = db[OUTBOX]
        self.markers = db[PENDING]
        self.audit_pages = db[AUDIT]
        self.client = db.client
        self.source = source

    def ensure_indexes(self) -> None:
        # Every index costs each recorded event (see the module doc), and no query reads records but by `_id`:
        # the relay keeps a key's order by reading markers in `order`, the audit trail reads its pages.
        drop_index_if_present(self.collection, UNUSED_KEY_INDEX)
        create_collection_if_missing(self.markers)  # written in transactions
        create_collection_if_missing(self.audit_pages)
        self.audit_pages.create_index("keys")
        self._migrate_audit_indexes()
        self._migrate_sent_flags()

    def _migrate_audit_indexes(self) -> None:
        """Earlier versions indexed the records for the audit trail: their records get audit pages, then the
        indexes go (last, so a start stopped half-way does it again)."""
        present = self.collection.index_information()
        if not any(name in present for name in AUDIT_INDEXES_BEFORE):
            return
        paged = self.page_every_record()
        for name in AUDIT_INDEXES_BEFORE:
            drop_index_if_present(self.collection, name)
        log.info("outbox: the audit trail's indexes on the records became %d audit pages", paged)

    def page_every_record(self) -> int:
        """Audit pages for every record (`socorg audit-pages`): after a rolling upgrade from an outbox indexed for
        the audit trail, the records that processes of the earlier version wrote once the indexes had gone have
        none. A record listed on two pages is shown once. Returns how many pages were written."""
        fields = {"order": 1, "event.type": 1, "event.subject": 1, "event.data.actor": 1}
        records = self.collection.find({}, fields).sort("_id", ASCENDING)
        return sum(insert_missing(self.audit_pages, audit_pages_of(batch, EVERY_RECORD))
                   for batch in batches(records, AUDIT_PAGE))

    def _migrate_sent_flags(self) -> None:
        """An outbox of an earlier version: a marker for each record it had not sent, then the flags and their
        index go. Run again if a process stops half-way (the index goes last); markers are idempotent."""
        if SENT_FLAG_INDEX not in self.collection.index_information():
            return
        unsent = self.collection.find({"sent": False}, {"order": 1, "key": 1, "event": 1})
        migrated = self._insert_markers(unsent)
        self.collection.update_many({"sent": {"$exists": True}}, {"$unset": {"sent": "", "sent_at": ""}})
        drop_index_if_present(self.collection, SENT_FLAG_INDEX)
        if migrated:
            log.info("outbox: %d unsent records of an earlier version queued for the relay", migrated)

    def records_of(self, events: Iterable[Event]) -> list[dict]:
        """The outbox records of these events (their envelopes in `event`), not written yet."""
        records = []
        for event in events:
            document = envelope(event, self.source)
            records.append({
                "_id": event.id,
                "key": event.partition_key,
                # Wall-clock nanoseconds order the records of one key: two transactions on the same
                # aggregate conflict, so the later one is created after the earlier one committed.
                "order": time.time_ns(),
                "event": document,
                "created_at": datetime.now(timezone.utc),
            })
        return records

    def add(self, session: ClientSession | None, events: Iterable[Event]) -> list[dict]:
        """Record events in the caller's transaction (or, without one, in a transaction of their own: a
        record must never exist without its marker). Returns their envelopes."""
        records = self.records_of(events)
        if not records:
            return []
        if session is not None:
            self._insert(records, session)
        else:
            with self.client.start_session() as own, own.start_transaction():
                self._insert(records, own)
        return [record["event"] for record in records]

    def unrecorded(self, events: list[Event], session: ClientSession | None = None) -> list[Event]:
        """Those of the events that have no record yet, in order (recording twice is refused)."""
        present = ids_present(self.collection, [event.id for event in events], session)
        return [event for event in events if event.id not in present]

    def add_published(self, records: list[dict]) -> int:
        """Write records whose events were published already (DirectPublisher): no marker, and those
        recorded meanwhile (by a command, in its transaction) are left as they are. Returns how many were
        written. Without a transaction, their audit pages go first: a page whose records a crash left unwritten
        lists nothing (the trail shows records, and the follower writes them again), whereas records whose page
        a crash left unwritten would be missing from the trail for good."""
        insert_missing(self.audit_pages, audit_pages_of(records))
        return insert_missing(self.collection, records)

    def _insert(self, records: list[dict], session: ClientSession) -> None:
        self.collection.insert_many(records, session=session, ordered=True)
        self.markers.insert_one(marker(records), session=session)
        self.audit_pages.insert_many(audit_pages_of(records), session=session)

    def pending(self, limit: int) -> Pending:
        """The oldest unsent records, in order: whole markers' records, at most `limit` of them unless the
        first marker alone has more."""
        batch = Pending()
        listed: list[str | dict] = []  # a record, or the id of one to read (a marker of an earlier version)
        for document in self.markers.find({}).sort("_id", ASCENDING).limit(limit):
            ids = document["records"]
            if batch.markers and len(listed) + len(ids) > limit:
                break
            batch.markers.append(document["_id"])
            messages = document.get("messages")
            listed += ([{"_id": i, **message} for i, message in zip(ids, messages)] if messages is not None
                       else ids)
        unread = [item for item in listed if isinstance(item, str)]
        if not unread:
            batch.records = listed
            return batch
        by_id = {r["_id"]: r for r in find_by_ids(self.collection, unread)}
        batch.records = [item if isinstance(item, dict) else by_id[item] for item in listed
                         if isinstance(item, dict) or item in by_id]
        # A marker is written with its records, so they are all there; one of an earlier version whose records
        # were deleted by hand can never be published: it goes, or the backlog would never reach zero.
        if len(batch.records) < len(listed):
            missing = [i for i in unread if i not in by_id]
            log.warning("outbox: %d records of pending markers are missing (deleted by hand?), e.g. %s",
                        len(missing), missing[0])
            if not batch.records:
                self.mark_sent(batch)
                batch.markers = []
        return batch

    def mark_sent(self, batch: Pending) -> None:
        for part in in_lists(batch.markers):
            self.markers.delete_many({"_id": {"$in": part}})

    def mark_all_for_replay(self) -> int:
        """Queue every recorded event for publishing again (after the broker lost its data)."""
        return self._insert_markers(self.collection.find({}, {"order": 1, "key": 1, "event": 1}))

    def _insert_markers(self, records: Iterable[dict], batch_size: int = 1000) -> int:
        """Markers for these records, those already there left as they are; returns how many were added."""
        return sum(insert_missing(self.markers, batch)
                   for batch in batches((marker([record]) for record in records), batch_size))

    def backlog(self) -> int:
        """Transactions whose events are not published yet (each recorded one or more)."""
        return self.markers.count_documents({})

    def audit(self, *, subject: str | None = None, actor: str | None = None, event_type: str | None = None,
              skip: int = 0, limit: int = 20) -> tuple[int, list[dict]]:
        """The records of a subject or an actor (or both), newest first: their total and one page of them. Read
        from the audit pages that list the subject (or the actor); without either, every record is read."""
        if not subject and not actor:
            query = {"event.type": event_type} if event_type else {}
            total = self.collection.count_documents(query)
            return total, list(self.collection.find(query).sort("order", -1).skip(skip).limit(limit))
        key = f"subject:{subject}" if subject else f"actor:{actor}"
        orders = {}  # record id -> order: a record on two pages (a write repeated after a crash) counts once
        for page in self.audit_pages.find({"keys": key}, {"entries": 1}):
            for record_id, order, kind, about, by in page["entries"]:
                if ((not subject or about == subject) and (not actor or by == actor)
                        and (not event_type or kind == event_type)):
                    orders[record_id] = order
        newest = sorted(orders, key=lambda record_id: (orders[record_id], record_id), reverse=True)
        chosen = newest[skip:skip + limit]
        by_id = {r["_id"]: r for r in find_by_ids(self.collection, chosen)}
        return len(newest), [by_id[record_id] for record_id in chosen if record_id in by_id]

    def events(self, *, after_order: int = 0, limit: int = 1000) -> list[dict]:
        """The event log in order, for replays and audits."""
        cursor = self.collection.find({"order": {"$gt": after_order}}).sort("order", ASCENDING).limit(limit)
        return list(cursor)


class Relay:
    """Publishes the outbox to one topic. One relay per service is active at a time (a lease in MongoDB),
    so extra worker replicas stand by instead of publishing the same records twice.

    It looks for unpublished records every `poll_seconds`, and every `idle_poll_seconds` once it has found
    none for IDLE_AFTER_SECONDS: a quiet service's relay polled its database twenty times a second for
    nothing (the registry's idle worker and SecantusDB, measured: 2.0 and 2.3 % of a core with it, 1.0 and
    1.2 % without)."""

    IDLE_AFTER_SECONDS = 1.0

    def __init__(self, outbox: Outbox, db: Database, kafka, topic: str, *, poll_seconds: float = 0.05,
                 idle_poll_seconds: float = 0.25, batch_size: int = 500, lease_seconds: float = 10.0,
                 topic_check_seconds: float = 2.0):
        self.outbox = outbox
        self.leases = db[LEASES]
        self.topics_published = db[TOPICS_PUBLISHED]
        self.kafka = kafka  # shared.kafka.KafkaLink
        self.topic = topic
        self.poll_seconds = poll_seconds
        self.idle_poll_seconds = max(idle_poll_seconds, poll_seconds)
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.topic_check_seconds = topic_check_seconds
        self.owner = f"relay-{uuid.uuid4()}"
        self._lease_until = 0.0
        self._next_topic_check = 0.0
        self._topic_id: str | None = None  # the topic incarnation last seen (kept in `relay_topics` too)

    def run(self, stop: threading.Event) -> None:
        backoff = 0.1
        last_published = time.monotonic()
        while not stop.is_set():
            try:
                if not self._hold_lease():
                    stop.wait(self.lease_seconds / 3)
                    continue
                self._check_topic()
                published = self.publish_pending()
                backoff = 0.1
                if published:
                    last_published = time.monotonic()
                if published < self.batch_size:
                    quiet = time.monotonic() - last_published >= self.IDLE_AFTER_SECONDS
                    stop.wait(self.idle_poll_seconds if quiet else self.poll_seconds)
            except (KafkaError, PyMongoError, OSError) as exc:
                log.warning("relay for %s paused: %s", self.topic, exc)
                self._next_topic_check = 0.0  # the broker may have come back empty
                self.kafka.reset()
                stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
        self._release_lease()

    def publish_pending(self) -> int:
        batch = self.outbox.pending(self.batch_size)
        records = batch.records
        if not records:
            return 0
        # Raises when the broker does not take the batch: then nothing of it is marked sent.
        self.kafka.publish(self.topic, [(record["key"], record["event"]) for record in records])
        faults.point("relay.after_publish")
        self.outbox.mark_sent(batch)
        return len(records)

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


class DirectPublisher:
    """Publishes events at once and then records them as published, for a process that reads them in
    batches anyway: the registry's follower, which finds on the organizations' change stream the events
    new applications carry (transaction log tailing). Going through the relay instead would cost every event
    a marker written, read and deleted and a transaction, on top of its record.

    Nothing is lost: an event is recorded only after the broker acknowledged it, and the caller reads it
    again (from its saved stream position) if it stops in between, so at worst it is published twice
    (consumers apply each event id once). Events already recorded are neither published nor recorded again:
    a command records the events its organization carries, in its own transaction and before its own, for
    the relay to publish in that order. A command that records them while this publishes them makes a second
    copy, which may reach the topic after the command's events; the first copy never does. When the broker
    does not take a batch, the batch goes to the relay like any recorded event (records and a marker), and
    so do the following ones for PAUSE_SECONDS, rather than each batch waiting on a broker that is down.
    Without a Kafka link every batch goes to the relay.
    """

    PAUSE_SECONDS = 30.0

    def __init__(self, outbox: Outbox, kafka=None, topic: str | None = None):
        self.outbox = outbox
        self.kafka = kafka  # shared.kafka.KafkaLink
        self.topic = topic
        self._topic_checked = False
        self._paused_until = 0.0

    def publish(self, events: list[Event]) -> int:
        """Publish and record the events not recorded yet; returns how many there were."""
        if not events:
            return 0
        missing = self.outbox.unrecorded(events)
        if not missing:
            return 0
        if self.kafka is not None and time.monotonic() >= self._paused_until:
            records = self.outbox.records_of(missing)
            try:
                if not self._topic_checked:  # a send to a topic not there yet waits out its whole timeout
                    self.kafka.ensure_topics([self.topic])
                    self._topic_checked = True
                self.kafka.publish(self.topic, [(record["key"], record["event"]) for record in records])
            except (KafkaError, OSError) as exc:
                log.warning("publishing %d events directly failed (%s); the relay publishes them, and the next "
                            "%.0f s of events, once the broker answers", len(missing), exc, self.PAUSE_SECONDS)
                self.kafka.reset()
                self._topic_checked = False  # a broker that lost its data lost the topic too
                self._paused_until = time.monotonic() + self.PAUSE_SECONDS
            else:
                self.outbox.add_published(records)
                return len(missing)
        self.outbox.add(None, missing)
        return len(missing)

    def close(self) -> None:
        if self.kafka is not None:
            self.kafka.close()
