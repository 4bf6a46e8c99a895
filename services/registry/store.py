"""The registry's only MongoDB code: collections, indexes and the transactions behind each command,
the search index (runs of postings, see search.py) and the follower that keeps it up to date.

Every command is one transaction through `ctx.uow.execute`: load, let domain.py decide, write the new
version of the organization (guarded by its version), return the resource and the events for the outbox.

One exception, measured: an application (`submit`) is the one command that arrives in bulk, and on
SecantusDB a transaction writing three documents (name claim, organization, outbox record) runs at about
a quarter of a plain insert. So an application is one document (and, without an Idempotency-Key, one
insert outside any transaction): it holds its name through the unique
`name_claim` field and carries its `submitted` event in `pending_events`, atomically with the state
change (INFRA.md: "an outbox embedded in the aggregate"). The follower, reading the change stream,
publishes carried events and then records them in the outbox (shared.outbox.DirectPublisher: transaction
log tailing, without the relay's marker); the next command on the organization records them too, in its
transaction and before its own events, for the relay, so the order per organization holds whoever gets
there first. The outbox record's id is the event's id, so recording twice is harmless.

SecantusDB reads every document a query matches before it sorts or limits, so every query here is one
an index narrows to what the answer needs: by id, by a unique key, or by a range of `_id`s (the
sweep's entries, SweepDue). On SecantusDB only equality and `$in` use an index; a range reads the whole
collection there (README, known limits), which the daily sweep can afford and MongoDB does not need.
"""

from __future__ import annotations

import bisect
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time as day_time, timedelta
from zoneinfo import ZoneInfo

from pymongo import ASCENDING, ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from services.registry import domain, identifiers, search
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.events import SYSTEM_ACTOR, Event, now_utc, source_of
from shared.mongo import (GroupInsert, batches, create_collection_if_missing, drop_index_if_present, find_by_ids,
                          ids_present, in_lists, insert_missing, run_in_transaction)
from shared.outbox import DirectPublisher, Outbox
from shared.schemas import skip_of
from shared.unit_of_work import IdempotencyKey
from shared.web import ServiceContext

log = logging.getLogger("socorg.registry")

ORGANIZATIONS = "organizations"
CHANGE_STREAM_HISTORY_LOST = 286  # the server no longer holds the position a change stream was opened at
PENDING_EVENTS = "pending_events"  # events an organization document carries until the outbox has them
RENEWALS = "term_renewals"
REPORTS = "annual_reports"
SWEEPS = "risk_sweeps"
SWEEP_DUE = "sweep_due"  # {_id: "<marker>|<value>|<organization id>", organization_id}: see SweepDue
CODES = "organization_codes"  # {_id: uscc, organization_id}: see Codes


class RegistryStore:
    def __init__(self, ctx: ServiceContext):
        self.uow = ctx.uow
        self.db = ctx.db
        self.organizations = ctx.db[ORGANIZATIONS]
        self.applications = GroupInsert(self.organizations)  # see `submit`
        self.outbox = ctx.outbox
        self.counters = ctx.db["counters"]
        self.renewals = ctx.db[RENEWALS]
        self.reports = ctx.db[REPORTS]
        self.sweeps = ctx.db[SWEEPS]
        self.sweep_due = SweepDue(ctx.db)
        self.codes = Codes(ctx.db)
        self.tz = ZoneInfo(ctx.settings.timezone)
        self.rules = domain.Rules.from_settings(ctx.settings)
        self.search_index = SearchIndex(ctx.db)
        self.list_index = ListIndex(ctx.db)
        ensure_indexes(ctx.db)

    # -- time -------------------------------------------------------------------------------------
    def today(self, now: datetime | None = None) -> date:
        """Dates and deadlines are in Asia/Shanghai (CONTRACT.md)."""
        return (now or now_utc()).astimezone(self.tz).date()

    # -- queries ----------------------------------------------------------------------------------
    def get(self, organization_id: str) -> dict:
        organization = self.organizations.find_one({"_id": organization_id})
        if organization is None:
            raise NotFound(f"no organization {organization_id}")
        return organization

    def get_public(self, uscc: str) -> dict:
        uscc = identifiers.uscc_as_typed(uscc)
        if not identifiers.is_valid_uscc(uscc):
            raise ValidationFailed.field("uscc", "not a valid unified social credit code (GB 32100)")
        organization = self._coded(uscc)
        if organization is None or organization["status"] not in domain.PUBLIC_STATUSES:
            raise NotFound(f"no registered organization with the code {uscc}")
        return organization

    def search(self, q: str | None, filters: search.Filters, page: dict) -> tuple[list[dict], int]:
        """Organizations matching q and the filters, newest first: one page and the total."""
        plan = self.plan(q)
        by_id: dict[str, dict] = {}  # organizations as read now: those q names exactly, then the rest of the page
        if plan.every_name and not plan.uscc_prefix and not plan.uscc_types:  # filters only: the list blocks
            found = self.list_index.page(filters, skip=skip_of(page), limit=page["per_page"])
        else:
            by_id = {doc["_id"]: doc for doc in self._named_exactly(plan)}
            read_now = {org_id: filters.admit(doc) and search.name_matches(doc, plan) for org_id, doc in by_id.items()}
            found = search.answer(plan, self.search_index.runs(plan.terms), filters, skip=skip_of(page),
                                  limit=page["per_page"], read_now=read_now)
        unread = [org_id for org_id in found.ids if org_id not in by_id]
        if unread:
            by_id |= {doc["_id"]: doc for doc in self.organizations.find({"_id": {"$in": unread}})}
        # The index follows the organizations a moment behind: what changed since is judged afresh.
        items = [by_id[i] for i in found.ids
                 if i in by_id and filters.admit(by_id[i]) and search.name_matches(by_id[i], plan)]
        return items, found.total

    def _named_exactly(self, plan: search.Plan) -> list[dict]:
        """The organization whose whole code is q, and the one whose whole name is q (names being claimed or
        held), read from the organizations themselves. The search index follows them a moment behind, and an
        officer who has just approved an organization types its code or name to find it at once."""
        found = []
        code = plan.uscc_prefix  # q read as a code, as the index reads it
        if code and identifiers.is_valid_uscc(code):
            found.append(self._coded(code))
        if plan.key.startswith(plan.region_key) and len(plan.key) > len(plan.region_key):
            found.append(self.organizations.find_one({"name_claim": plan.key}))
        return [doc for doc in found if doc is not None]

    def _coded(self, uscc: str) -> dict | None:
        """The organization this code was assigned to, if any."""
        organization_id = self.codes.organization_id(uscc)
        return None if organization_id is None else self.organizations.find_one({"_id": organization_id})

    def search_of_applicant(self, sub: str, org: str | None, q: str | None, filters: search.Filters,
                            page: dict) -> tuple[list[dict], int]:
        """An applicant's own organizations: those it applied for and the one its token names."""
        mine = {doc["_id"]: doc for doc in self.organizations.find({"applicant": sub})}
        if org and org not in mine:
            named = self.organizations.find_one({"_id": org})
            if named is not None:
                mine[org] = named
        plan = self.plan(q)
        matching = sorted((doc for doc in mine.values() if filters.admit(doc) and search.name_matches(doc, plan)),
                          key=lambda doc: doc["_id"], reverse=True)
        start = skip_of(page)
        return matching[start:start + page["per_page"]], len(matching)

    def plan(self, q: str | None) -> search.Plan:
        return search.plan(q, region_key=self.rules.region_key, area_code=self.rules.area_code,
                           name_key=domain.name_key)

    def renewals_of(self, organization_id: str, page: dict) -> tuple[list[dict], int]:
        return self._page_of(self.renewals, organization_id, page, order="filed_at")

    def renewals_by_status(self, page: dict) -> tuple[list[dict], int]:
        """Renewals in one status across organizations, oldest filed first (the officers' queue), with names."""
        query = {"status": page["status"]}
        renewals = list(self.renewals.find(query).sort([("filed_at", ASCENDING), ("_id", ASCENDING)])
                        .skip(skip_of(page)).limit(page["per_page"]))
        names = {o["_id"]: o["name"] for o in self.organizations.find(
            {"_id": {"$in": sorted({r["organization_id"] for r in renewals})}}, {"name": 1})}
        return ([r | {"organization_name": names.get(r["organization_id"])} for r in renewals],
                self.renewals.count_documents(query))

    def reports_of(self, organization_id: str, page: dict) -> tuple[list[dict], int]:
        return self._page_of(self.reports, organization_id, page, order="year")

    @staticmethod
    def _page_of(collection: Collection, organization_id: str, page: dict, *, order: str):
        """An organization's renewals or reports (a handful each), newest first."""
        documents = sorted(collection.find({"organization_id": organization_id}), key=lambda d: d[order],
                           reverse=True)
        start = skip_of(page)
        return documents[start:start + page["per_page"]], len(documents)

    # -- lifecycle commands -----------------------------------------------------------------------
    def submit(self, application: dict, *, applicant: str, idempotency: IdempotencyKey | None) -> dict:
        """One document: the organization, holding its name and carrying its event (see the module doc).
        Without an Idempotency-Key that one insert is the whole command, atomic on its own, so it runs
        without a transaction (on SecantusDB the transaction's start and commit cost more than the insert),
        sent together with the applications other request threads of this process are inserting
        (GroupInsert); with a key, the key's record is written in the same transaction."""
        def work(session):
            organization, events = domain.submit(application, applicant=applicant, now=now_utc(), rules=self.rules)
            document = {**organization, PENDING_EVENTS: carried(events)}
            try:
                if session is None:
                    self.applications.insert(document)
                else:
                    self.organizations.insert_one(document, session=session)
            except DuplicateKeyError:
                raise Conflict(f"the name {organization['name']!r} is already taken by a submitted or "
                               f"registered organization") from None
            return organization, []

        if idempotency is None:
            with self.applications.coming():  # while the rules are checked, a batch being sent waits for it
                return work(None)[0]
        return self.uow.execute(work, idempotency=idempotency)

    def approve(self, organization_id: str, *, actor: str, expected_version: int | None = None) -> dict:
        def decide(session, organization):
            domain.require_status(organization, "approved", domain.SUBMITTED)
            # Taken outside the transaction: one counter shared by every approval would make concurrent
            # approvals conflict and retry. A failed approval leaves a gap in the numbers, which is harmless.
            number = self.counters.find_one_and_update({"_id": "organization_code"}, {"$inc": {"n": 1}},
                                                       upsert=True, return_document=ReturnDocument.AFTER)["n"]
            uscc = identifiers.make_uscc(organization["type"], self.rules.area_code,
                                         identifiers.org_body_from_number(number))
            now = now_utc()
            return domain.approve(organization, uscc=uscc, today=self.today(now), now=now, actor=actor)

        return self._change(organization_id, decide, expected_version)

    def reject(self, organization_id: str, *, reason: str, actor: str, expected_version: int | None = None) -> dict:
        def decide(session, organization):
            return domain.reject(organization, reason=reason, now=now_utc(), actor=actor)

        return self._change(organization_id, decide, expected_version)

    def deregister(self, organization_id: str, *, reason: str, actor: str,
                   expected_version: int | None = None) -> dict:
        def decide(session, organization):
            now = now_utc()
            return domain.deregister(organization, reason=reason, today=self.today(now), now=now, actor=actor)

        return self._change(organization_id, decide, expected_version)

    def _change(self, organization_id: str, decide, expected_version: int | None, *,
                idempotency: IdempotencyKey | None = None, result=None):
        """One transaction: load the organization, let `decide(session, organization)` return
        `(new version, events)` or `(new version, resource, events)`, write the new version guarded by the
        old one. Answers the new organization, or `result(new, resource)` when given."""
        def work(session):
            organization = self._load(organization_id, session)
            domain.check_version(organization, expected_version)
            decided = decide(session, organization)
            new, resource, events = (decided[0], None, decided[1]) if len(decided) == 2 else decided
            self._write(session, organization, new)
            return (result(new, resource) if result else new), events

        return self.uow.execute(work, idempotency=idempotency)

    def _load(self, organization_id: str, session) -> dict:
        organization = self.organizations.find_one({"_id": organization_id}, session=session)
        if organization is None:
            raise NotFound(f"no organization {organization_id}")
        return organization

    def _write(self, session, old: dict, new: dict) -> None:
        """Write the new version; events the old one still carried go to the outbox first, in order."""
        publish_carried(self.outbox, session, old.get(PENDING_EVENTS, []))
        new = {key: value for key, value in new.items() if key != PENDING_EVENTS}
        written = self.organizations.replace_one({"_id": old["_id"], "version": old["version"]}, new, session=session)
        if written.matched_count != 1:
            raise Conflict("the organization changed while this request was deciding; reload it and retry")
        self.sweep_due.write(session, old, new)
        self.codes.write(session, old, new)

    # -- terms ------------------------------------------------------------------------------------
    def file_renewal(self, organization_id: str, body: dict, *, actor: str,
                     idempotency: IdempotencyKey | None) -> dict:
        def work(session):
            organization = self._load(organization_id, session)
            now = now_utc()
            pending = self.renewals.find_one({"organization_id": organization_id, "status": domain.RENEWAL_SUBMITTED},
                                             session=session)
            renewal = domain.file_renewal(organization, body, today=self.today(now), now=now, actor=actor,
                                          rules=self.rules)
            if pending is not None:
                raise Conflict(f"the renewal {pending['_id']} filed on {pending['filed_at']:%Y-%m-%d} is still "
                               f"waiting for a decision")
            self.renewals.insert_one(renewal, session=session)
            return renewal, []

        return self.uow.execute(work, idempotency=idempotency)

    def approve_renewal(self, organization_id: str, renewal_id: str, *, actor: str) -> dict:
        def decide(session, organization):
            renewal = self._renewal(organization_id, renewal_id, session)
            now = now_utc()
            renewed, approved, events = domain.approve_renewal(organization, renewal, today=self.today(now), now=now,
                                                               actor=actor)
            self.renewals.replace_one({"_id": renewal_id}, approved, session=session)
            return renewed, approved, events

        return self._change(organization_id, decide, None, result=lambda new, approved: approved)

    def reject_renewal(self, organization_id: str, renewal_id: str, *, reason: str, actor: str) -> dict:
        def work(session):
            renewal = self._renewal(organization_id, renewal_id, session)
            rejected, events = domain.reject_renewal(self._load(organization_id, session), renewal, reason=reason,
                                                     now=now_utc(), actor=actor)
            self.renewals.replace_one({"_id": renewal_id, "status": renewal["status"]}, rejected, session=session)
            return rejected, events

        return self.uow.execute(work)

    def _renewal(self, organization_id: str, renewal_id: str, session) -> dict:
        renewal = self.renewals.find_one({"_id": renewal_id, "organization_id": organization_id}, session=session)
        if renewal is None:
            raise NotFound(f"no term renewal {renewal_id} for organization {organization_id}")
        return renewal

    # -- annual reports ---------------------------------------------------------------------------
    def file_report(self, organization_id: str, body: dict, *, actor: str,
                    idempotency: IdempotencyKey | None) -> dict:
        def decide(session, organization):
            now = now_utc()
            reported, report, events = domain.file_annual_report(organization, body, today=self.today(now), now=now,
                                                                 actor=actor)
            try:
                self.reports.insert_one(report, session=session)
            except DuplicateKeyError:
                raise Conflict(f"the annual report for {report['year']} has already been filed") from None
            return reported, report, events

        return self._change(organization_id, decide, None, idempotency=idempotency, result=lambda new, report: report)

    # -- risk flags -------------------------------------------------------------------------------
    def raise_flag(self, organization_id: str, body: dict, *, actor: str,
                   idempotency: IdempotencyKey | None) -> dict:
        def decide(session, organization):
            now = now_utc()
            return domain.raise_flag(organization, risk_list=body["list"], reason=body["reason"],
                                     today=self.today(now), now=now, actor=actor)

        return self._change(organization_id, decide, None, idempotency=idempotency, result=lambda new, flag: flag)

    def clear_flag(self, organization_id: str, flag_id: str, *, reason: str, actor: str) -> dict:
        def decide(session, organization):
            now = now_utc()
            return domain.clear_flag(organization, flag_id, reason=reason, today=self.today(now), now=now,
                                     actor=actor, rules=self.rules)

        return self._change(organization_id, decide, None, result=lambda new, flag: flag)

    # -- sweeps -----------------------------------------------------------------------------------
    def sweep(self, as_of: date, *, actor: str, idempotency: IdempotencyKey | None = None) -> dict:
        """Apply the automatic rules as of a date to every organization the date may affect (DOMAIN.md,
        Risk lists). Each organization is its own transaction, so a sweep over many never holds a long one;
        a sweep that stops half-way is simply run again (it is idempotent). With an Idempotency-Key a retry
        answers the first sweep's answer."""
        if as_of > self.today():
            raise ValidationFailed.field("as_of", "a sweep cannot look ahead: as_of must not be after today "
                                                  "(Asia/Shanghai)")
        if idempotency is not None:
            earlier = self.sweeps.find_one({"idempotency": idempotency.record_id})
            if earlier is not None:
                if earlier["fingerprint"] != idempotency.fingerprint:
                    raise ValidationFailed("this Idempotency-Key was already used with a different request body",
                                           errors={"Idempotency-Key": ["already used with a different request body"]})
                return earlier["result"]
        started = now_utc()
        flagged, cleared = [], []
        for organization_id, selected_by in self._sweep_candidates(as_of).items():
            outcome = self._sweep_one(organization_id, as_of, selected_by)
            flagged += [sweep_item(outcome.organization, flag) for flag in outcome.flagged]
            cleared += [sweep_item(outcome.organization, flag) for flag in outcome.cleared]
        sweep_id = domain.new_id("sweep")
        result = {"id": sweep_id, "as_of": as_of.isoformat(), "flagged": flagged, "cleared": cleared}
        record = {"_id": sweep_id, "as_of": as_of.isoformat(), "actor": actor, "started_at": started,
                  "finished_at": now_utc(), "flagged": len(flagged), "cleared": len(cleared)}
        if idempotency is not None:
            record.update(idempotency=idempotency.record_id, fingerprint=idempotency.fingerprint, result=result)
        try:
            self.sweeps.insert_one(record)
        except DuplicateKeyError:  # the same key ran concurrently: answer as that one did
            return self.sweeps.find_one({"idempotency": idempotency.record_id})["result"]
        return result

    def _sweep_candidates(self, as_of: date) -> dict[str, set[str]]:
        windows = domain.sweep_windows(as_of, self.rules)
        return self.sweep_due.organizations_due([
            ("due_term_end", "<", windows["term_ended_before"]),
            ("reports_checked_through", "<", windows["reports_due_through"]),
            ("due_escalation_raised", "<=", windows["escalation_raised_by"]),
            ("due_officer_flag_raised", "<=", windows["officer_flag_raised_by"]),
        ])

    def _sweep_one(self, organization_id: str, as_of: date, selected_by: set[str]) -> domain.SweepOutcome:
        def work(session):
            organization = self._load(organization_id, session)
            self.sweep_due.remove_stale(session, organization, selected_by)
            outcome = domain.sweep(organization, as_of=as_of, now=now_utc(), rules=self.rules)
            if outcome.organization is not None:
                self._write(session, organization, outcome.organization)
            return outcome, outcome.events

        return self.uow.execute(work)

    def daily_sweep(self, sweep_time: str, now: datetime | None = None) -> dict | None:
        """The scheduler's sweep for today, once a day after `sweep_time` (Shanghai), whichever worker
        replica gets there first; a run that died half-way is taken over after an hour."""
        now = now or now_utc()
        local = now.astimezone(self.tz)
        hour, minute = (int(part) for part in sweep_time.split(":"))
        if local.time() < day_time(hour, minute):
            return None
        claim_id = f"daily:{local.date().isoformat()}"
        owner = uuid.uuid4().hex
        try:
            self.sweeps.insert_one({"_id": claim_id, "state": "running", "owner": owner, "claimed_at": now})
        except DuplicateKeyError:
            taken = self.sweeps.find_one_and_update(
                {"_id": claim_id, "state": "running", "claimed_at": {"$lt": now - timedelta(hours=1)}},
                {"$set": {"owner": owner, "claimed_at": now}})
            if taken is None:
                return None
        result = self.sweep(local.date(), actor=SYSTEM_ACTOR)
        self.sweeps.update_one({"_id": claim_id, "owner": owner},
                               {"$set": {"state": "done", "finished_at": now_utc(), "sweep": result["id"],
                                         "flagged": len(result["flagged"]), "cleared": len(result["cleared"])}})
        return result


def carried(events: list[Event]) -> list[dict]:
    """Events as a document carries them until they are in the outbox."""
    return [{"id": e.id, "type": e.type, "subject": e.subject, "key": e.key, "data": e.data, "time": e.time}
            for e in events]


def publish_carried(outbox: Outbox, session: ClientSession | None, records: list[dict]) -> int:
    """Put carried events into the outbox unless they are there already; returns how many were added."""
    if not records:
        return 0
    missing = outbox.unrecorded([Event(**record) for record in records], session)
    if missing:
        outbox.add(session, missing)
    return len(missing)


class SweepDue:
    """The sweep markers (domain.with_markers) of every registered organization, in one collection read by
    `_id` ranges: `{_id: "<marker>|<value>|<organization id>"}`, so all of one marker sort by its value.

    The organization documents keep their markers, but indexing them there cost every organization write,
    applications included, one index per marker: SecantusDB reads its index catalogue several times per
    insert, so each index costs whether or not the document has the field (the four: 0.26 ms of its CPU per
    application on average in A/B runs, a tenth of the insert). Here they cost nothing until an
    organization is registered, and then one small document per marker, written in the same transaction as
    the organization.
    """

    FIELDS = (*domain.MARKERS, "reports_checked_through")
    INDEXES_BEFORE = tuple(f"{field}_1" for field in FIELDS)  # earlier versions indexed each on the organizations

    def __init__(self, db: Database):
        self.collection = db[SWEEP_DUE]

    @classmethod
    def entries(cls, organization: dict | None) -> set[str]:
        if organization is None:
            return set()
        return {f"{field}|{cls._sortable(organization[field])}|{organization['_id']}" for field in cls.FIELDS
                if organization.get(field) is not None}

    @staticmethod
    def _sortable(value) -> str:
        """Dates are ISO strings already; years get four digits, so strings sort as the values do."""
        return f"{value:04d}" if isinstance(value, int) else str(value)

    def write(self, session: ClientSession | None, old: dict | None, new: dict) -> None:
        """Make the entries of `old` (what is stored) those of `new`, in the caller's transaction."""
        before, after = self.entries(old), self.entries(new)
        if before - after:
            self.collection.delete_many({"_id": {"$in": sorted(before - after)}}, session=session)
        self._add(session, new["_id"], after - before)

    def _add(self, session: ClientSession | None, organization_id: str, entries: set[str]) -> None:
        """Insert those of `entries` not there yet: one can be, when an earlier version of the registry changed
        the organization and the follower added it (see `heal`). In a transaction, a duplicate would abort
        it, so the ones there are left out; one the follower adds meanwhile is a write conflict, and the
        transaction is run again."""
        if not entries:
            return
        if session is None:
            insert_missing(self.collection, [{"_id": entry, "organization_id": organization_id}
                                             for entry in sorted(entries)])
            return
        missing = sorted(entries - ids_present(self.collection, sorted(entries), session))
        if missing:
            self.collection.insert_many([{"_id": entry, "organization_id": organization_id} for entry in missing],
                                        session=session)

    def heal(self, organizations: list[dict]) -> None:
        """Add what these (current) versions' entries lack. Commands write the entries, but during a rolling
        upgrade a process of an earlier version changes organizations without them; the follower sees every
        change. An entry added for a version already replaced is harmless: the sweep removes it (`stale`)."""
        insert_missing(self.collection, [{"_id": entry, "organization_id": organization["_id"]}
                                         for organization in organizations for entry in self.entries(organization)])

    def organizations_due(self, bounds: list[tuple[str, str, str | int]]) -> dict[str, set[str]]:
        """The organizations with a marker below (`<`) or at most (`<=`) its bound, for any bound, with the
        entries that selected them (in id order)."""
        due: dict[str, set[str]] = {}
        for field, comparison, bound in bounds:
            # "|" sorts before "}": "<field>|<value>|<id>" < "<field>|<bound>}" exactly when value <= bound.
            end = f"{field}|{self._sortable(bound)}" + ("}" if comparison == "<=" else "")
            for doc in self.collection.find({"_id": {"$gt": f"{field}|", "$lt": end}}, {"organization_id": 1}):
                due.setdefault(doc["organization_id"], set()).add(doc["_id"])
        return dict(sorted(due.items()))

    def remove_stale(self, session: ClientSession, organization: dict, selected: set[str]) -> None:
        """Entries that selected the organization but are not its markers' (left by `heal`) go, in the
        sweep's transaction of the organization."""
        stale = selected - self.entries(organization)
        if stale:
            self.collection.delete_many({"_id": {"$in": sorted(stale)}}, session=session)

    def rebuild(self, organizations: Collection) -> int:
        """Entries for every organization (those already there left as they are); returns how many were added."""
        fields = {field: 1 for field in self.FIELDS}
        entries = ({"_id": entry, "organization_id": organization["_id"]}
                   for organization in organizations.find({"status": domain.REGISTERED}, fields)
                   for entry in self.entries(organization))
        return sum(insert_missing(self.collection, batch) for batch in batches(entries, 1000))


class Codes:
    """The unified social credit codes assigned, one small document each: `{_id: uscc, organization_id}`. Its
    `_id` keeps a code unique and finds the organization it was assigned to (the public register, a search by a
    whole code).

    Earlier versions indexed `uscc` on the organizations, which cost every application, none of which has a
    code yet: SecantusDB reads its index catalogue for every index on every insert (see SweepDue). Here a code
    costs one small insert, in the transaction of the version that first has it (an approval).
    """

    INDEX_BEFORE = "uscc_1"  # the organizations' index of earlier versions

    def __init__(self, db: Database):
        self.collection = db[CODES]

    def organization_id(self, uscc: str) -> str | None:
        entry = self.collection.find_one({"_id": uscc})
        return None if entry is None else entry["organization_id"]

    def write(self, session: ClientSession | None, old: dict | None, new: dict) -> None:
        """The code `new` has and `old` did not, in the caller's transaction: a code taken already aborts it,
        as the unique index did."""
        code = new.get("uscc")
        if code and code != (old or {}).get("uscc"):
            self.collection.insert_one({"_id": code, "organization_id": new["_id"]}, session=session)

    def heal(self, organizations: list[dict]) -> None:
        """Add the codes of these (current) versions that are not here: during a rolling upgrade a process of an
        earlier version approves without writing one, and the follower sees every change."""
        insert_missing(self.collection, self._entries(organizations))

    def rebuild(self, organizations: Collection) -> int:
        """Entries for every organization with a code (those there already left as they are); returns how many
        were added."""
        coded = organizations.find({"uscc": {"$exists": True}}, {"uscc": 1})
        return sum(insert_missing(self.collection, self._entries(batch)) for batch in batches(coded, 1000))

    @staticmethod
    def _entries(organizations: list[dict]) -> list[dict]:
        return [{"_id": organization["uscc"], "organization_id": organization["_id"]}
                for organization in organizations if organization.get("uscc")]


def sweep_item(organization: dict, flag: dict) -> dict:
    return {"organization_id": organization["_id"], "organization_name": organization["name"],
            **domain.flag_view(flag)}


def ensure_indexes(db: Database) -> None:
    organizations = db[ORGANIZATIONS]
    # The code counter exists before any approval: concurrent first upserts of it misbehave on SecantusDB.
    try:
        db["counters"].update_one({"_id": "organization_code"}, {"$setOnInsert": {"n": 0}}, upsert=True)
    except DuplicateKeyError:
        pass  # another process created it at the same moment
    organizations.create_index("name_claim", unique=True, sparse=True)
    organizations.create_index("applicant")
    create_collection_if_missing(db[CODES])  # written in transactions
    _move_off_the_organizations(db)
    db[RENEWALS].create_index([("organization_id", ASCENDING), ("status", ASCENDING)])
    db[RENEWALS].create_index([("status", ASCENDING), ("filed_at", ASCENDING)])  # the officers' queue
    db[REPORTS].create_index("organization_id")
    db[SWEEPS].create_index("idempotency", unique=True, sparse=True)
    # Term runs hold one term, batch runs the list of theirs: one (multikey) index finds both.
    db[SearchIndex.RUNS].create_index("term", sparse=True)


def _move_off_the_organizations(db: Database) -> None:
    """Earlier versions indexed on the organizations what now has a collection of its own (the sweep markers,
    the codes): the entries are written there, then those indexes go (last, so a start stopped half-way does it
    again)."""
    organizations = db[ORGANIZATIONS]
    present = organizations.index_information()
    for names, moved_to, rebuild in ((SweepDue.INDEXES_BEFORE, SWEEP_DUE, SweepDue(db).rebuild),
                                     ((Codes.INDEX_BEFORE,), CODES, Codes(db).rebuild)):
        if not any(name in present for name in names):
            continue
        added = rebuild(organizations)
        for name in names:
            drop_index_if_present(organizations, name)
        log.info("%d entries moved from the organizations' indexes %s to %s", added, ", ".join(names), moved_to)


# -- the search index ----------------------------------------------------------------------------------
@dataclass
class RunInfo:
    run_id: str
    term: str
    level: int
    group: str
    size: int


class SearchIndex:
    """Postings (search.py) in runs, written by one writer at a time, read by every request.

    Two kinds of run in one collection:
    - a *term run* `{_id, term, level, group, size, ids, entries}` holds one term's postings; a query
      finds its terms' runs through the index on `term`;
    - a *batch run* `{_id, level: 0, term: [...], size, p: [[term, ids, entries], ...]}` holds every term
      of a small batch (a trickle of changes indexed as it comes): one insert per batch instead of one
      per term. Its `term` is the list of its terms, so the one (multikey) index on `term` finds both
      kinds in one query.
    `ids` and `entries` are space-separated strings (neither ids nor entries contain spaces): a driver
    decodes two strings much faster than a document with thousands of fields, and splitting them is C.
    Batch runs are split into term runs once there are BATCH_RUNS of them or ENTRIES entries in them, and
    when a term has FANOUT groups of runs at one level they are merged into one group at the next level
    (newest entry per organization kept; documents of at most CHUNK entries). Inserting documents is cheap
    on SecantusDB and rewriting a large one is not, so runs are only ever inserted and deleted, each swap in
    one transaction, so a reader sees every entry once or twice, never not at all.
    """

    RUNS = "search_runs"
    META = "search_meta"  # the change-stream position and the writer's lease
    SMALL_BATCH = 500  # organizations: a batch this small becomes one batch run
    BATCH_RUNS = 16
    ENTRIES = 20_000
    FANOUT = 8
    CHUNK = 20_000
    MERGE_ENTRIES = 100_000  # about how many entries one merge's swap rewrites (a term's own runs: at least)

    def __init__(self, db: Database):
        self.db = db
        self.runs_collection = db[self.RUNS]
        self.meta = db[self.META]
        self.catalog: dict[str, list[RunInfo]] | None = None  # the writer's view of the term runs
        self.batch_runs: list[RunInfo] = []

    # -- reading ----------------------------------------------------------------------------------
    def runs(self, terms: list[str]) -> dict[str, list[dict[str, str]]]:
        """Every run of these terms: term -> [{organization id: entry}, ...]. One indexed find."""
        by_term: dict[str, list[dict[str, str]]] = {term: [] for term in terms}
        if not terms:
            return by_term
        # No projections: SecantusDB applies them in Python, which costs more than sending the fields.
        for run in self.runs_collection.find({"term": {"$in": terms}}):
            if "p" in run:  # a batch run
                for term, ids, entries in run["p"]:
                    if term in by_term:
                        by_term[term].append(unpacked(ids, entries))
            else:
                by_term[run["term"]].append(unpacked(run["ids"], run["entries"]))
        return by_term

    # -- writing ----------------------------------------------------------------------------------
    def load_catalog(self) -> None:
        catalog: dict[str, list[RunInfo]] = {}
        batch_runs = []
        for doc in self.runs_collection.find({}, {"term": 1, "terms": 1, "level": 1, "group": 1, "size": 1}):
            if "terms" in doc:  # a batch run from before batch runs carried their terms in `term`
                self.runs_collection.update_one({"_id": doc["_id"]}, {"$rename": {"terms": "term"}})
            if "group" in doc:
                catalog.setdefault(doc["term"], []).append(
                    RunInfo(doc["_id"], doc["term"], doc["level"], doc["group"], doc["size"]))
            else:
                batch_runs.append(RunInfo(doc["_id"], "", 0, doc["_id"], doc["size"]))
        self.catalog, self.batch_runs = catalog, batch_runs

    def add(self, organizations: list[dict], region_key: str) -> int:
        """Index a batch of organization versions; returns the number of entries written."""
        if self.catalog is None:
            self.load_catalog()
        postings = self._postings(organizations, region_key)
        if not postings:
            return 0
        entries = sum(len(e) for e in postings.values())
        if len(organizations) <= self.SMALL_BATCH:
            run_id = uuid.uuid4().hex
            self._swap([], [{"_id": run_id, "level": 0, "term": list(postings), "size": entries,
                             "p": [[term, *packed(e)] for term, e in postings.items()]}])
            self.batch_runs.append(RunInfo(run_id, "", 0, run_id, entries))
            if len(self.batch_runs) >= self.BATCH_RUNS or sum(r.size for r in self.batch_runs) >= self.ENTRIES:
                self._split_batch_runs()
        else:
            self._add_term_runs(postings, [])
        return entries

    @staticmethod
    def _postings(organizations: list[dict], region_key: str) -> dict[str, dict[str, str]]:
        postings: dict[str, dict[str, str]] = {}
        for organization in organizations:
            for term, value in search.organization_entries(organization, region_key).items():
                bucket = postings.setdefault(term, {})
                current = bucket.get(organization["_id"])
                if current is None or search.newer(value, current):
                    bucket[organization["_id"]] = value
        return postings

    def _split_batch_runs(self) -> None:
        ids = [run.run_id for run in self.batch_runs]
        postings: dict[str, list[dict[str, str]]] = {}
        for run in self.runs_collection.find({"_id": {"$in": ids}}):
            for term, run_ids, entries in run["p"]:
                postings.setdefault(term, []).append(unpacked(run_ids, entries))
        self._add_term_runs({term: search.merge_entries(runs) for term, runs in postings.items()}, ids)
        self.batch_runs = []

    def _add_term_runs(self, postings: dict[str, dict[str, str]], replacing: list[str]) -> None:
        group = uuid.uuid4().hex
        infos = [RunInfo(f"{group}:{n}", term, 1, group, len(entries)) for n, (term, entries) in enumerate(postings.items())]
        self._swap(replacing, [term_run(i, postings[i.term]) for i in infos])
        for info in infos:
            self.catalog.setdefault(info.term, []).append(info)
        self._compact(list(postings))

    def _compact(self, terms: list[str]) -> None:
        """Merge, level by level, every one of `terms` that has FANOUT groups of runs at a level. A split adds a
        group to each of its terms, so many terms come due together (hundreds at a time): they are read
        together and swapped together, in transactions of about MERGE_ENTRIES entries, rather than with a read
        and a transaction per term. (One of each per term took the follower 2-3.5 s per such split under
        a steady stream of applications, during which it read nothing: the applications waiting for it stayed
        unlisted and their events unpublished.)"""
        level = 1
        while terms:
            due = {}
            for term in terms:
                at_level = [info for info in self.catalog.get(term, []) if info.level == level]
                if len({info.group for info in at_level}) >= self.FANOUT:
                    due[term] = at_level
            part: dict[str, list[RunInfo]] = {}
            entries = 0
            for term, infos in due.items():
                part[term] = infos
                entries += sum(info.size for info in infos)
                if entries >= self.MERGE_ENTRIES:
                    self._merge(part, level)
                    part, entries = {}, 0
            if part:
                self._merge(part, level)
            terms, level = list(due), level + 1

    def _merge(self, due: dict[str, list[RunInfo]], level: int) -> None:
        """Each term's runs in `due` (all at `level`) merged into one group at the next level, in one swap."""
        ids = [info.run_id for infos in due.values() for info in infos]
        runs: dict[str, list[dict[str, str]]] = {term: [] for term in due}
        for run in find_by_ids(self.runs_collection, ids):
            runs[run["term"]].append(unpacked(run["ids"], run["entries"]))
        group = uuid.uuid4().hex
        merged_infos: dict[str, list[RunInfo]] = {}
        documents = []
        for term, term_runs in runs.items():
            ordered = sorted(search.merge_entries(term_runs).items())
            chunks = [dict(chunk) for chunk in batches(ordered, self.CHUNK)]
            merged_infos[term] = [RunInfo(f"{group}:{len(documents) + n}", term, level + 1, group, len(chunk))
                                  for n, chunk in enumerate(chunks)]
            documents += [term_run(info, chunk) for info, chunk in zip(merged_infos[term], chunks)]
        self._swap(ids, documents)
        gone = set(ids)
        for term, infos in merged_infos.items():
            self.catalog[term] = [info for info in self.catalog[term] if info.run_id not in gone] + infos

    def _swap(self, old_ids: list[str], runs: list[dict]) -> None:
        """Insert runs and delete others in one transaction."""
        def work(session):
            if runs:
                self.runs_collection.insert_many(runs, ordered=False, session=session)
            for part in in_lists(old_ids):
                self.runs_collection.delete_many({"_id": {"$in": part}}, session=session)

        run_in_transaction(self.db.client, work, deadline_seconds=60.0)


def term_run(info: RunInfo, entries: dict[str, str]) -> dict:
    return {"_id": info.run_id, "term": info.term, "level": info.level, "group": info.group, "size": info.size,
            **dict(zip(("ids", "entries"), packed(entries)))}


def packed(entries: dict[str, str]) -> tuple[str, str]:
    return " ".join(entries), " ".join(entries.values())


def unpacked(ids: str, entries: str) -> dict[str, str]:
    return dict(zip(ids.split(" "), entries.split(" "))) if ids else {}


class ListIndex:
    """The list blocks (search.py): lists without `q` answered without reading every match.

    `list_blocks` holds blocks of consecutive organization ids `{_id: first id, ids, entries}` (packed as
    the search runs are), `list_counts` each block's count per code `{_id: first id, counts, size}`. Blocks
    partition the ids: a block covers from its first id to the next block's (the first block from ""). New
    organizations (ids grow with time) fill the last block and then open a new one; a block that older ids
    arriving late (an import of earlier records) grow past twice BLOCK is split. So blocks keep BLOCK to
    2 x BLOCK organizations; an organization changing only changes its entry in its block. A list reads every
    counts document (BLOCK = 5,000: 200 at a million organizations) and the block or two its page lies
    in. Written by the follower only (one writer, under its lease); each block with its counts in one
    transaction, guarded by the block's revision: a writer whose view is stale (another follower wrote
    meanwhile, after a lease handover) fails instead of overwriting, and its batch is read again. Entries
    are versioned, so applying a version twice changes nothing.
    """

    BLOCKS = "list_blocks"
    COUNTS = "list_counts"
    BLOCK = 5000

    def __init__(self, db: Database):
        self.db = db
        self.blocks = db[self.BLOCKS]
        self.counts = db[self.COUNTS]
        self.directory: list[str] | None = None  # the writer's view: every block's first id, in order
        self.last_high: str = ""  # the highest id in the last block
        self.revisions: dict[str, int] = {}  # the revision of each block this writer read (0: a new block)

    # -- reading ----------------------------------------------------------------------------------
    def page(self, filters: search.Filters, *, skip: int, limit: int) -> search.Answer:
        counts = [(doc["_id"], doc["counts"]) for doc in self.counts.find()]
        total, needed, skip_in_first = search.blocks_of_page(counts, filters, skip=skip, limit=limit)
        if not needed:
            return search.Answer(total=total)
        by_id = {doc["_id"]: doc for doc in self.blocks.find({"_id": {"$in": needed}})}
        # A block's ids are written in ascending order (_write), so the page is read off its end.
        blocks = [(by_id[b]["ids"].split(" "), by_id[b]["entries"].split(" ")) for b in needed
                  if b in by_id and by_id[b]["ids"]]
        return search.Answer(total=total, ids=search.page_of_blocks(blocks, filters, skip_in_first=skip_in_first,
                                                                    limit=limit))

    # -- writing ----------------------------------------------------------------------------------
    def add(self, organizations: list[dict]) -> None:
        """Apply a batch of organization versions (any order, repeats harmless)."""
        if not organizations:
            return
        if self.directory and self.counts.find_one({"_id": {"$gt": self.directory[-1]}}) is not None:
            self.forget()  # another follower opened a block since this one looked
        if self.directory is None:
            self._load()
        touched: dict[str, dict[str, str]] = {}
        for organization in sorted(organizations, key=lambda o: o["_id"]):
            org_id = organization["_id"]
            block = self._block_of(org_id, touched)
            entries = touched.get(block)
            if entries is None:
                entries = touched[block] = self._entries(block)
            value = search.entry(search.code_of(organization["status"], organization["type"],
                                                organization.get("risk", "none")), organization["version"])
            current = entries.get(org_id)
            if current is None or search.newer(value, current):
                entries[org_id] = value
            if block == self.directory[-1] and org_id > self.last_high:
                self.last_high = org_id
        for block, entries in touched.items():
            self._write(block, entries)

    def _block_of(self, org_id: str, touched: dict[str, dict[str, str]]) -> str:
        if not self.directory:
            self.directory.append("")
            touched[""], self.revisions[""] = {}, 0
            return ""
        block = self.directory[bisect.bisect_right(self.directory, org_id) - 1]
        if block == self.directory[-1] and org_id > self.last_high:
            entries = touched.get(block)
            if entries is None:
                entries = touched[block] = self._entries(block)
            if len(entries) >= self.BLOCK:  # the last block is full: a newer id opens the next one
                self.directory.append(org_id)
                touched[org_id], self.revisions[org_id] = {}, 0
                self.last_high = org_id
                return org_id
        return block

    def _load(self) -> None:
        # Only the ids: the counts documents are small, and there are a few hundred of them at most.
        self.directory = sorted(doc["_id"] for doc in self.counts.find())
        self.last_high = ""
        if self.directory:
            last = self.blocks.find_one({"_id": self.directory[-1]})
            if last is not None and last["ids"]:
                self.last_high = max(last["ids"].split(" "))

    def _entries(self, block: str) -> dict[str, str]:
        doc = self.blocks.find_one({"_id": block})
        self.revisions[block] = doc.get("rev", 0) if doc is not None else 0
        return unpacked(doc["ids"], doc["entries"]) if doc is not None else {}

    def _write(self, block: str, entries: dict[str, str]) -> None:
        """Write a block and its counts. A block grown past twice BLOCK (organizations arriving with older
        ids than the newest block's, as an import of earlier records does) is split into blocks of BLOCK,
        in the same transaction: the first part keeps the block's id, each other part is a new block
        starting at its first id."""
        ordered = sorted(entries.items())
        size = self.BLOCK if len(ordered) > 2 * self.BLOCK else len(ordered) or 1
        parts = [dict(part) for part in batches(ordered, size)] or [{}]
        firsts = [block] + [next(iter(part)) for part in parts[1:]]
        revision = self.revisions.get(block, 0)

        def work(session):
            for n, (first, part) in enumerate(zip(firsts, parts)):
                ids, values = packed(part)
                document = {"_id": first, "ids": ids, "entries": values, "rev": revision + 1 if n == 0 else 1}
                if n > 0 or revision == 0:
                    try:
                        self.blocks.insert_one(document, session=session)
                    except DuplicateKeyError:
                        raise StaleListBlock(first) from None
                elif self.blocks.replace_one({"_id": first, "rev": revision}, document,
                                             session=session).matched_count != 1:
                    raise StaleListBlock(first)
                self.counts.replace_one({"_id": first}, {"_id": first, "counts": search.packed_counts(part),
                                                         "size": len(part)}, upsert=True, session=session)

        try:
            run_in_transaction(self.db.client, work, deadline_seconds=60.0)
        except StaleListBlock:
            self.forget()
            raise
        self.revisions[block] = revision + 1
        for first in firsts[1:]:
            bisect.insort(self.directory, first)
            self.revisions[first] = 1

    def listed(self) -> int:
        """How many organizations the blocks hold, from the counts documents (a few hundred at most)."""
        return sum(doc.get("size", 0) for doc in self.counts.find({}, {"size": 1}))

    def forget(self) -> None:
        """Drop the writer's view (another follower may have written meanwhile)."""
        self.directory = None
        self.revisions = {}


class StaleListBlock(PyMongoError):
    """A list block changed since this writer read it: the follower closes and reads its batch again."""

    def __init__(self, block: str):
        super().__init__(f"the list block {block!r} was written by another follower meanwhile")


class OrganizationFollower:
    """Follows the organizations' change stream: publishes the events new organizations carry and records
    them in the outbox (see the module doc) within REGISTRY_SEARCH_POLL_SECONDS, and keeps the search index
    up to date about half a second behind.

    Each call reads what the stream has now and stops once a read comes back with less than BATCH changes:
    it does not wait for more, nor read again for what arrived meanwhile. Under a steady stream of applications
    a follower that waited would read them one or two per getMore, and publish and record them in many small
    batches; read every REGISTRY_SEARCH_POLL_SECONDS, they come in one batch. (Measured on SecantusDB at about
    150 applications a second, in an experiment without the outbox copy: the worker's CPU per application
    halved and SecantusDB's fell by a sixth.) A follower that read again until a read came back empty did
    the same by another way: at 270 applications a second each of its reads found the twenty or so that had
    arrived while it published the last ones, so it published batches of twenty for the whole of its budget.

    The stream delivers committed versions in commit order. Changes are indexed in batches: whenever a call
    has read the stream to its end (at most every REGISTRY_SEARCH_POLL_SECONDS, so the lists and the index
    are about half a second behind), and during a long catch-up at least INDEX_SECONDS apart or BATCH at a
    time, because on SecantusDB a trickle of tiny index batches costs more than the requests that caused
    them. (Waiting INDEX_SECONDS after the stream's end as well, as earlier versions did, saved one index
    batch a second under load and left every last application of a burst unlisted for up to a second.)
    The stream position is saved after each indexed batch, so a restarted follower goes on from there:
    recording is idempotent, a second publication is applied once by consumers and index entries are
    versioned, so reading a change twice changes nothing. Without a saved position (a new deployment, or
    history the server no longer keeps) it goes through every organization first. Worker replicas share the
    work through a lease: one follows. A follower that has read everything checks now and then that the
    server lost nothing before it read it (`_check_nothing_skipped`): SecantusDB's stream skips what fell out
    of its oplog.
    """

    LEASE_SECONDS = 10.0
    BATCH = 5000
    INDEX_SECONDS = 1.0
    CHECK_SECONDS = 10.0  # how often a follower that has read everything checks that the server lost nothing
    AWAIT_MS = 1  # how long a read of the stream waits for a change (a server's default is a second)
    CHANGES = [{"$match": {"operationType": {"$in": ["insert", "replace", "update"]}}}]  # what the stream reads

    def __init__(self, db: Database, region_key: str, service: str = "registry", *, kafka=None,
                 topic: str | None = None):
        self.db = db
        self.organizations = db[ORGANIZATIONS]
        self.outbox = Outbox(db, source_of(service))
        # With a Kafka link the follower publishes carried events itself; without one, the relay does.
        self.publisher = DirectPublisher(self.outbox, kafka, topic)
        self.index = SearchIndex(db)
        self.lists = ListIndex(db)
        self.sweep_due = SweepDue(db)
        self.codes = Codes(db)
        self.meta = self.index.meta
        self.region_key = region_key
        self.owner = f"search-{uuid.uuid4().hex}"
        self.stream = None
        self._lease_until = 0.0
        self._unindexed: list[dict] = []  # versions read (their events published), not indexed yet
        self._unindexed_token = None  # the stream position after them
        self._indexed_at = 0.0
        self.behind = False  # the last call spent its budget on full reads: a backlog
        self._checked_at = 0.0
        self._checked_token = None  # the stream position at the last check (`_check_nothing_skipped`)
        ensure_indexes(db)

    def catch_up(self, budget_seconds: float = 2.0) -> int:
        """Publish and record carried events at once, index when due (reading at least once, then for at most about
        `budget_seconds`); returns how many organization versions were read. `behind` says afterwards whether
        it stopped on a full read (BATCH changes) with its budget spent: a backlog (a restart, an outage), which
        the worker reads on at once. Under a steady stream of applications the reads come back smaller, and the
        worker's pause lets the next ones gather into one batch (see above)."""
        self.behind = False
        if not self._hold_lease():
            self.close()
            return 0
        try:
            if self.stream is None:
                self._open()
                self._checked_token = self.stream.resume_token
            read = 0
            deadline = time.monotonic() + budget_seconds
            while True:
                changes = self._next_changes()
                if changes:
                    organizations = [c["fullDocument"] for c in changes if c.get("fullDocument")]
                    self._publish(organizations)
                    self.sweep_due.heal(organizations)
                    self.codes.heal(organizations)
                    self._unindexed += organizations
                    self._unindexed_token = self.stream.resume_token
                    read += len(changes)
                # A read of fewer than BATCH changes stopped where the stream ended. Reading on would chase the
                # changes that arrived while these were published, a few at a time (see the class doc).
                read_to_the_end = len(changes) < self.BATCH
                self._index_when_due(read_to_the_end)
                if read_to_the_end:
                    self._check_nothing_skipped()
                    return read
                if time.monotonic() >= deadline:
                    self.behind = True
                    return read
        except PyMongoError:
            self.close()  # opened again from the saved position next time
            raise

    def _check_nothing_skipped(self) -> None:
        """Called, at most every CHECK_SECONDS, with the stream read to its end (under a steady load too: each
        read reaches it): did the server still hold everything this follower read since the last check when it
        read it? SecantusDB's open stream goes on past changes that fell out of its oplog without an error
        (shared/infra.py); opening a stream at a position that is gone fails (ChangeStreamHistoryLost), as on
        MongoDB. The oplog loses only its oldest entries, so if a stream can still be opened at the position of
        the last check, nothing after it was lost before it was read. If not, the follower goes through every
        organization (`rebuild`): a `submitted` event must not wait for a next command that may never come.

        Neither counting the organizations nor reading them by id range would do: on SecantusDB both read the
        whole collection (a count of 100,000 organizations takes 1.3 s, under its storage lock)."""
        now = time.monotonic()
        if now - self._checked_at < self.CHECK_SECONDS:
            return
        self._checked_at = now
        reached = self.stream.resume_token
        if self._checked_token is not None and reached != self._checked_token:
            try:
                # Without the documents: opening a stream reads its first changes, which the check does not need.
                self.organizations.watch(self.CHANGES, resume_after=self._checked_token, batch_size=1).close()
            except OperationFailure as exc:
                if exc.code != CHANGE_STREAM_HISTORY_LOST:
                    raise
                log.error("the organizations' change stream went on past changes the server no longer held; "
                          "going through every organization (%s)", exc)
                self.rebuild()
        self._checked_token = reached

    def _index_when_due(self, read_to_the_end: bool = False) -> None:
        due = (read_to_the_end or len(self._unindexed) >= self.BATCH
               or time.monotonic() - self._indexed_at >= self.INDEX_SECONDS)
        if self._unindexed and due:
            # The list blocks first: whoever sees a version in the search index finds it in the lists too.
            self.lists.add(self._unindexed)
            self.index.add(self._unindexed, self.region_key)
            self._save_position(self._unindexed_token)
            self._unindexed, self._indexed_at = [], time.monotonic()

    def _publish(self, organizations: list[dict]) -> None:
        """Publish and record the events these versions carry (unless a command recorded them already)."""
        carried_events = [Event(**record) for organization in organizations
                          for record in organization.get(PENDING_EVENTS, [])]
        for attempt in range(3):
            try:
                self.publisher.publish(carried_events)
                return
            except OperationFailure as exc:  # BulkWriteError included
                # A command recorded some of them meanwhile (a duplicate, or a write conflict while it was
                # committing): check again.
                recorded_meanwhile = (isinstance(exc, BulkWriteError)
                                      or exc.has_error_label("TransientTransactionError"))
                if attempt == 2 or not recorded_meanwhile:
                    raise

    def _next_changes(self) -> list[dict]:
        changes = []
        while len(changes) < self.BATCH:
            change = self.stream.try_next()
            if change is None:
                break
            changes.append(change)
        return changes

    def _open(self) -> None:
        saved = self.meta.find_one({"_id": "position"})
        if saved is not None:
            try:
                self.stream = self._watch(resume_after=saved["token"])
                if not self._lists_built():  # a deployment from before the list blocks: build them once
                    self._scan(self.lists.add)
                    self._mark_lists_built()
                return
            except OperationFailure as exc:
                log.warning("search index: cannot resume the change stream (%s); indexing everything again", exc)
        self.stream = self._watch()
        token = self.stream.resume_token
        self.rebuild()
        self._mark_lists_built()
        if token is not None:
            self._save_position(token)

    def _watch(self, **kwargs):
        return self.organizations.watch(self.CHANGES, full_document="updateLookup", max_await_time_ms=self.AWAIT_MS,
                                        batch_size=self.BATCH, **kwargs)

    def rebuild(self) -> int:
        """Go through every organization as it is now (what was done already changes nothing)."""
        return self._scan(self._publish_and_index)

    def _scan(self, apply) -> int:
        fields = {"name_key": 1, "status": 1, "type": 1, "risk": 1, "version": 1, "uscc": 1, PENDING_EVENTS: 1}
        total = 0
        for batch in batches(self.organizations.find({}, fields, batch_size=self.BATCH), self.BATCH):
            apply(batch)
            total += len(batch)
        return total

    def _publish_and_index(self, organizations: list[dict]) -> None:
        self._publish(organizations)
        self.codes.heal(organizations)  # as for changes read (sweep entries are healed from whole documents only)
        self.lists.add(organizations)
        self.index.add(organizations, self.region_key)

    def _lists_built(self) -> bool:
        return self.meta.find_one({"_id": "lists"}) is not None

    def _mark_lists_built(self) -> None:
        self.meta.update_one({"_id": "lists"}, {"$set": {"built_at": now_utc()}}, upsert=True)

    def _save_position(self, token) -> None:
        if token is not None:
            self.meta.update_one({"_id": "position"}, {"$set": {"token": token, "at": now_utc()}}, upsert=True)

    def _hold_lease(self) -> bool:
        now = time.time()
        if now < self._lease_until - self.LEASE_SECONDS / 2:
            return True
        try:
            doc = self.meta.find_one_and_update(
                {"_id": "lease", "$or": [{"owner": self.owner}, {"expires": {"$lt": now}}]},
                {"$set": {"owner": self.owner, "expires": now + self.LEASE_SECONDS}},
                upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            return False  # another follower holds a live lease
        held = doc is not None and doc.get("owner") == self.owner
        self._lease_until = now + self.LEASE_SECONDS if held else 0.0
        return held

    def close(self) -> None:
        # What was read but not indexed is read again from the saved position.
        self._unindexed, self._unindexed_token = [], None
        if self.stream is not None:
            try:
                self.stream.close()
            except PyMongoError:
                pass
            self.stream = None
        self.index.catalog = None  # another follower may have merged runs meanwhile
        self.lists.forget()

    def stop(self) -> None:
        """Close the stream and the Kafka link for good (the worker stops)."""
        self.close()
        self.publisher.close()
