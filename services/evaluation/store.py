"""The evaluation service's only MongoDB code."""

from __future__ import annotations

from shared.organizations import OrganizationReadModel
from shared.web import ServiceContext


class EvaluationStore:
    def __init__(self, ctx: ServiceContext):
        self.uow = ctx.uow
        self.db = ctx.db
        self.organizations = OrganizationReadModel(ctx.db)
