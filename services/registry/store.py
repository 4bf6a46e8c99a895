"""The registry's only MongoDB code: collections, indexes and the transactions behind each command."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.registry import domain, identifiers
from shared.errors import Conflict, NotFound
from shared.events import now_utc
from shared.unit_of_work import IdempotencyKey
from shared.web import ServiceContext


class RegistryStore:
    def __init__(self, ctx: ServiceContext):
        self.uow = ctx.uow
        self.db = ctx.db
        self.organizations = ctx.db["organizations"]
        self.name_claims = ctx.db["name_claims"]  # _id: normalised name of a submitted/registered organization
        self.counters = ctx.db["counters"]
        self.tz = ZoneInfo(ctx.settings.timezone)
        self.rules = domain.Rules(region_prefix=ctx.settings.region_prefix, area_code=ctx.settings.area_code)
        self.organizations.create_index("uscc", unique=True, sparse=True)
        self.organizations.create_index([("status", 1), ("submitted_at", -1)])

    # -- queries ----------------------------------------------------------------------------------
    def get(self, organization_id: str) -> dict:
        organization = self.organizations.find_one({"_id": organization_id})
        if organization is None:
            raise NotFound(f"no organization {organization_id}")
        return organization

    # -- commands ---------------------------------------------------------------------------------
    def submit(self, application: dict, *, applicant: str, idempotency: IdempotencyKey | None) -> dict:
        def work(session):
            organization, events = domain.submit(application, applicant=applicant, now=now_utc())
            try:
                self.name_claims.insert_one({"_id": organization["name_key"], "organization_id": organization["_id"]},
                                            session=session)
            except DuplicateKeyError:
                raise Conflict(f"the name {organization['name']!r} is already taken by a submitted or "
                               f"registered organization") from None
            self.organizations.insert_one(organization, session=session)
            return organization, events

        return self.uow.execute(work, idempotency=idempotency)

    def approve(self, organization_id: str, *, actor: str) -> dict:
        def work(session):
            organization = self.organizations.find_one({"_id": organization_id}, session=session)
            if organization is None:
                raise NotFound(f"no organization {organization_id}")
            # Rolled back with the transaction if the approval is refused below.
            number = self.counters.find_one_and_update({"_id": "organization_code"}, {"$inc": {"n": 1}},
                                                       upsert=True, return_document=ReturnDocument.AFTER,
                                                       session=session)["n"]
            uscc = identifiers.make_uscc(organization["type"], self.rules.area_code,
                                         identifiers.org_body_from_number(number))
            now = now_utc()
            changed, events = domain.approve(organization, uscc=uscc, today=now.astimezone(self.tz).date(), now=now,
                                             actor=actor)
            # The status guard makes a concurrent second approval conflict instead of approving twice.
            result = self.organizations.replace_one({"_id": organization_id, "status": domain.SUBMITTED,
                                                     "version": organization["version"]}, changed, session=session)
            if result.matched_count != 1:
                raise Conflict("the application changed while it was being approved; reload it")
            return changed, events

        return self.uow.execute(work)

