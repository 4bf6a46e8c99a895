"""Events the fund service consumes, and its periodic job.

- registry events keep the read model of organizations; after each one the fund reacts to the
  organization's new state in the same transaction: held payments are released once it is clear
  (registered, risk none), and on deregistration its held payments are cancelled and its park
  residencies end.
- `evaluation.award.granted` commits the prize as a grant (or records it `rejected` with the reason).
- every `fund_hold_sweep_seconds` a sweep releases holds whose release event was missed.
"""

from __future__ import annotations

from services.fund.store import FundStore
from shared.organizations import REGISTRY_ORGANIZATION_EVENTS, OrganizationReadModel
from shared.worker import PeriodicJob, WorkerSpec

AWARD_GRANTED = "evaluation.award.granted"


def worker_spec(db, settings) -> WorkerSpec:
    store = FundStore.for_worker(db, settings)
    organizations = OrganizationReadModel(db)

    def on_registry_event(session, event):
        store.react_to_organization(session, organizations.apply(session, event))

    handlers = {event_type: on_registry_event for event_type in REGISTRY_ORGANIZATION_EVENTS}
    handlers[AWARD_GRANTED] = store.grant_from_award
    return WorkerSpec(
        service="fund",
        topics=[settings.topic("registry"), settings.topic("evaluation")],
        handlers=handlers,
        jobs=[PeriodicJob("release-cleared-holds", settings.fund_hold_sweep_seconds, store.release_cleared_holds)],
    )
