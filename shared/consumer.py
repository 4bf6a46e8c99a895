"""The idempotent event consumer: poll, decode, apply, dead-letter, commit.

Each step is small:
- decode: a message that is not a CloudEvents document can never succeed, so it goes straight to the DLQ;
- apply: the handlers' effects and the `processed` record of each event id are written in one
  transaction, so an event id is applied at most once even when Kafka delivers it again;
  a batch is applied in one transaction for throughput, and on failure each message is retried on its
  own with backoff, so one poison message cannot hold back the others; when the database itself fails a
  batch, the batch is read again after a pause (the consumer keeps its place in the group);
- dead-letter: after N failed attempts the message goes to `<topic>.dlq` with the error and the consumer
  moves on;
- commit: offsets are committed only for messages that were applied or dead-lettered.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError
from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from shared import faults
from shared.errors import Unavailable
from shared.events import InvalidEvent, decode, dlq_topic, short_type
from shared.kafka import KafkaLink
from shared.mongo import ids_present, run_in_transaction

log = logging.getLogger("socorg.consumer")

PROCESSED = "processed_events"
DEAD_LETTERS = "dead_letters"
SESSIONS = "consumer_sessions"
# A session record its consumer has not renewed for this long has nothing left to abort: the database has
# reaped its transaction by then (transactionLifetimeLimitSeconds: 60 s on MongoDB and on SecantusDB).
SESSION_RECORD_SECONDS = 120.0

# A handler applies one event's effect inside the given transaction.
Handler = Callable[[ClientSession, dict], None]


# The longest pause before a batch the database failed is read again (the pause doubles from backoff_seconds).
MAX_PAUSE_SECONDS = 5.0


class _GroupStuck(Exception):
    """The group has not settled this consumer's partitions for longer than a join takes."""


class _Membership(ConsumerRebalanceListener):
    """Whether the group has settled this consumer's partitions (possibly none, in a group with more members
    than partitions), and since when it has not.

    `consumer.assignment()` cannot tell: kafka-python keeps the old partitions there while it rejoins, and a
    rejoin can go on for good on a Tansu group left in a bad state by killed members (seen in fault scenario 3:
    JoinGroup, SyncGroup, JoinGroup again, every 3 s for minutes, without an error). The callbacks run on
    kafka-python's network thread; the loop only reads the two fields."""

    def __init__(self):
        self.settled = False
        self.unsettled_since = time.monotonic()
        # Set by each settlement until the loop has checked the broker's committed offsets after it.
        self.just_settled = False

    def on_partitions_revoked(self, revoked):
        if self.settled:
            self.settled = False
            self.unsettled_since = time.monotonic()

    def on_partitions_assigned(self, assigned):
        self.settled = True
        self.just_settled = True


# A poll asked to return within 200 ms may still block in the group join (kafka-python 3.0 waits for the join in
# `ensure_active_group`; on a Tansu group held by a dead leader, for minutes: seen in fault scenario 3 under load).
# After this long the poll's consumer is closed from another thread, which makes the poll raise, and the group is
# started afresh as for _GroupStuck. Longer than Apache Kafka may hold a join during a rebalance (the rebalance
# timeout, max_poll_interval_ms: 30 s in shared/kafka.py).
STUCK_POLL_SECONDS = 45.0


class _PollWatchdog:
    """Closes a consumer whose poll has not returned for `limit_seconds`; `fired` tells the loop why it raised."""

    def __init__(self, consumer, limit_seconds: float, group_id: str):
        self.consumer = consumer
        self.limit_seconds = limit_seconds
        self.group_id = group_id
        self.fired = False
        self._polling_since: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"poll-watchdog-{group_id}", daemon=True)

    def start(self) -> "_PollWatchdog":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()

    @contextmanager
    def watching(self):
        self._polling_since = time.monotonic()
        try:
            yield
        finally:
            self._polling_since = None

    def _watch(self) -> None:
        while not self._done.wait(1.0):
            since = self._polling_since
            if since is not None and time.monotonic() - since > self.limit_seconds:
                self.fired = True
                log.warning("consumer %s: a poll has not returned for %.0f s (stuck joining its group); closing it",
                            self.group_id, time.monotonic() - since)
                Consumer._close(self.consumer)
                return


class TransactionSessions:
    """The one session a consumer life runs its transactions in, recorded so that the next life can abort a
    transaction this one leaves open when it is killed.

    A killed consumer's open transaction keeps the records it wrote until the database reaps it (60 s): the
    consumer that takes over reads the same events again, conflicts on the same records and waits (seen in
    fault scenario 3, a minute per kill). So a consumer starting kills the recorded sessions of its group's
    other members (`killSessions` aborts their transactions). A live member loses at most the transaction of
    the batch it is applying, which it then applies again; its session stays usable."""

    def __init__(self, client: MongoClient, db: Database, group_id: str):
        self.client = client
        self.records = db[SESSIONS]
        self.group_id = group_id
        self.session: ClientSession | None = None

    def open(self) -> None:
        now = datetime.now(timezone.utc)
        others = list(self.records.find({"group": self.group_id}))
        if others:
            try:
                self.client.admin.command("killSessions", [record["lsid"] for record in others])
            except OperationFailure as exc:  # not allowed here: their transactions end when the database reaps them
                log.warning("consumer %s could not end its predecessors' sessions: %s", self.group_id, exc)
            reaped = [record["_id"] for record in others
                      if now - record["renewed_at"] > timedelta(seconds=SESSION_RECORD_SECONDS)]
            if reaped:
                self.records.delete_many({"_id": {"$in": reaped}})
        self.session = self.client.start_session()
        self.records.insert_one({"_id": self._key(), "group": self.group_id, "lsid": self.session.session_id,
                                 "renewed_at": now})

    def renew(self) -> None:
        """Best effort: a database that is away must not cost the consumer its group membership, and a
        record left unrenewed only goes sooner (SESSION_RECORD_SECONDS after its last renewal)."""
        if self.session is None:
            return
        try:
            self.records.update_one({"_id": self._key()}, {"$set": {"renewed_at": datetime.now(timezone.utc)}})
        except PyMongoError as exc:
            log.info("consumer %s could not renew its session record: %s", self.group_id, exc)

    def close(self) -> None:
        """This life ends without a transaction open: its record goes, and so does its session."""
        if self.session is None:
            return
        try:
            self.records.delete_one({"_id": self._key()})
            self.session.end_session()
        except PyMongoError:
            pass  # the record is reaped later; the session ends with the client
        self.session = None

    def _key(self) -> str:
        return self.session.session_id["id"].hex()


@dataclass
class Decoded:
    message: object  # kafka ConsumerRecord
    event: dict | None
    error: str | None = None


class Consumer:
    def __init__(self, *, client: MongoClient, db: Database, kafka: KafkaLink, group_id: str,
                 topics: list[str], handlers: dict[str, Handler], max_attempts: int = 5,
                 backoff_seconds: float = 0.2, offsets_check_seconds: float = 2.0, join_timeout_seconds: float = 20.0):
        self.client = client
        self.db = db
        self.kafka = kafka
        self.group_id = group_id
        self.topics = topics
        self.handlers = handlers
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.offsets_check_seconds = offsets_check_seconds
        # A join normally takes one session (6 s) at most, after a member died without leaving.
        self.join_timeout_seconds = join_timeout_seconds
        self.processed = db[PROCESSED]
        self.dead_letters = db[DEAD_LETTERS]
        # Set once the group has given this consumer its partitions (the join takes seconds on Tansu).
        self.assigned = threading.Event()
        self.sessions = TransactionSessions(client, db, group_id)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            consumer = None
            watchdog = None
            try:
                self.kafka.ensure_topics(self.topics + [dlq_topic(t) for t in self.topics])
                self.sessions.open()
                membership = _Membership()
                consumer = self.kafka.consumer(self.group_id, self.topics, listener=membership)
                watchdog = _PollWatchdog(consumer, STUCK_POLL_SECONDS, self.group_id).start()
                self._consume(consumer, stop, watchdog, membership)
            except Exception as exc:  # noqa: BLE001 - sorted below; anything else is re-raised
                # Not settled in the group for too long, or a poll the watchdog closed (whatever that poll
                # raised): the group may be held by a dead member, so it starts afresh.
                if isinstance(exc, _GroupStuck) or (watchdog is not None and watchdog.fired):
                    self._close(consumer)
                    consumer = None
                    self._reset_group()
                elif isinstance(exc, (KafkaError, PyMongoError, OSError, Unavailable)):
                    log.warning("consumer %s restarting after: %s: %s", self.group_id, type(exc).__name__, exc)
                    stop.wait(1.0)
                else:
                    raise
            finally:
                if watchdog is not None:
                    watchdog.stop()
                self._close(consumer)
                self.sessions.close()

    def _consume(self, consumer, stop: threading.Event, watchdog: _PollWatchdog, membership: _Membership) -> None:
        """Poll, apply, commit, for as long as the group keeps this consumer.

        The database failing a batch (away, or too slow to settle a conflict) does not cost the group
        membership: the batch is read again from its first offsets after a pause. Leaving and joining again
        would take seconds on Tansu and can leave its group stuck (see KafkaLink.reset_group)."""
        committed: dict[TopicPartition, int] = {}
        next_check = time.monotonic() + self.offsets_check_seconds
        pause = self.backoff_seconds
        while not stop.is_set():
            with watchdog.watching():
                batches = consumer.poll(timeout_ms=200)
            if membership.settled:
                self.assigned.set()
            elif time.monotonic() - membership.unsettled_since > self.join_timeout_seconds:
                raise _GroupStuck()
            if membership.settled and membership.just_settled:
                # kafka-python keeps a partition's position through a rebalance, also one after the broker
                # restarted without its data: check before applying anything, since a commit on the new broker
                # would hide that it forgot our offsets.
                membership.just_settled = False
                forgotten = self._rewind_if_broker_forgot(consumer, committed)
                if forgotten and batches:
                    # Read again from where this poll started (the forgotten partitions: from the beginning).
                    self._rewind(consumer, {partition: messages for partition, messages in batches.items()
                                            if partition not in forgotten})
                    batches = {}
            if batches:
                # One transaction and one offset commit for everything the poll returned, whichever
                # partitions it came from: a key lives in one partition, so its order is kept.
                try:
                    self.process([message for messages in batches.values() for message in messages])
                except (Unavailable, PyMongoError) as exc:
                    log.warning("consumer %s: database failed a batch (%s: %s); reading it again in %.1f s",
                                self.group_id, type(exc).__name__, exc, pause)
                    self._rewind(consumer, batches)
                    stop.wait(pause)
                    pause = min(pause * 2, MAX_PAUSE_SECONDS)
                    continue
                pause = self.backoff_seconds
                offsets = {partition: messages[-1].offset + 1 for partition, messages in batches.items()}
                faults.point("consumer.before_commit")
                consumer.commit({partition: OffsetAndMetadata(offset, None, -1)
                                 for partition, offset in offsets.items()})
                committed.update(offsets)
            if time.monotonic() >= next_check:
                self.sessions.renew()
                # Not while the group rebalances: consumer.committed() then waits behind the JoinGroup the
                # broker holds on the same connection, and kafka-python 3.0 drops a join that completes while
                # no poll awaits it and joins again; in step with this check, that repeated for good (fault
                # scenario 3).
                if membership.settled:
                    self._rewind_if_broker_forgot(consumer, committed)
                next_check = time.monotonic() + self.offsets_check_seconds

    @staticmethod
    def _rewind(consumer, batches: dict) -> None:
        """Move each partition of a batch back to its first message, so the next poll returns it again."""
        assignment = consumer.assignment()
        for partition, messages in batches.items():
            if partition in assignment:  # a partition the group moved away is read by its new owner
                consumer.seek(partition, messages[0].offset)

    @staticmethod
    def _close(consumer) -> None:
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception:  # noqa: BLE001 - a broken consumer may fail to close
                pass

    def _reset_group(self) -> None:
        """Not settled in the group for longer than a join takes: the group may be held by a dead member (see
        KafkaLink.reset_group), so start it afresh with its committed offsets; this consumer joins again."""
        try:
            offsets = self.kafka.reset_group(self.group_id, reason=f"not settled in {self.join_timeout_seconds:.0f} s")
        except KafkaError as exc:
            log.warning("consumer %s: resetting its group failed: %s", self.group_id, exc)
            return
        if offsets is not None:
            log.warning("consumer %s was not settled in its group for %.0f s; started it afresh with %d committed "
                        "offsets", self.group_id, self.join_timeout_seconds, len(offsets))

    def _rewind_if_broker_forgot(self, consumer, committed: dict) -> set:
        """A broker that restarted without its data (Tansu keeps it in memory) has lost our committed offsets,
        and the topic is refilled from the producers' outboxes from offset 0. Our in-memory positions would
        skip those messages, so read such partitions again from the beginning; applied ids are skipped.
        Returns the partitions read again from the beginning."""
        assignment = consumer.assignment()
        forgotten = set()
        for partition in list(committed):
            if partition not in assignment:
                del committed[partition]
                continue
            on_broker = consumer.committed(partition)
            if on_broker is None or on_broker < committed[partition]:
                log.warning("broker forgot offsets of %s (had %s, now %s): reading it again from the start",
                            partition, committed[partition], on_broker)
                consumer.seek_to_beginning(partition)
                del committed[partition]
                forgotten.add(partition)
        return forgotten

    def process(self, messages: list) -> None:
        """Apply a poll's batch of messages; on return every one was applied or dead-lettered."""
        decoded = [self._decode(message) for message in messages]
        for item in decoded:
            if item.error is not None:
                self._dead_letter(item.message, item.error)
        good = [item for item in decoded if item.error is None]
        if not good:
            return
        try:
            run_in_transaction(self.client, lambda session: self._apply(session, good), session=self.sessions.session)
        except Unavailable:
            raise  # the database is away: stop without committing; the messages come again
        except Exception as exc:  # noqa: BLE001 - isolate the failing message below
            log.info("batch of %d failed (%s); applying one by one", len(good), exc)
            for item in good:
                self._apply_with_retries(item)
        faults.point("consumer.after_apply")

    # -- steps ------------------------------------------------------------------------------------
    @staticmethod
    def _decode(message) -> Decoded:
        try:
            return Decoded(message, decode(message.value))
        except InvalidEvent as exc:
            return Decoded(message, None, f"invalid event: {exc}")
        except Exception as exc:  # noqa: BLE001 - decoding the same bytes fails again: dead-letter, never stop here
            log.exception("decoding a message failed unexpectedly")
            return Decoded(message, None, f"undecodable: {type(exc).__name__}: {exc}")

    def _apply(self, session: ClientSession, items: list[Decoded]) -> int:
        ids = list(dict.fromkeys(item.event["id"] for item in items))
        seen = ids_present(self.processed, ids, session)
        now = datetime.now(timezone.utc)
        records = []
        for item in items:
            event = item.event
            if event["id"] in seen:
                continue
            seen.add(event["id"])
            handler = self.handlers.get(short_type(event))
            if handler is not None:
                handler(session, event)
            records.append({"_id": event["id"], "type": event["type"], "subject": event["subject"],
                            "handled": handler is not None, "at": now})
        if records:
            self.processed.insert_many(records, session=session)
        faults.point("consumer.in_transaction")
        return len(records)

    def _apply_with_retries(self, item: Decoded) -> None:
        error = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                run_in_transaction(self.client, lambda session: self._apply(session, [item]),
                                   session=self.sessions.session)
                return
            except (Unavailable, ConnectionFailure):
                raise  # the database is away: stop without committing, retry from the offset
            except Exception as exc:  # noqa: BLE001 - a handler bug is this message's failure
                error = exc
            time.sleep(self.backoff_seconds * (2 ** (attempt - 1)))
        self._dead_letter(item.message, f"{type(error).__name__}: {error}")

    def _dead_letter(self, message, error: str) -> None:
        headers = [
            ("x-error", error.encode()[:4000]),
            ("x-original-topic", message.topic.encode()),
            ("x-original-partition", str(message.partition).encode()),
            ("x-original-offset", str(message.offset).encode()),
            ("x-consumer-group", self.group_id.encode()),
        ]
        future = self.kafka.producer().send(dlq_topic(message.topic), key=message.key, value=message.value,
                                            headers=headers)
        future.get(timeout=10)
        self.dead_letters.insert_one({
            "topic": message.topic, "partition": message.partition, "offset": message.offset,
            "group": self.group_id, "error": error, "at": datetime.now(timezone.utc),
        })
        log.error("dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, error)

