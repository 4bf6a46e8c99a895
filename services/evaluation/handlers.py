"""Events the evaluation service consumes: registry events.

One handler per registry event type does, in the consumer's transaction:
1. apply the event to the read model of organizations (eligibility is judged on it);
2. remember who filed an application (that applicant acts for the organization);
3. when the organization is now on the serious list or deregistered, disqualify its projects in open
   rounds, with their `evaluation.project.disqualified` events written to the outbox in the same transaction.
The read model's stored state (newest version wins) decides step 3, not the event itself, so a late or
repeated event cannot disqualify on stale news.
"""

from __future__ import annotations

from pymongo.client_session import ClientSession

from services.evaluation.store import Collections
from shared.events import SYSTEM_ACTOR, short_type, source_of
from shared.organizations import REGISTRY_ORGANIZATION_EVENTS
from shared.outbox import Outbox
from shared.worker import WorkerSpec

SUBMITTED = "registry.organization.submitted"


def worker_spec(db, settings) -> WorkerSpec:
    collections = Collections(db)
    collections.ensure_indexes()
    outbox = Outbox(db, source_of("evaluation"))

    def on_registry_event(session: ClientSession, event: dict) -> None:
        organization = collections.organizations.apply(session, event)
        if organization is None:
            return
        if short_type(event) == SUBMITTED and event["data"].get("actor"):
            collections.remember_applicant(session, organization["_id"], event["data"]["actor"])
        events = collections.disqualify_in_open_rounds(session, organization, actor=SYSTEM_ACTOR, cause=event["id"])
        outbox.add(session, events)

    return WorkerSpec(service="evaluation", topics=[settings.topic("registry")],
                      handlers={event_type: on_registry_event for event_type in REGISTRY_ORGANIZATION_EVENTS})
