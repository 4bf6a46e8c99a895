"""Kafka clients configured once, with the settings ../shared/INFRA.md asks for.

Only standard client features are used, so pointing KAFKA_BOOTSTRAP_SERVERS at Apache Kafka changes
nothing else.
"""

from __future__ import annotations

import logging
import threading

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import MemberToRemove, NewTopic
from kafka.errors import TopicAlreadyExistsError

from shared.events import encode

log = logging.getLogger("socorg.kafka")


class _AdminClient(KafkaAdminClient):
    def _process_acl_operations(self, obj):
        # Tansu answers DescribeGroups with operation codes kafka-python cannot name (and raises on); we never
        # read them.
        obj.pop("authorized_operations", None)
        return obj


class KafkaLink:
    """Lazily created producer and admin client, recreated after a broker failure."""

    def __init__(self, bootstrap_servers: str, *, partitions: int = 6, replication: int = 1,
                 client_id: str = "socorg", bootstrap_timeout_ms: int = 30000):
        self.bootstrap_servers = bootstrap_servers.split(",")
        self.partitions = partitions
        self.replication = replication
        self.client_id = client_id
        # How long creating the producer or the admin client waits for a broker (kafka-python's default:
        # 30 s); a link whose caller has other work to do waits less.
        self.bootstrap_timeout_ms = bootstrap_timeout_ms
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.Lock()

    def producer(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                # Not the idempotent producer: a restarted Tansu (memory only) hands out producer ids from 1
                # again, and a producer that saw no error while it was away keeps its old id; once the broker
                # gives that id to another producer, it takes the old one's batches for duplicates of the
                # other's, acknowledges them and writes nothing (test_outbox.py shows it). A retry can
                # publish a message twice instead, which consumers apply once; one request in flight keeps
                # each partition's order through retries.
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=self.client_id,
                    bootstrap_timeout_ms=self.bootstrap_timeout_ms,
                    acks="all",
                    enable_idempotence=False,
                    max_in_flight_requests_per_connection=1,
                    linger_ms=2,
                    max_block_ms=5000,
                    request_timeout_ms=5000,
                    retries=5,
                )
            return self._producer

    def publish(self, topic: str, messages: list[tuple[str, dict]]) -> None:
        """Send `(key, CloudEvents document)` messages in order and wait until the broker has every one;
        raises (KafkaError) if any is not acknowledged: the caller treats the whole batch as unpublished."""
        producer = self.producer()
        futures = [producer.send(topic, key=key.encode(), value=encode(event)) for key, event in messages]
        producer.flush(timeout=10)
        for future in futures:
            future.get(timeout=10)

    def admin(self) -> KafkaAdminClient:
        with self._lock:
            if self._admin is None:
                self._admin = _AdminClient(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=f"{self.client_id}-admin",
                    bootstrap_timeout_ms=self.bootstrap_timeout_ms,
                    request_timeout_ms=5000,
                )
            return self._admin

    def ensure_topics(self, topics: list[str]) -> set[str]:
        """Create the topics that do not exist yet; return the ones created."""
        existing = set(self.admin().list_topics())
        missing = [t for t in topics if t not in existing]
        created = set()
        for topic in missing:
            try:
                self.admin().create_topics([NewTopic(topic, self.partitions, self.replication)])
                created.add(topic)
                log.info("created topic %s with %d partitions", topic, self.partitions)
            except TopicAlreadyExistsError:
                pass
        return created

    def topic_id(self, topic: str) -> str | None:
        """The broker's id of the topic as it exists now (a re-created topic gets a new one; Kafka 2.8+),
        or None when the topic is missing or the broker gives no id."""
        for description in self.admin().describe_topics([topic]):
            topic_id = str(description.get("topic_id") or "")
            if description.get("error_code") == 0 and topic_id.strip("0-"):
                return topic_id
        return None

    def reset_group(self, group_id: str, reason: str) -> dict | None:
        """Start the consumer group afresh with the offsets it had committed; return those offsets, or None
        when the group was working (stable) and was left alone.

        Tansu can keep a member killed with kill -9 as the group's leader for good: each rebalance elects the
        dead member again and waits for its assignment, which never comes, so no live consumer gets a
        partition (measured: minutes, without end; removing the members does not help). Deleting the group
        clears that state; its committed offsets are written back to the empty group, so nothing is read
        again that was not read again anyway. Live members join the new group within a session."""
        admin = self.admin()
        description = admin.describe_groups([group_id]).get(group_id) or {}
        if description.get("group_state") == "Stable":
            # A working group whose members hold every partition (more members than partitions).
            log.warning("group %s (%s) left alone: it is Stable with members %s", group_id, reason,
                        [(member.get("client_id"), member.get("client_host"), member.get("member_id"))
                         for member in description.get("members") or []])
            return None
        offsets = admin.list_group_offsets({group_id: None}).get(group_id) or {}
        members = [MemberToRemove(member_id=member["member_id"], reason=reason)
                   for member in description.get("members") or []]
        if members:
            admin.remove_group_members(group_id, members)
        admin.delete_groups([group_id])
        kept = {partition: offset for partition, offset in offsets.items() if offset.offset >= 0}
        if kept:
            admin.alter_group_offsets(group_id, kept)
        return kept

    def consumer(self, group_id: str, topics: list[str], *, listener=None, **overrides) -> KafkaConsumer:
        """A consumer in the group, subscribed to the topics; `listener` (a ConsumerRebalanceListener) hears the
        group's assignments."""
        options = dict(
            bootstrap_servers=self.bootstrap_servers,
            client_id=f"{self.client_id}-{group_id}",
            group_id=group_id,
            enable_auto_commit=False,
            # Tansu reports wrong end offsets: always start from committed offsets, else the beginning.
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            # Also the rebalance timeout: how long a rebalance waits for the group's members to rejoin. A
            # member killed with kill -9 never does; Kafka's default of 5 minutes would hold the group (and
            # the consumer replacing it) that long. A batch is applied well within this between polls.
            max_poll_interval_ms=30000,
            fetch_max_wait_ms=50,
            # A poll's records are applied in one transaction before the next poll, so a poll must stay well
            # within max_poll_interval_ms even on a slow database: with 500, a loaded SecantusDB took over 30 s
            # and the group dropped the member mid-batch, again and again (its commit failed each time).
            max_poll_records=100,
            request_timeout_ms=10000,
        )
        options.update(overrides)
        consumer = KafkaConsumer(**options)
        consumer.subscribe(topics, listener=listener)
        return consumer

    def reset(self) -> None:
        with self._lock:
            for client in (self._producer, self._admin):
                if client is not None:
                    try:
                        client.close(timeout=1) if isinstance(client, KafkaProducer) else client.close()
                    except Exception:  # noqa: BLE001 - closing a broken client must not mask the first error
                        pass
            self._producer = None
            self._admin = None

    def close(self) -> None:
        self.reset()
