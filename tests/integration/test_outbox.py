"""The outbox on the real database: records and their pending markers, the relay's queue, replays, an
outbox written by an earlier version (records flagged `sent`), and events published directly (the
registry's follower) on the real broker."""

from __future__ import annotations

import socket
import time
import uuid

import pymongo
import pytest
from pymongo import ASCENDING
from pymongo.errors import BulkWriteError

from shared.events import Event
from shared.kafka import KafkaLink
from shared.outbox import AUDIT_PAGE, PENDING, SENT_FLAG_INDEX, DirectPublisher, Outbox, audit_pages_of, marker_id
from tests.faults.system import read_topic


@pytest.fixture
def outbox(servers):
    """An outbox in a database of its own (no relay runs on it)."""
    client = pymongo.MongoClient(servers.mongo_uri, tz_aware=True)
    name = f"outbox_{uuid.uuid4().hex[:12]}"
    outbox = Outbox(client[name], "/socorg/test")
    outbox.ensure_indexes()
    yield outbox
    client.drop_database(name)
    client.close()


def event(n: int, key: str = "org-1") -> Event:
    return Event(type="organization.flagged", subject=key, data={"actor": "officer", "n": n})


def ids(records: list[dict]) -> list[str]:
    return [record["_id"] for record in records]


def test_indexes_are_only_those_queries_use(outbox):
    """Each index costs every recorded event; indexes of earlier versions are dropped on start, and a start
    that finds them gone already (dropped earlier, or by another process a moment before) goes on."""
    outbox.collection.create_index([("key", ASCENDING), ("order", ASCENDING)])  # as an earlier version left it
    outbox.ensure_indexes()
    assert set(outbox.collection.index_information()) == {"_id_"}  # records are read by id alone
    outbox.ensure_indexes()
    assert set(outbox.collection.index_information()) == {"_id_"}
    assert set(outbox.markers.index_information()) == {"_id_"}  # markers are read in order by their id alone
    assert set(outbox.audit_pages.index_information()) == {"_id_", "keys_1"}


def test_the_relay_reads_unsent_records_in_the_order_they_were_recorded(outbox):
    first = [event(1), event(2, key="org-2")]
    second = [event(3)]
    outbox.add(None, first)
    outbox.add(None, second)
    assert ids(outbox.pending(10).records) == ids([{"_id": e.id} for e in first + second])
    assert ids(outbox.pending(2).records) == [first[0].id, first[1].id]
    assert outbox.backlog() == 2  # one marker for each change that recorded events

    outbox.mark_sent(outbox.pending(2))
    assert ids(outbox.pending(10).records) == [second[0].id]
    assert outbox.backlog() == 1
    assert outbox.collection.count_documents({}) == 3  # sent records stay: they are the event log
    assert all(set(r) == {"_id", "key", "order", "event", "created_at"} for r in outbox.collection.find())


def test_the_relay_reads_the_markers_alone(outbox):
    """A marker carries its records' messages: the relay publishes what it says even with the records gone."""
    recorded = [event(1), event(2, key="org-2")]
    envelopes = outbox.add(None, recorded)
    outbox.collection.delete_many({})
    batch = outbox.pending(10)
    assert [(r["_id"], r["key"], r["event"]) for r in batch.records] == \
        [(e.id, e.partition_key, envelope) for e, envelope in zip(recorded, envelopes)]



def test_the_relay_takes_whole_markers(outbox):
    """A batch ends at a marker boundary, so a marker is deleted only when all its records were published;
    one marker with more records than the batch size is taken whole."""
    together = [event(n) for n in range(3)]
    alone = event(3)
    outbox.add(None, together)
    outbox.add(None, [alone])
    assert ids(outbox.pending(2).records) == [e.id for e in together]
    assert ids(outbox.pending(3).records) == [e.id for e in together]
    assert ids(outbox.pending(4).records) == [e.id for e in together + [alone]]
    outbox.mark_sent(outbox.pending(3))
    assert ids(outbox.pending(10).records) == [alone.id]


def test_a_record_never_exists_without_its_marker(outbox):
    """Without the caller's transaction, records and markers are written in one of their own: when the insert
    fails half-way, nothing of it stays."""
    kept = event(1)
    outbox.add(None, [kept])
    later = event(2)
    with pytest.raises(BulkWriteError):
        outbox.add(None, [later, kept])  # `kept` is recorded already: a duplicate id after `later`
    assert outbox.collection.find_one({"_id": later.id}) is None
    assert ids(outbox.pending(10).records) == [kept.id]


def earlier_marker(order: int, record_id: str) -> dict:
    """A marker as earlier versions wrote it: the ids of its records, not their messages."""
    return {"_id": marker_id({"order": order, "_id": record_id}), "records": [record_id]}


def test_a_marker_of_an_earlier_version_is_published_from_its_records(outbox):
    recorded = event(1)
    outbox.add(None, [recorded])
    outbox.markers.delete_many({})
    record = outbox.collection.find_one({"_id": recorded.id})
    outbox.markers.insert_one(earlier_marker(record["order"], recorded.id))
    alongside = event(2)
    outbox.add(None, [alongside])
    batch = outbox.pending(10)
    assert ids(batch.records) == [recorded.id, alongside.id]
    assert batch.records[0]["event"] == record["event"] and batch.records[0]["key"] == record["key"]


def test_a_marker_of_an_earlier_version_whose_records_were_deleted_by_hand_goes(outbox, caplog):
    """It can never be published: left in place, the backlog would never reach zero."""
    outbox.markers.insert_one(earlier_marker(1, "deleted-by-hand"))
    assert outbox.pending(10).records == []
    assert outbox.backlog() == 0
    assert "missing (deleted by hand?)" in caplog.text
    kept = event(1)
    outbox.add(None, [kept])
    outbox.markers.insert_one(earlier_marker(2, "also-deleted"))
    batch = outbox.pending(10)
    assert ids(batch.records) == [kept.id]
    outbox.mark_sent(batch)  # the relay published what there was: both markers go
    assert outbox.backlog() == 0


def test_the_audit_trail_finds_records_by_subject_and_by_actor(outbox):
    outbox.add(None, [Event(type="organization.flagged", subject="org-1", data={"actor": "officer-a"})])
    outbox.add(None, [Event(type="organization.flagged", subject="org-2", data={"actor": "officer-a"})])
    outbox.add(None, [Event(type="organization.cleared", subject="org-1", data={"actor": "officer-b"})])

    def subjects_and_actors(**query):
        total, records = outbox.audit(**query)
        return total, [(r["event"]["subject"], r["event"]["data"]["actor"]) for r in records]

    assert subjects_and_actors(subject="org-1") == (2, [("org-1", "officer-b"), ("org-1", "officer-a")])
    assert subjects_and_actors(actor="officer-a") == (2, [("org-2", "officer-a"), ("org-1", "officer-a")])
    assert subjects_and_actors(subject="org-1", actor="officer-a") == (1, [("org-1", "officer-a")])
    assert subjects_and_actors(actor="org-1") == (0, [])  # a subject is not an actor
    assert subjects_and_actors(event_type="org.socorg.organization.cleared") == (1, [("org-1", "officer-b")])
    assert subjects_and_actors(subject="org-1", event_type="org.socorg.organization.flagged") == \
        (1, [("org-1", "officer-a")])
    assert subjects_and_actors(actor="officer-a", skip=1, limit=1) == (2, [("org-1", "officer-a")])


def test_the_audit_trail_lists_what_was_published_directly_once(outbox):
    """The registry's follower writes the records of the events it published, and their audit pages, without a
    transaction (pages first): a batch written again after a crash, or a record a command wrote meanwhile, is
    listed once; a page whose records a crash left unwritten lists nothing."""
    published = [Event(type="organization.submitted", subject=f"org-{n}", data={"actor": "zhang"}) for n in range(3)]
    records = outbox.records_of(published)
    outbox.add(None, [published[1]])  # a command recorded this one meanwhile
    assert outbox.add_published(records) == 2
    assert outbox.add_published(outbox.records_of(published)) == 0  # written again (a restarted follower)
    total, found = outbox.audit(actor="zhang")
    assert total == 3 and sorted(r["_id"] for r in found) == sorted(e.id for e in published)
    assert outbox.audit(subject="org-1")[0] == 1

    lost = Event(type="organization.submitted", subject="org-9", data={"actor": "zhang"})
    outbox.audit_pages.insert_many(audit_pages_of(outbox.records_of([lost])))  # its records never written
    assert [r["_id"] for r in outbox.audit(subject="org-9")[1]] == []
    outbox.add_published(outbox.records_of([lost]))
    assert [r["_id"] for r in outbox.audit(subject="org-9")[1]] == [lost.id]


def test_a_large_batch_is_listed_on_pages_of_at_most_audit_page_records(outbox):
    published = [Event(type="organization.submitted", subject=f"org-{n}", data={"actor": "zhang"})
                 for n in range(AUDIT_PAGE + 3)]
    outbox.add_published(outbox.records_of(published))
    assert sorted(len(page["entries"]) for page in outbox.audit_pages.find()) == [3, AUDIT_PAGE]
    total, newest = outbox.audit(actor="zhang", limit=2)
    assert total == AUDIT_PAGE + 3 and [r["_id"] for r in newest] == [published[-1].id, published[-2].id]


@pytest.mark.parametrize("indexes", [
    [[("event.subject", ASCENDING), ("order", ASCENDING)], [("event.data.actor", ASCENDING), ("order", ASCENDING)]],
    [[("audit", ASCENDING), ("order", ASCENDING)]],
])
def test_an_outbox_of_an_earlier_version_gets_its_audit_pages(outbox, indexes):
    """Earlier versions indexed the records for the trail (by subject and by actor apart, then by `audit` keys):
    on start their records get audit pages and the indexes go; the trail finds the old records as it finds new
    ones, and a second start changes nothing."""
    base = time.time_ns()
    outbox.collection.insert_many([{"_id": f"old-{n}", "key": "org-1", "order": base + n,
                                    "event": {"id": f"old-{n}", "type": "t", "subject": "org-1",
                                              "data": {"actor": f"a{n % 2}"}}}
                                   for n in range(3)])
    for index in indexes:
        outbox.collection.create_index(index)
    outbox.ensure_indexes()
    assert set(outbox.collection.index_information()) == {"_id_"}
    assert outbox.audit(subject="org-1")[0] == 3
    assert [r["_id"] for r in outbox.audit(actor="a0")[1]] == ["old-2", "old-0"]
    pages = outbox.audit_pages.count_documents({})
    outbox.ensure_indexes()
    assert outbox.audit_pages.count_documents({}) == pages


def test_a_replay_queues_every_record_once_in_order(outbox):
    events = [event(n, key=f"org-{n % 2}") for n in range(5)]
    for e in events:
        outbox.add(None, [e])
    outbox.mark_sent(outbox.pending(3))
    assert outbox.mark_all_for_replay() == 3  # the two still queued stay queued once
    assert outbox.mark_all_for_replay() == 0
    assert ids(outbox.pending(10).records) == [e.id for e in events]


def test_an_outbox_of_an_earlier_version_keeps_its_unsent_records(outbox):
    """Earlier versions flagged each record `sent` and indexed the flag: on start, the unsent ones get markers,
    the flags and their index go, and nothing is sent twice or lost."""
    base = time.time_ns()
    records = [{"_id": f"old-{n}", "key": "org-1", "order": base + n, "event": {"id": f"old-{n}"}, "sent": n < 3,
                **({"sent_at": "earlier"} if n < 3 else {})} for n in range(5)]
    outbox.collection.insert_many(records)
    outbox.collection.create_index([("sent", ASCENDING), ("order", ASCENDING)])
    outbox.ensure_indexes()
    assert ids(outbox.pending(10).records) == ["old-3", "old-4"]
    assert outbox.collection.count_documents({"sent": {"$exists": True}}) == 0
    assert outbox.collection.count_documents({"sent_at": {"$exists": True}}) == 0
    assert SENT_FLAG_INDEX not in outbox.collection.index_information()
    outbox.ensure_indexes()  # started again: nothing more to do
    assert ids(outbox.pending(10).records) == ["old-3", "old-4"]
    assert outbox.collection.database[PENDING].count_documents({}) == 2
    assert sorted(m["_id"] for m in outbox.markers.find()) == [marker_id(r) for r in records[3:]]


# -- publishing directly (the registry's follower) ---------------------------------------------------------
@pytest.fixture
def topic_link(servers):
    """A Kafka link and a topic of their own."""
    link = KafkaLink(servers.bootstrap, partitions=1, client_id="direct-test")
    yield link, f"direct.{uuid.uuid4().hex[:12]}"
    link.close()


def test_a_direct_publisher_publishes_then_records_without_a_marker(outbox, topic_link, servers):
    link, topic = topic_link
    events = [event(1), event(2, key="org-2"), event(3)]
    assert DirectPublisher(outbox, link, topic).publish(events) == 3
    assert [m.event_id for m in read_topic(servers.bootstrap, topic, idle_ms=1000)] == [e.id for e in events]
    assert sorted(ids(list(outbox.collection.find()))) == sorted(e.id for e in events)
    assert outbox.backlog() == 0  # published already: nothing for the relay


def test_a_direct_publisher_leaves_recorded_events_to_the_relay(outbox, topic_link, servers):
    """A command records the events its organization carries in its own transaction: those the relay
    publishes (in order before the command's own), and the follower neither publishes nor records them again."""
    link, topic = topic_link
    recorded, new = event(1), event(2)
    outbox.add(None, [recorded])
    before = outbox.collection.find_one({"_id": recorded.id})
    assert DirectPublisher(outbox, link, topic).publish([recorded, new]) == 1
    assert [m.event_id for m in read_topic(servers.bootstrap, topic, idle_ms=1000)] == [new.id]
    assert outbox.collection.find_one({"_id": recorded.id}) == before
    assert ids(outbox.pending(10).records) == [recorded.id]


def unreachable_link() -> KafkaLink:
    """A link to a port nothing listens on, giving up after a second."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return KafkaLink(f"127.0.0.1:{closed.getsockname()[1]}", client_id="direct-test-down",
                         bootstrap_timeout_ms=1000)


def test_a_direct_publisher_hands_its_batches_to_the_relay_while_the_broker_is_down(outbox, monkeypatch):
    """A batch the broker does not take goes to the relay like any recorded event (records and a marker),
    and so do the next ones for PAUSE_SECONDS, without trying the broker again."""
    down = unreachable_link()
    publisher = DirectPublisher(outbox, down, "direct.down")
    first, second = [event(1)], [event(2)]
    assert publisher.publish(first) == 1
    monkeypatch.setattr(down, "publish", lambda *a: pytest.fail("the broker was tried again while paused"))
    assert publisher.publish(second) == 1
    assert ids(outbox.pending(10).records) == [first[0].id, second[0].id]
    assert outbox.collection.count_documents({}) == 2
    down.close()


def test_a_direct_publisher_tries_the_broker_again_after_its_pause(outbox, monkeypatch):
    down = unreachable_link()
    real, attempts = down.ensure_topics, []

    def counted(topics):
        attempts.append(topics)
        return real(topics)

    monkeypatch.setattr(down, "ensure_topics", counted)
    monkeypatch.setattr(DirectPublisher, "PAUSE_SECONDS", 0.0)
    publisher = DirectPublisher(outbox, down, "direct.down")
    assert publisher.publish([event(1)]) == 1
    assert publisher.publish([event(2)]) == 1
    assert len(attempts) == 2
    assert outbox.backlog() == 2  # both went to the relay
    down.close()


def test_a_link_that_saw_no_error_across_a_broker_restart_loses_nothing(tmp_path):
    """Tansu keeps everything in memory: a restarted broker hands out producer ids from 1 again. A link whose
    producer saw no error while the broker was away (the registry's follower, when no application came)
    still holds its old id; had it an idempotent producer, a new link given the same id first (a relay
    reconnecting) would make the broker take the old one's later batches for duplicates: acknowledged,
    never written (seen in the broker-outage fault scenario: 23 `submitted` events recorded as published and
    never delivered). So the links do not use the idempotent producer (shared/kafka.py)."""
    from shared import infra
    from shared.events import envelope

    def message(n: int) -> tuple[str, dict]:
        published = event(n)
        return "k", {**envelope(published, "/socorg/test"), "id": f"event-{n}"}

    port = infra.free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = infra.start_broker(port, tmp_path)
    stale = KafkaLink(bootstrap, partitions=1, client_id="stale")
    fresh = None
    topic = f"restart.{uuid.uuid4().hex[:12]}"
    try:
        stale.ensure_topics([topic])
        stale.publish(topic, [message(0)])  # the first producer of this broker's life
        broker.stop()
        broker = infra.start_broker(port, tmp_path)
        fresh = KafkaLink(bootstrap, partitions=1, client_id="fresh")  # the first producer of the new one's
        fresh.ensure_topics([topic])
        fresh.publish(topic, [message(n) for n in (1, 2, 3)])
        stale.publish(topic, [message(4)])  # acknowledged: so it must be on the topic
        on_topic = [m.event_id for m in read_topic(bootstrap, topic, idle_ms=1500)]
        assert on_topic == ["event-1", "event-2", "event-3", "event-4"]
    finally:
        for link in (stale, fresh):
            if link is not None:
                link.close()
        broker.stop()


def test_a_quiet_relay_looks_less_often_and_publishes_the_next_event_within_its_idle_poll(outbox, topic_link,
                                                                                        servers, monkeypatch):
    """After a quiet spell the relay polls every `idle_poll_seconds` instead of every `poll_seconds` (it polled
    the database twenty times a second for nothing), and goes back to its short poll once it publishes."""
    import threading

    from shared.outbox import Relay

    link, topic = topic_link
    relay = Relay(outbox, outbox.collection.database, link, topic, poll_seconds=0.01, idle_poll_seconds=0.3)
    monkeypatch.setattr(Relay, "IDLE_AFTER_SECONDS", 0.2)
    polls = []
    pending = outbox.pending
    monkeypatch.setattr(outbox, "pending", lambda limit: polls.append(time.monotonic()) or pending(limit))
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        quiet_since = time.monotonic() - 0.6
        assert 0 < len([t for t in polls if t > quiet_since]) <= 3  # every 0.3 s, not every 0.01 s
        recorded = event(1)
        outbox.add(None, [recorded])
        added = time.monotonic()
        assert [m.event_id for m in read_topic(servers.bootstrap, topic, idle_ms=1000)] == [recorded.id]
        published = next(t for t in polls if t > added)
        assert published - added <= 0.3 + 0.2
        assert len([t for t in polls if published < t <= published + 0.15]) >= 5  # the short poll again
    finally:
        stop.set()
        thread.join(5)
