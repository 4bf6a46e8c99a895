"""The consumer loop gets out of a poll that never returns (kafka-python can block in a group join that a broker
never completes): the poll's consumer is closed from the watchdog thread, the group is started afresh, and a new
consumer takes over. The broker side is a stand-in here; the real case runs in tests/faults/test_3."""

from __future__ import annotations

import threading

from kafka.errors import KafkaConnectionError

from shared import consumer as consumer_module
from shared.consumer import Consumer


class BlockingConsumer:
    """A KafkaConsumer whose poll blocks until it is closed, then raises as kafka-python does."""

    def __init__(self):
        self.closed = threading.Event()

    def poll(self, timeout_ms):
        self.closed.wait(30)
        raise KafkaConnectionError("Event loop stopped")

    def close(self, autocommit=True):
        self.closed.set()


class IdleConsumer:
    """The consumer after the reset: its polls return nothing."""

    def __init__(self, stop: threading.Event):
        self.stop = stop

    def poll(self, timeout_ms):
        self.stop.set()  # one poll is enough: the loop got here
        return {}

    def assignment(self):
        return set()

    def close(self, autocommit=True):
        pass


class Link:
    def __init__(self, stop):
        self.made = [BlockingConsumer(), IdleConsumer(stop)]
        self.handed = []
        self.resets = []

    def ensure_topics(self, topics):
        return set()

    def consumer(self, group_id, topics):
        self.handed.append(self.made.pop(0))
        return self.handed[-1]

    def reset_group(self, group_id, reason):
        self.resets.append(group_id)
        return {}


def test_a_poll_stuck_in_the_join_is_closed_and_the_group_started_afresh(monkeypatch):
    monkeypatch.setattr(consumer_module, "STUCK_POLL_SECONDS", 1.0)
    stop = threading.Event()
    link = Link(stop)
    consumer = Consumer(client=None, db={"processed_events": None, "dead_letters": None}, kafka=link,
                        group_id="g", topics=["t"], handlers={}, join_timeout_seconds=1.0)
    runner = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    runner.start()
    runner.join(20)
    assert not runner.is_alive()
    first, second = link.handed
    assert first.closed.is_set()  # the stuck poll's consumer, closed by the watchdog
    assert link.resets == ["g"]  # then the group started afresh
    assert isinstance(second, IdleConsumer)  # and a new consumer polled
