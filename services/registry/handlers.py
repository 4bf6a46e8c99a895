"""The registry's background work, run by its worker process (`socorg worker registry`).

It consumes no other service's events. Besides the outbox relay the worker runs two periodic jobs:
- `follow-organizations`: follows the organizations' change stream, publishing the events new applications
  carry (and recording them in the outbox) and keeping the search index up to date (see
  store.OrganizationFollower);
- `daily-risk-sweep`: once a day, after REGISTRY_SWEEP_TIME (Asia/Shanghai), the same sweep as
  `POST /api/v1/risk-sweeps` for today (REGISTRY_SWEEP_CHECK_SECONDS <= 0 turns it off).
"""

from __future__ import annotations

import logging

from pymongo.database import Database

from services.registry import domain
from services.registry.store import OrganizationFollower, RegistryStore
from shared.events import source_of
from shared.kafka import KafkaLink
from shared.metrics import Registry
from shared.outbox import Outbox
from shared.settings import Settings
from shared.unit_of_work import UnitOfWork
from shared.web import ServiceContext
from shared.worker import PeriodicJob, WorkerSpec

log = logging.getLogger("socorg.registry.worker")
SERVICE = "registry"


def worker_spec(db: Database, settings: Settings) -> WorkerSpec:
    # The follower publishes the events new applications carry itself, on a Kafka link of its own (the
    # relay's is reset whenever the relay meets a broker error), which gives up on a broker that is down
    # within 5 s: the follower keeps the search index meanwhile.
    kafka = KafkaLink(settings.kafka_bootstrap_servers, partitions=settings.topic_partitions,
                      replication=settings.topic_replication, client_id=f"socorg-{SERVICE}-follower",
                      bootstrap_timeout_ms=5000)
    follower = OrganizationFollower(db, domain.Rules.from_settings(settings).region_key, SERVICE, kafka=kafka,
                                    topic=settings.topic(SERVICE))
    jobs = [PeriodicJob("follow-organizations", settings.registry_search_poll_seconds, follower.catch_up,
                        more_waiting=lambda: follower.behind)]
    if settings.registry_sweep_check_seconds > 0:
        registry = store_for_worker(db, settings)

        def daily_sweep():
            result = registry.daily_sweep(settings.registry_sweep_time)
            if result is not None:
                log.info("daily risk sweep as of %s: %d flagged, %d cleared", result["as_of"],
                         len(result["flagged"]), len(result["cleared"]))

        jobs.append(PeriodicJob("daily-risk-sweep", settings.registry_sweep_check_seconds, daily_sweep))
    return WorkerSpec(service=SERVICE, jobs=jobs, on_stop=[follower.stop])


def store_for_worker(db: Database, settings: Settings) -> RegistryStore:
    """The same store the web process uses, built on the worker's database handle."""
    outbox = Outbox(db, source_of(SERVICE))
    ctx = ServiceContext(service=SERVICE, settings=settings, client=db.client, db=db, outbox=outbox,
                         uow=UnitOfWork(db.client, db, outbox), metrics=Registry())
    return RegistryStore(ctx)
