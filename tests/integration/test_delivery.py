"""The event backbone loses nothing: broker outage, consumer crash, poison message."""

from __future__ import annotations

import json
import logging
import time

from kafka import KafkaConsumer, KafkaProducer

from shared.events import Event, dlq_topic, encode, envelope, source_of
from tests.support.data import application
from tests.support.stack import DurableServers, Stack, wait_until


def read_models(stack, service, ids):
    return {doc["_id"]: doc for doc in stack.db(service)["organizations"].find({"_id": {"$in": list(ids)}})}


def all_registered(stack, service, ids):
    models = read_models(stack, service, ids)
    return len(models) == len(ids) and all(m["status"] == "registered" for m in models.values())


def test_broker_outage_loses_nothing(private_servers):
    stack = Stack(private_servers).start_workers()
    try:
        applicant = stack.client("registry", "applicant", sub="outage")
        officer = stack.client("registry", "officer")
        ids = [applicant.post("/api/v1/organizations", application()).body["id"] for _ in range(20)]
        for service in ("evaluation", "fund"):
            wait_until(lambda: len(read_models(stack, service, ids)) == 20, timeout=20, message="submitted events")

        private_servers.broker.kill()
        assert stack.client("registry").get("/readyz").status == 503
        for organization_id in ids:
            approved = officer.post(f"/api/v1/organizations/{organization_id}/approve")
            assert approved.status == 200, approved.body
        private_servers.start_broker()  # a fresh Tansu: topics, messages and offsets are gone

        for service in ("evaluation", "fund"):
            wait_until(lambda: all_registered(stack, service, ids), timeout=60, message=f"{service} after outage")
            # Each organization had two events; replays after the outage were absorbed, not applied again.
            assert {m["applied_events"] for m in read_models(stack, service, ids).values()} == {2}
            assert stack.db(service)["processed_events"].count_documents({"subject": {"$in": ids}}) == 40
    finally:
        stack.close()


def submitted(organization_id: str) -> bytes:
    """A registry event as the registry's relay would publish it."""
    snapshot = {"id": organization_id, "name": f"上海市浦东新区{organization_id}协会", "status": "submitted",
                "risk": "none", "version": 1}
    return encode(envelope(Event(type="registry.organization.submitted", subject=organization_id,
                                 data={"actor": "applicant", "organization": snapshot}), source_of("registry")))


def test_database_outage_mid_stream_keeps_the_consumer_in_its_group(tmp_path, caplog):
    """SecantusDB killed (kill -9) while events arrive: the batches it fails are read again after a pause, by the
    same group member (leaving and joining again costs seconds on Tansu), and each event is applied once."""
    servers = DurableServers(log_dir=tmp_path / "logs", mongo_storage=str(tmp_path / "mongo")).start()
    stack = Stack(servers)
    try:
        stack.start_workers("fund")
        consumer = stack.workers["fund"].consumer
        joins = []
        make_consumer = consumer.kafka.consumer
        consumer.kafka.consumer = lambda *args, **kw: joins.append(1) or make_consumer(*args, **kw)
        producer = KafkaProducer(bootstrap_servers=servers.bootstrap)
        topic = stack.settings.topic("registry")
        before = [f"org_before_{n}" for n in range(10)]
        during = [f"org_during_{n}" for n in range(30)]
        for organization_id in before:
            producer.send(topic, key=organization_id.encode(), value=submitted(organization_id))
        producer.flush()
        processed = stack.db("fund")["processed_events"]
        wait_until(lambda: processed.count_documents({}) == 10, timeout=30, message="events before the outage")

        caplog.set_level(logging.WARNING, logger="socorg.consumer")
        servers.mongo.kill()
        for organization_id in during:
            producer.send(topic, key=organization_id.encode(), value=submitted(organization_id))
        producer.flush()
        wait_until(lambda: "database failed a batch" in caplog.text, timeout=30, message="a failed batch")
        servers.start_mongo()

        wait_until(lambda: processed.count_documents({}) == 40, timeout=60, message="events after the outage")
        models = stack.db("fund")["organizations"].find({"_id": {"$in": during}})
        assert sorted(m["_id"] for m in models if m["applied_events"] == 1) == sorted(during)
        assert joins == [], "the consumer left its group and joined again"
        producer.close()
    finally:
        stack.close()
        servers.stop()


def test_a_consumer_that_committed_gets_through_a_rebalance(stack):
    """A second member joins the fund consumer's group and leaves again: the consumer, which has committed
    offsets by then, is settled again after each rebalance and goes on applying. kafka-python 3.0 drops a
    join that completes while no poll awaits it; the consumer's committed-offsets check, when it ran during a
    rebalance, waited behind the JoinGroup the broker holds on the same connection, so every join completed
    inside it, and the consumer joined again every 3 s for good (found in fault scenario 3)."""
    stack.start_workers("fund")
    producer = KafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap_servers)
    topic = stack.settings.topic("registry")
    processed = stack.db("fund")["processed_events"]

    def publish(ids):
        for organization_id in ids:
            producer.send(topic, key=organization_id.encode(), value=submitted(organization_id))
        producer.flush()

    publish([f"org_before_{n}" for n in range(6)])
    wait_until(lambda: processed.count_documents({}) == 6, timeout=30, message="events before the rebalance")
    time.sleep(2 * stack.workers["fund"].consumer.offsets_check_seconds)  # its offsets check has run

    other = KafkaConsumer(topic, group_id=stack.settings.consumer_group("fund"), enable_auto_commit=False,
                          bootstrap_servers=stack.settings.kafka_bootstrap_servers, session_timeout_ms=6000,
                          heartbeat_interval_ms=1000, max_poll_interval_ms=30000)
    try:
        # Polled back to back: kafka-python drops a join that completes between two polls (see above).
        deadline = time.monotonic() + 60
        while not other.assignment():
            assert time.monotonic() < deadline, "a second member was not given partitions in 60 s"
            other.poll(timeout_ms=1000)
        publish([f"org_shared_{n}" for n in range(6)])  # some for each member; the other reads without applying
    finally:
        other.close(autocommit=False)  # leaves the group: one more rebalance, back to one member

    publish([f"org_after_{n}" for n in range(6)])
    wait_until(lambda: _applied(stack, "org_after_") == 6, timeout=60, message="events after the rebalances")
    wait_until(lambda: _applied(stack, "org_shared_") == 6, timeout=30, message="the other member's share, again")
    producer.close()


def _applied(stack, prefix: str) -> int:
    return stack.db("fund")["organizations"].count_documents({"_id": {"$regex": f"^{prefix}"}})


def test_consumer_crash_between_effect_and_commit_applies_once(stack):
    stack.start_workers("registry")  # the relay publishes registry events
    crashing = stack.spawn_worker("fund", SOCORG_FAULTS="consumer.after_apply")
    organization = stack.client("registry", "applicant").post("/api/v1/organizations", application()).body
    assert crashing.wait(60) == 137, "the fund worker should have died at the fault point"
    model = stack.db("fund")["organizations"].find_one({"_id": organization["id"]})
    assert model is not None and model["applied_events"] == 1  # the effect committed before the crash

    restarted = stack.spawn_worker("fund")
    try:
        officer = stack.client("registry", "officer")
        assert officer.post(f"/api/v1/organizations/{organization['id']}/approve").status == 200
        wait_until(lambda: all_registered(stack, "fund", [organization["id"]]), timeout=30, message="after restart")
        # The submitted event came again after the restart (its offset was never committed) and was skipped.
        assert stack.db("fund")["organizations"].find_one({"_id": organization["id"]})["applied_events"] == 2
    finally:
        restarted.terminate()
        restarted.wait(30)


def test_a_consumer_killed_inside_its_transaction_is_taken_over_at_once(stack):
    """A worker dies with its batch's transaction open: the database would keep the records that transaction
    wrote until it reaps it (60 s), and the next worker, reading the same events, would conflict on them until
    then. The next worker ends its predecessor's recorded session, which aborts that transaction, and applies
    the events within seconds, each once."""
    stack.start_workers("registry")  # the relay publishes registry events
    crashing = stack.spawn_worker("fund", SOCORG_FAULTS="consumer.in_transaction")
    organization = stack.client("registry", "applicant").post("/api/v1/organizations", application()).body
    assert crashing.wait(60) == 137, "the fund worker should have died inside its transaction"
    assert stack.db("fund")["organizations"].find_one({"_id": organization["id"]}) is None  # nothing committed

    restarted = stack.spawn_worker("fund")
    try:
        started = time.monotonic()
        wait_until(lambda: read_models(stack, "fund", [organization["id"]]), timeout=60, message="taken over")
        taken_over = time.monotonic() - started
        assert taken_over < 25, f"the event waited {taken_over:.0f} s for the dead worker's transaction"
        assert stack.db("fund")["organizations"].find_one({"_id": organization["id"]})["applied_events"] == 1
    finally:
        restarted.terminate()
        restarted.wait(30)


def test_poison_message_goes_to_the_dlq_and_the_consumer_moves_on(stack):
    stack.start_workers()
    topic = stack.settings.topic("registry")
    producer = KafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap_servers)
    producer.send(topic, key=b"poison", value=b"{this is not json")
    # JSON, but nested beyond any parser's reach (it raised RecursionError, out of the decode step), and an
    # envelope holding half a surrogate pair, which no database can store.
    too_deep = b"[" * 5000 + b"]" * 5000
    producer.send(topic, key=b"deep", value=too_deep)
    half = envelope(Event(type="registry.organization.registered", subject="org_half",
                          data={"actor": "test", "organization": {"id": "org_half", "version": 1}}),
                    source_of("registry"))
    half_pair = encode(half).replace(b'"org_half"', b'"org_\\ud800"', 1)
    producer.send(topic, key=b"half", value=half_pair)
    # A well-formed event whose handler fails every time (its snapshot is not an object with a version).
    broken = envelope(Event(type="registry.organization.registered", subject="org_broken",
                            data={"actor": "test", "organization": {"id": "org_broken", "version": "not-a-number"}}),
                      source_of("registry"))
    producer.send(topic, key=b"org_broken", value=encode(broken))
    producer.flush()
    organization = stack.client("registry", "applicant").post("/api/v1/organizations", application()).body

    # The consumer kept going: the valid event after the poison ones was applied.
    wait_until(lambda: read_models(stack, "fund", [organization["id"]]), timeout=20, message="valid event applied")
    wait_until(lambda: stack.db("fund")["dead_letters"].count_documents({}) == 4, timeout=20, message="dead letters")

    dlq = KafkaConsumer(dlq_topic(topic), bootstrap_servers=stack.settings.kafka_bootstrap_servers,
                        group_id=f"{stack.name}-dlq-reader", auto_offset_reset="earliest",
                        session_timeout_ms=6000, heartbeat_interval_ms=1000, consumer_timeout_ms=15000)
    try:
        letters = []
        for message in dlq:
            letters.append(message)
            if len(letters) >= 8:  # evaluation and fund each dead-letter the four messages
                break
    finally:
        dlq.close()
    assert len(letters) == 8
    values = {message.value for message in letters}
    assert values == {b"{this is not json", too_deep, half_pair, encode(broken)}
    for message in letters:
        headers = dict(message.headers)
        assert headers["x-original-topic"].decode() == topic
        assert headers["x-error"]
    assert stack.db("fund")["organizations"].find_one({"_id": "org_broken"}) is None
    errors = [d["error"] for d in stack.db("fund")["dead_letters"].find()]
    assert any("invalid event" in e for e in errors) and any("ValueError" in e for e in errors)
    assert any("nest too deeply" in e for e in errors) and any("unpaired surrogate" in e for e in errors)
    json.dumps(errors)  # stored errors are plain text
