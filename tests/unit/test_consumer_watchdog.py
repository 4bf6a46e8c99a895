"""The consumer loop gets out of a group that does not settle it:
- a poll that never returns (kafka-python can block in a group join that a broker never completes): the poll's
  consumer is closed from the watchdog thread, the group is started afresh, and a new consumer takes over;
- polls that return while the group rejoins for good (JoinGroup, SyncGroup, JoinGroup again; kafka-python keeps
  reporting the old partitions meanwhile): the group is started afresh and a new consumer takes over.
The broker side is a stand-in here; the real cases run in tests/faults/test_3."""

from __future__ import annotations

import threading

from kafka.errors import KafkaConnectionError

from shared import consumer as consumer_module
from shared.consumer import Consumer


# Each stand-in is made as Link.consumer makes it: from the loop's stop event and the rebalance listener.
class BlockingConsumer:
    """A KafkaConsumer whose poll blocks until it is closed, then raises as kafka-python does."""

    def __init__(self, stop, listener):
        self.closed = threading.Event()

    def poll(self, timeout_ms):
        self.closed.wait(30)
        raise KafkaConnectionError("Event loop stopped")

    def close(self, autocommit=True):
        self.closed.set()


class IdleConsumer:
    """The consumer after the reset: its polls return nothing."""

    def __init__(self, stop, listener):
        self.stop = stop

    def poll(self, timeout_ms):
        self.stop.set()  # one poll is enough: the loop got here
        return {}

    def assignment(self):
        return set()

    def close(self, autocommit=True):
        pass


class RejoiningConsumer:
    """Settled once, then revoked by a rebalance that never completes; its polls return nothing and its
    assignment still shows the old partitions, as kafka-python's does while it rejoins."""

    def __init__(self, stop, listener):
        self.listener = listener
        self.polls = 0
        self.closed = False

    def poll(self, timeout_ms):
        self.polls += 1
        if self.polls == 1:
            self.listener.on_partitions_assigned({"t-0"})
        elif self.polls == 2:
            self.listener.on_partitions_revoked({"t-0"})
        threading.Event().wait(timeout_ms / 1000)
        return {}

    def assignment(self):
        return {"t-0"}

    def close(self, autocommit=True):
        self.closed = True


# The loop's database side is not used here: no batch is applied.
DATABASE = {"processed_events": None, "dead_letters": None, "consumer_sessions": None}


class NoSessions:
    session = None

    def open(self):
        pass

    def renew(self):
        pass

    def close(self):
        pass


class Link:
    def __init__(self, stop, first=BlockingConsumer):
        self.made = [first, IdleConsumer]
        self.stop = stop
        self.handed = []
        self.resets = []

    def ensure_topics(self, topics):
        return set()

    def consumer(self, group_id, topics, listener=None):
        self.handed.append(self.made.pop(0)(self.stop, listener))
        return self.handed[-1]

    def reset_group(self, group_id, reason):
        self.resets.append(group_id)
        return {}


def run_until_a_new_consumer_polls(link: Link) -> Consumer:
    """Run the consumer loop until the second consumer the link hands out has polled once."""
    consumer = Consumer(client=None, db=DATABASE, kafka=link,
                        group_id="g", topics=["t"], handlers={}, join_timeout_seconds=1.0)
    consumer.sessions = NoSessions()
    runner = threading.Thread(target=consumer.run, args=(link.stop,), daemon=True)
    runner.start()
    runner.join(20)
    assert not runner.is_alive()
    return consumer


def test_a_poll_stuck_in_the_join_is_closed_and_the_group_started_afresh(monkeypatch):
    monkeypatch.setattr(consumer_module, "STUCK_POLL_SECONDS", 1.0)
    link = Link(threading.Event())
    run_until_a_new_consumer_polls(link)
    first, second = link.handed
    assert first.closed.is_set()  # the stuck poll's consumer, closed by the watchdog
    assert link.resets == ["g"]  # then the group started afresh
    assert isinstance(second, IdleConsumer)  # and a new consumer polled


def test_a_group_that_never_settles_the_consumer_again_is_started_afresh():
    link = Link(threading.Event(), first=RejoiningConsumer)
    consumer = run_until_a_new_consumer_polls(link)
    first, second = link.handed
    assert consumer.assigned.is_set()  # it was settled once
    assert first.polls > 3 and first.closed  # polled on, unsettled, for the join timeout; then closed
    assert link.resets == ["g"]  # the group started afresh
    assert isinstance(second, IdleConsumer)  # and a new consumer polled
