"""A service's background process: its outbox relay, its event consumer and its periodic jobs.

Web workers (gunicorn) only answer requests; this process publishes what they recorded and applies
what other services published, so the two scale apart.
"""

from __future__ import annotations

import faulthandler
import importlib
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConnectionFailure

from shared import logs
from shared.consumer import Consumer, Handler
from shared.events import source_of
from shared.kafka import KafkaLink
from shared.mongo import brief, connect
from shared.outbox import Outbox, Relay
from shared.settings import Settings

log = logging.getLogger("socorg.worker")


@dataclass
class PeriodicJob:
    """`run()` every `interval_seconds` (the first run right at start), and again at once while `more_waiting()`
    says a run stopped with work left (a run that does its work in bounded parts: a backlog is worked through
    without a pause after each part)."""

    name: str
    interval_seconds: float
    run: Callable[[], object]
    more_waiting: Callable[[], bool] = lambda: False


@dataclass
class WorkerSpec:
    """What a service's worker does besides relaying its outbox. Built by the service's
    `handlers.worker_spec(db, settings)`."""

    service: str
    handlers: dict[str, Handler] = field(default_factory=dict)
    topics: list[str] = field(default_factory=list)  # topics consumed
    jobs: list[PeriodicJob] = field(default_factory=list)
    on_stop: list[Callable[[], None]] = field(default_factory=list)  # after every thread has stopped


SpecFactory = Callable[[Database, Settings], WorkerSpec]


def spec_factory_of(service: str) -> SpecFactory:
    return importlib.import_module(f"services.{service}.handlers").worker_spec


class Worker:
    def __init__(self, service: str, settings: Settings, *, client: MongoClient | None = None,
                 spec_factory: SpecFactory | None = None):
        self.settings = settings
        self.client = client or connect(settings.mongodb_uri, app_name=f"{service}-worker")
        self.db = self.client[settings.db_of(service)]
        spec = (spec_factory or spec_factory_of(service))(self.db, settings)
        self.spec = spec
        self.kafka = KafkaLink(settings.kafka_bootstrap_servers, partitions=settings.topic_partitions,
                               replication=settings.topic_replication,
                               client_id=f"socorg-{spec.service}")
        # The consumer gets its own Kafka link: a relay reset must not close the consumer's DLQ producer.
        self.consumer_kafka = KafkaLink(settings.kafka_bootstrap_servers, partitions=settings.topic_partitions,
                                        replication=settings.topic_replication,
                                        client_id=f"socorg-{spec.service}-consumer")
        self.outbox = Outbox(self.db, source_of(spec.service))
        self.outbox.ensure_indexes()
        self.relay = Relay(self.outbox, self.db, self.kafka, settings.topic(spec.service),
                           poll_seconds=settings.relay_poll_seconds,
                           idle_poll_seconds=settings.relay_idle_poll_seconds)
        self.consumer = None
        if spec.topics:
            self.consumer = Consumer(client=self.client, db=self.db, kafka=self.consumer_kafka,
                                     group_id=settings.consumer_group(spec.service), topics=spec.topics,
                                     handlers=spec.handlers, max_attempts=settings.consumer_max_attempts,
                                     backoff_seconds=settings.consumer_backoff_seconds)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> "Worker":
        self._spawn("relay", self.relay.run)
        if self.consumer is not None:
            self._spawn("consumer", self.consumer.run)
        for job in self.spec.jobs:
            self._spawn(f"job-{job.name}", lambda stop, job=job: run_periodically(job, stop))
        return self

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """True once the consumer (if any) has joined its group and holds partitions."""
        return self.consumer is None or self.consumer.assigned.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout)
        for release in self.spec.on_stop:
            release()
        self.kafka.close()
        self.consumer_kafka.close()

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
        def on_signal(signum, frame):
            log.info("worker %s stopping on signal %s", self.spec.service, signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        log.info("worker %s running (relay%s)", self.spec.service, ", consumer" if self.consumer else "")
        self.stop_event.wait()
        self.stop()

    def _spawn(self, name: str, target: Callable[[threading.Event], None]) -> None:
        def guarded():
            try:
                target(self.stop_event)
            except Exception:  # noqa: BLE001 - a dead thread must take the process down, to be restarted
                log.exception("%s of %s failed; stopping the worker", name, self.spec.service)
                self.stop_event.set()

        thread = threading.Thread(target=guarded, name=f"{self.spec.service}-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)


def run_periodically(job: PeriodicJob, stop: threading.Event) -> None:
    """A periodic job's thread: until `stop` is set."""
    while not stop.is_set():
        try:
            job.run()
        except Exception:  # noqa: BLE001 - a failed run is logged and tried again next interval
            log.exception("periodic job %s failed", job.name)
        else:
            if job.more_waiting():
                continue
        stop.wait(job.interval_seconds)


def run_worker(service: str, settings: Settings | None = None) -> None:
    settings = settings or Settings.from_env()
    logs.configure(f"{service}-worker", settings.log_level, settings.kafka_log_level)
    # `kill -USR1 PID` writes every thread's stack to stderr and the worker goes on: for one that seems stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    client = connect(settings.mongodb_uri, app_name=f"{service}-worker")
    wait_for_mongodb(client, f"{service} worker")
    Worker(service, settings, client=client).run_forever()


def wait_for_mongodb(client: MongoClient, who: str, *, first_delay: float = 1.0, max_delay: float = 30.0) -> None:
    """Return once the database answers, saying every so often that it does not. A worker started before its
    database (a cluster coming up, the database restarting) waits for it, instead of exiting with a traceback
    to be restarted with a growing back-off. SIGTERM ends the wait as it ends the process."""
    delay = first_delay
    while True:
        try:
            client.admin.command("ping")
            return
        except ConnectionFailure as exc:
            log.warning("%s: MongoDB does not answer (%s); trying again in %.0f s", who, brief(exc), delay)
        time.sleep(delay)
        delay = min(delay * 2, max_delay)
