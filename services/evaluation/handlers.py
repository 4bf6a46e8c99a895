"""Events the evaluation service consumes: registry events keep its read model of organizations."""

from __future__ import annotations

from shared.organizations import OrganizationReadModel
from shared.worker import WorkerSpec


def worker_spec(db, settings) -> WorkerSpec:
    organizations = OrganizationReadModel(db)
    return WorkerSpec(service="evaluation", topics=[settings.topic("registry")], handlers=organizations.handlers())
