"""The fund service's only MongoDB code: collections, indexes and the transaction behind each command.

Every money command is one transaction holding the summary change, its journal entry, its events and
its Idempotency-Key record. Limits are enforced on the document that carries them, guarded by its
`version`: two concurrent commands on the same fund or grant write the same document, so one of them
hits a write conflict and is run again from the start (shared.mongo.run_in_transaction), re-reading
the limit it checks. Nothing is ever paid twice or beyond a limit.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from pymongo import ASCENDING, DESCENDING
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.fund import domain
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.events import SYSTEM_ACTOR, now_utc, source_of
from shared.organizations import OrganizationReadModel
from shared.outbox import Outbox
from shared.schemas import skip_of
from shared.settings import Settings
from shared.unit_of_work import IdempotencyKey, UnitOfWork

SERVICE = "fund"


class FundStore:
    def __init__(self, ctx):
        self._setup(ctx.db, ctx.settings, ctx.uow, ctx.outbox)

    @classmethod
    def for_worker(cls, db: Database, settings: Settings) -> "FundStore":
        """The same store for the worker process, which has no web context."""
        store = cls.__new__(cls)
        outbox = Outbox(db, source_of(SERVICE))
        store._setup(db, settings, UnitOfWork(db.client, db, outbox), outbox)
        return store

    def _setup(self, db: Database, settings: Settings, uow: UnitOfWork, outbox: Outbox) -> None:
        self.db = db
        self.uow = uow
        self.outbox = outbox
        self.rules = domain.Rules.from_settings(settings)
        self.tz = ZoneInfo(settings.timezone)
        self.organizations = OrganizationReadModel(db)
        self.funds = db["funds"]
        self.grants = db["grants"]
        self.journal = db["journal"]
        self.units = db["park_units"]
        self.residencies = db["residencies"]
        self._ensure_indexes()

    def _ensure_indexes(self) -> None:
        self.funds.create_index([("year", ASCENDING), ("created_at", DESCENDING)])
        self.grants.create_index([("fund_id", ASCENDING), ("created_at", ASCENDING)])
        self.grants.create_index([("organization_id", ASCENDING), ("held_fen", ASCENDING)])
        self.grants.create_index("held_fen")
        self.grants.create_index("award_key", unique=True, sparse=True)
        self.journal.create_index([("fund_id", ASCENDING), ("time", ASCENDING), ("_id", ASCENDING)])
        self.journal.create_index([("grant_id", ASCENDING), ("time", ASCENDING)])
        self.units.create_index("code", unique=True)
        self.residencies.create_index([("unit_id", ASCENDING), ("start", ASCENDING)])
        self.residencies.create_index([("organization_id", ASCENDING), ("status", ASCENDING)])
        self.residencies.create_index([("start", ASCENDING), ("end", ASCENDING)])

    def today(self, now: datetime | None = None) -> date:
        return (now or now_utc()).astimezone(self.tz).date()

    # -- funds ------------------------------------------------------------------------------------------
    def create_fund(self, body: dict, *, actor: str, idempotency: IdempotencyKey | None) -> dict:
        def work(session):
            fund, entry, events = domain.open_fund(body, actor=actor, now=now_utc())
            self.funds.insert_one(fund, session=session)
            self.journal.insert_one(entry, session=session)
            return domain.fund_view(fund, disbursed_fen=0), events

        return self.uow.execute(work, idempotency=idempotency)

    def get_fund(self, fund_id: str) -> dict:
        fund = self._fund(fund_id)
        paid = self._paid_by_fund([fund_id]).get(fund_id, {})
        return domain.fund_view(fund, paid.get("disbursed", 0), paid.get("held", 0))

    def list_funds(self, args: dict) -> tuple[list[dict], int]:
        query = {"year": args["year"]} if "year" in args else {}
        total = self.funds.count_documents(query)
        funds = list(self.funds.find(query).sort([("year", DESCENDING), ("created_at", DESCENDING)])
                     .skip(skip_of(args)).limit(args["per_page"]))
        paid = self._paid_by_fund([f["_id"] for f in funds])
        views = [domain.fund_view(f, paid.get(f["_id"], {}).get("disbursed", 0), paid.get(f["_id"], {}).get("held", 0))
                 for f in funds]
        return views, total

    def _paid_by_fund(self, fund_ids: list[str]) -> dict[str, dict]:
        """What the funds' grants have paid and hold; each grant's figures are kept by its own journal entries."""
        if not fund_ids:
            return {}
        rows = self.grants.aggregate([
            {"$match": {"fund_id": {"$in": fund_ids}}},
            {"$group": {"_id": "$fund_id", "disbursed": {"$sum": "$disbursed_fen"}, "held": {"$sum": "$held_fen"}}},
        ])
        return {row["_id"]: row for row in rows}

    def _fund(self, fund_id: str, session: ClientSession | None = None) -> dict:
        fund = self.funds.find_one({"_id": fund_id}, session=session)
        if fund is None:
            raise NotFound(f"no fund {fund_id}")
        return fund

    def _update_fund(self, session, fund: dict, changes: dict) -> None:
        """Write the fund's new figures only if nobody changed it since we read it, never below zero."""
        if changes["available_fen"] < 0:  # the domain refuses this first; the ledger must never go below zero
            raise Conflict(f"fund {fund['_id']} cannot go below zero available")
        result = self.funds.update_one({"_id": fund["_id"], "version": fund["version"]},
                                       {"$set": changes, "$inc": {"version": 1}}, session=session)
        if result.matched_count != 1:
            raise Conflict(f"fund {fund['_id']} changed while this command ran; retry it")

    # -- grants -----------------------------------------------------------------------------------------
    def create_grant(self, fund_id: str, body: dict, *, actor: str, idempotency: IdempotencyKey | None) -> dict:
        def work(session):
            fund = self._fund(fund_id, session)
            organization = self.organizations.get(body["organization_id"], session)
            grant, fund_changes, entry, events = domain.commit_grant(fund, organization, body, actor=actor,
                                                                     now=now_utc())
            self._update_fund(session, fund, fund_changes)
            self.grants.insert_one(grant, session=session)
            self.journal.insert_one(entry, session=session)
            return grant, events

        return self.uow.execute(work, idempotency=idempotency)

    def get_grant(self, grant_id: str) -> dict:
        return self._grant(grant_id)

    def list_grants(self, fund_id: str, args: dict) -> tuple[list[dict], int]:
        self._fund(fund_id)
        query = {"fund_id": fund_id}
        for name in ("status", "organization_id"):
            if name in args:
                query[name] = args[name]
        total = self.grants.count_documents(query)
        grants = list(self.grants.find(query).sort([("created_at", ASCENDING), ("_id", ASCENDING)])
                      .skip(skip_of(args)).limit(args["per_page"]))
        return grants, total

    def _grant(self, grant_id: str, session: ClientSession | None = None) -> dict:
        grant = self.grants.find_one({"_id": grant_id}, session=session)
        if grant is None:
            raise NotFound(f"no grant {grant_id}")
        return grant

    def _replace_grant(self, session, grant: dict, updated: dict) -> None:
        result = self.grants.replace_one({"_id": grant["_id"], "version": grant["version"]}, updated, session=session)
        if result.matched_count != 1:
            raise Conflict(f"grant {grant['_id']} changed while this command ran; retry it")

    # -- disbursements and clawbacks --------------------------------------------------------------------
    def disburse(self, grant_id: str, *, tranche: int | None, actor: str, idempotency: IdempotencyKey) -> dict:
        def work(session):
            grant = self._grant(grant_id, session)
            organization = self.organizations.get(grant["organization_id"], session)
            updated, disbursement, entry, events = domain.disburse(grant, organization, requested_tranche=tranche,
                                                                   actor=actor, now=now_utc())
            self._replace_grant(session, grant, updated)
            if entry is not None:
                self.journal.insert_one(entry, session=session)
            else:
                # A hold reads the organization's risk and a flag clearing writes it: writing the organization
                # here too makes the two conflict, so a hold can never slip past the release that clears it.
                self.organizations.collection.update_one({"_id": grant["organization_id"]},
                                                         {"$inc": {"holds_recorded": 1}}, session=session)
            return disbursement, events

        return self.uow.execute(work, idempotency=idempotency)

    def clawback(self, grant_id: str, body: dict, *, actor: str, idempotency: IdempotencyKey | None) -> dict:
        def work(session):
            grant = self._grant(grant_id, session)
            fund = self._fund(grant["fund_id"], session)
            updated, fund_changes, clawback, entry, events = domain.claw_back(grant, fund, body, actor=actor,
                                                                              now=now_utc())
            self._replace_grant(session, grant, updated)
            self._update_fund(session, fund, fund_changes)
            self.journal.insert_one(entry, session=session)
            return clawback, events

        return self.uow.execute(work, idempotency=idempotency)

    # -- ledger -------------------------------------------------------------------------------------------
    def ledger(self, fund_id: str, args: dict) -> tuple[list[dict], int]:
        self._fund(fund_id)
        query = {"fund_id": fund_id}
        if "grant_id" in args:
            query["grant_id"] = args["grant_id"]
        total = self.journal.count_documents(query)
        entries = list(self.journal.find(query).sort([("time", ASCENDING), ("_id", ASCENDING)])
                       .skip(skip_of(args)).limit(args["per_page"]))
        return entries, total

    def accounts(self, fund_id: str) -> dict:
        """Every account the fund's journal touches, with its posted debits, credits and balance."""
        self._fund(fund_id)
        rows = self.journal.aggregate([
            {"$match": {"fund_id": fund_id}},
            {"$unwind": "$lines"},
            {"$group": {"_id": "$lines.account", "debits_fen": {"$sum": "$lines.debit_fen"},
                        "credits_fen": {"$sum": "$lines.credit_fen"}}},
            {"$sort": {"_id": 1}},
        ])
        accounts = []
        for row in rows:
            posted = {"debits_fen": row["debits_fen"], "credits_fen": row["credits_fen"]}
            accounts.append({"account": row["_id"], "normal_side": domain.normal_side(row["_id"]), **posted,
                             "balance_fen": domain.balance_of(row["_id"], posted)})
        return {"fund_id": fund_id, "accounts": accounts}

    def export(self, fund_id: str) -> dict:
        fund = self._fund(fund_id)
        grants = list(self.grants.find({"fund_id": fund_id}).sort([("created_at", ASCENDING), ("_id", ASCENDING)]))
        ids = list({g["organization_id"] for g in grants})
        organizations = {o["_id"]: o for o in self.organizations.collection.find({"_id": {"$in": ids}})}
        return domain.giving_export(fund, grants, organizations, rules=self.rules, award_date_of=self.today,
                                    now=now_utc())

    # -- reactions to other services' events (inside the consumer's transaction) -------------------------
    def grant_from_award(self, session: ClientSession, event: dict) -> None:
        """evaluation.award.granted: commit the prize in the named fund (or the year's newest), once per award;
        a fund that cannot cover it (or an organization that may not receive it) gives a `rejected` grant."""
        award = domain.Award.from_event(event["data"])
        if self.grants.find_one({"award_key": award.key}, {"_id": 1}, session=session) is not None:
            return  # this award already has its grant (a replay under another event id)
        fund = self._award_fund(session, award)
        organization = self.organizations.get(award.organization_id, session)
        body = award.grant_body(self.rules.award_tranches)
        now = now_utc()
        refusal = domain.award_fund_refusal(fund, award)
        if refusal is None:
            try:
                grant, fund_changes, entry, events = domain.commit_grant(
                    fund, organization, body, actor=SYSTEM_ACTOR, now=now, source="award", award=award.as_reference())
            except (Conflict, ValidationFailed) as problem:  # the organization may not receive it, or a tiny prize
                refusal = problem.detail
            else:
                self._update_fund(session, fund, fund_changes)
                self.journal.insert_one(entry, session=session)
        if refusal is not None:
            grant, events = domain.reject_grant(fund["_id"] if fund else None, organization, body, refusal,
                                                actor=SYSTEM_ACTOR, now=now, source="award",
                                                award=award.as_reference())
        self.grants.insert_one(grant, session=session)
        self.outbox.add(session, events)

    def _award_fund(self, session, award: domain.Award) -> dict | None:
        if award.fund_id:
            return self.funds.find_one({"_id": award.fund_id}, session=session)
        return self.funds.find_one({"year": award.year}, sort=[("created_at", DESCENDING), ("_id", DESCENDING)],
                                   session=session)

    def react_to_organization(self, session: ClientSession, organization: dict | None) -> None:
        """After a registry event: pay what was held once the organization is clear; on deregistration cancel
        its held payments and end its park residencies."""
        if organization is None:
            return
        if domain.may_release(organization):
            self.release_holds(session, organization["_id"])
        elif organization.get("status") == domain.DEREGISTERED:
            self._cancel_holds(session, organization["_id"])
            self._end_residencies(session, organization["_id"], reason="deregistered")

    def release_holds(self, session: ClientSession, organization_id: str) -> int:
        released = 0
        for grant in self.grants.find({"organization_id": organization_id, "held_fen": {"$gt": 0}}, session=session):
            updated, entries, events = domain.release_held(grant, actor=SYSTEM_ACTOR, now=now_utc())
            self._replace_grant(session, grant, updated)
            if entries:
                self.journal.insert_many(entries, session=session)
            self.outbox.add(session, events)
            released += len(entries)
        return released

    def _cancel_holds(self, session, organization_id: str) -> None:
        for grant in self.grants.find({"organization_id": organization_id, "held_fen": {"$gt": 0}}, session=session):
            updated, events = domain.cancel_held(grant, "the organization was deregistered", actor=SYSTEM_ACTOR,
                                                 now=now_utc())
            self._replace_grant(session, grant, updated)
            self.outbox.add(session, events)

    def release_cleared_holds(self) -> int:
        """The periodic safety net: release holds of organizations that are clear (one transaction each)."""
        organization_ids = self.grants.distinct("organization_id", {"held_fen": {"$gt": 0}})
        released = 0
        for organization_id in organization_ids:
            if domain.may_release(self.organizations.get(organization_id)):
                released += self.uow.execute(lambda s, oid=organization_id: (self.release_holds(s, oid), []))
        return released

    # -- park ---------------------------------------------------------------------------------------------
    def create_unit(self, body: dict, *, actor: str, idempotency: IdempotencyKey | None) -> dict:
        def work(session):
            unit, events = domain.new_unit(body, actor=actor, now=now_utc())
            if self.units.find_one({"code": unit["code"]}, {"_id": 1}, session=session) is not None:
                raise Conflict(f"a park unit with code {unit['code']!r} already exists")
            self.units.insert_one(unit, session=session)
            return unit, events

        try:
            return self.uow.execute(work, idempotency=idempotency)
        except DuplicateKeyError:  # a concurrent create of the same code won the race
            raise Conflict(f"a park unit with code {body['code'].strip()!r} already exists") from None

    def list_units(self, args: dict) -> tuple[list[dict], int]:
        total = self.units.count_documents({})
        units = list(self.units.find().sort("code", ASCENDING).skip(skip_of(args)).limit(args["per_page"]))
        return units, total

    def _unit(self, reference: str, session=None) -> dict:
        unit = self.units.find_one({"code": reference.strip()}, session=session) \
            or self.units.find_one({"_id": reference}, session=session)
        if unit is None:
            raise ValidationFailed.field("unit", f"no park unit {reference!r}")
        return unit

    def start_residency(self, body: dict, *, actor: str, idempotency: IdempotencyKey | None) -> dict:
        def work(session):
            unit = self._unit(body["unit"], session)
            organization = self.organizations.get(body["organization_id"], session)
            others = list(self.residencies.find({"unit_id": unit["_id"]}, session=session))
            residency, events = domain.start_residency(unit, organization, body, others, rules=self.rules,
                                                       actor=actor, now=now_utc())
            # Booking writes the unit, so two concurrent bookings of one unit conflict and are serialised.
            self.units.update_one({"_id": unit["_id"]}, {"$inc": {"bookings": 1}}, session=session)
            self.residencies.insert_one(residency, session=session)
            return residency, events

        return self.uow.execute(work, idempotency=idempotency)

    def get_residency(self, residency_id: str, session=None) -> dict:
        residency = self.residencies.find_one({"_id": residency_id}, session=session)
        if residency is None:
            raise NotFound(f"no residency {residency_id}")
        return residency

    def list_residencies(self, args: dict) -> tuple[list[dict], int]:
        query = {}
        if "unit" in args:
            query["unit_code"] = args["unit"]
        for name in ("organization_id", "status"):
            if name in args:
                query[name] = args[name]
        total = self.residencies.count_documents(query)
        items = list(self.residencies.find(query).sort([("start", ASCENDING), ("_id", ASCENDING)])
                     .skip(skip_of(args)).limit(args["per_page"]))
        return items, total

    def graduate(self, residency_id: str, *, actor: str) -> dict:
        def work(session):
            residency = self.get_residency(residency_id, session)
            now = now_utc()
            updated, events = domain.end_residency(residency, today=self.today(now), reason="graduated", actor=actor,
                                                   now=now)
            self._replace_residency(session, residency, updated)
            return updated, events

        return self.uow.execute(work)

    def _end_residencies(self, session, organization_id: str, *, reason: str) -> None:
        now = now_utc()
        for residency in self.residencies.find({"organization_id": organization_id,
                                                "status": domain.RESIDENCY_ACTIVE}, session=session):
            updated, events = domain.end_residency(residency, today=self.today(now), reason=reason,
                                                   actor=SYSTEM_ACTOR, now=now)
            self._replace_residency(session, residency, updated)
            self.outbox.add(session, events)

    def _replace_residency(self, session, residency: dict, updated: dict) -> None:
        result = self.residencies.replace_one({"_id": residency["_id"], "version": residency["version"]}, updated,
                                              session=session)
        if result.matched_count != 1:
            raise Conflict(f"residency {residency['_id']} changed while this command ran; retry it")
        # Ending writes the unit too, so it is serialised with a concurrent booking of the freed dates.
        self.units.update_one({"_id": residency["unit_id"]}, {"$inc": {"bookings": 1}}, session=session)

    def occupancy(self, as_of: date | None) -> dict:
        units = list(self.units.find({}, {"_id": 1, "code": 1}))
        today = as_of or self.today()
        # Only residencies whose term covers `today`; an early end (graduation) is checked in the domain.
        day = today.isoformat()
        residencies = list(self.residencies.find({"start": {"$lte": day}, "end": {"$gt": day}}))
        return domain.occupancy(units, residencies, today=today, rules=self.rules)

