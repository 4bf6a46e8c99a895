"""A relay refills its topic when the broker lost it, even when a consumer re-created the topic first.

Fault scenario 1 found this: after Tansu restarted empty, the evaluation and fund consumers re-created the
registry topic (they create the topics they read) before the registry's relay looked, so the relay saw
an existing topic, replayed nothing, and the events published just before the crash never reached them.
"""

from __future__ import annotations

from shared.kafka import KafkaLink
from shared.outbox import PENDING
from tests.faults.system import read_topic
from tests.support.data import application
from tests.support.stack import Stack, wait_until


def test_relay_replays_into_a_topic_someone_else_recreated(private_servers):
    stack = Stack(private_servers).start_workers("registry")
    try:
        applicant = stack.client("registry", "applicant", sub="recreated-topic")
        ids = [applicant.post("/api/v1/organizations", application()).body["id"] for _ in range(3)]
        outbox = stack.db("registry")["outbox"]
        wait_until(lambda: outbox.count_documents({}) == 3 and stack.db("registry")[PENDING].count_documents({}) == 0,
                   timeout=30, message="published")
        stack.stop_workers()

        private_servers.broker.kill()
        private_servers.start_broker()  # empty: the published events are gone
        topic = stack.settings.topic("registry")
        consumer_side = KafkaLink(stack.settings.kafka_bootstrap_servers, partitions=stack.settings.topic_partitions)
        assert consumer_side.ensure_topics([topic]) == {topic}  # as a consumer restarting first does
        consumer_side.close()

        stack.start_workers("registry")
        # The relay sees a topic it did not create, with another id than the one it published to: it replays.
        events = {r["_id"] for r in outbox.find()}
        wait_until(lambda: {m.event_id for m in read_topic(stack.settings.kafka_bootstrap_servers, topic, 1000)}
                   == events, timeout=30, message="the outbox replayed into the re-created topic")
        assert {r["key"] for r in outbox.find()} == set(ids)
    finally:
        stack.close()
