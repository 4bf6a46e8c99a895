"""The reconciliation check every fault scenario ends with (TigerBeetle-style: check the invariants, not
the path that led there).

It reads each service's database directly and checks, independently of the services' code:
1. delivered: every event reached its service's outbox (the registry's applications carry theirs in the
   document until its follower copies them) and was published, and every consumer applied exactly the
   events of the topics it consumes (processed ids == the producers' outbox ids), nothing dead-lettered;
2. committed <-> published: each aggregate's stored state has its events (each version 1..N of an
   organization has its event, the newest carrying the stored state; every project, award, fund, grant,
   disbursement, clawback and residency has its event), and no event names a state that was never committed;
3. read models: evaluation's and fund's organizations equal the newest snapshot the registry published
   for each organization (recomputed from the registry's outbox), and grants equal the awards published;
4. the fund's ledger invariants hold (tests/integration/fund_invariants.py);
5. nothing was applied twice: `applied_events` of each organization equals its number of distinct
   registry events, one grant per award, at most one payment per disbursement and per tranche, one
   disqualification per project.

`reconcile(stack)` raises AssertionError listing every problem found, and returns the counts it checked.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from services.registry.store import PENDING_EVENTS
from shared.events import short_type
from shared.outbox import PENDING
from shared.organizations import SNAPSHOT_FIELDS
from tests.integration.fund_invariants import assert_ledger_invariants

SERVICES = ("registry", "evaluation", "fund")
# Who consumes whose events (CONTRACT.md): evaluation and fund keep the registry's organizations; fund
# also turns evaluation's awards into grants.
CONSUMES = {"evaluation": ("registry",), "fund": ("registry", "evaluation")}


@dataclass
class Reconciliation:
    """What the check covered, for the scenario's summary line."""

    events: dict[str, int]  # distinct events recorded, per producing service
    applied: dict[str, int]  # distinct events applied, per consumer
    organizations: int
    award_grants: int
    payments: int

    def line(self) -> str:
        produced = "+".join(f"{self.events[s]}" for s in SERVICES)
        applied = ", ".join(f"{c} {n}" for c, n in self.applied.items())
        return (f"reconciled: events {produced} (registry+evaluation+fund), applied once each ({applied}), "
                f"{self.organizations} organizations in both read models, {self.award_grants} award grants, "
                f"{self.payments} payments; ledger balanced")


def unsent_ids(db) -> set[str]:
    """The ids of the records a service has not published yet (each pending marker lists one change's)."""
    return {record_id for marker in db[PENDING].find() for record_id in marker["records"]}


class EventLog:
    """Every event each service recorded in its outbox (the outbox keeps sent records: it is the event log)."""

    def __init__(self, stack):
        self.records = {service: list(stack.db(service)["outbox"].find()) for service in SERVICES}
        self.events = {service: [r["event"] for r in records] for service, records in self.records.items()}
        self.unsent = {service: unsent_ids(stack.db(service)) for service in SERVICES}

    def ids(self, service: str) -> set[str]:
        return {r["_id"] for r in self.records[service]}

    def of_type(self, service: str, *types: str) -> list[dict]:
        return [e for e in self.events[service] if short_type(e) in types]


def reconcile(stack) -> Reconciliation:
    log = EventLog(stack)
    problems: list[str] = []
    applied = delivery_problems(stack, log, problems)
    organizations = organization_problems(stack, log, problems)
    evaluation_problems(stack, log, problems)
    award_grants, payments = fund_problems(stack, log, problems)
    if problems:
        shown = "\n  ".join(problems[:60])
        more = f"\n  ... and {len(problems) - 60} more" if len(problems) > 60 else ""
        raise AssertionError(f"reconciliation found {len(problems)} problems:\n  {shown}{more}")
    assert_ledger_invariants(stack)
    return Reconciliation(events={s: len(log.ids(s)) for s in SERVICES}, applied=applied,
                          organizations=organizations, award_grants=award_grants, payments=payments)


# -- 1. delivery --------------------------------------------------------------------------------------------
def carried_not_recorded(stack) -> set[str]:
    """Events an application carries in its document (registry, "an outbox embedded in the aggregate") that
    the registry has not copied into its outbox yet."""
    carried = {record["id"] for doc in stack.db("registry")["organizations"].find({PENDING_EVENTS: {"$ne": []}},
                                                                                  {PENDING_EVENTS: 1})
               for record in doc.get(PENDING_EVENTS) or []}
    recorded = {doc["_id"] for doc in stack.db("registry")["outbox"].find({"_id": {"$in": list(carried)}}, {"_id": 1})}
    return carried - recorded


def delivery_problems(stack, log: EventLog, problems: list[str]) -> dict[str, int]:
    stranded = carried_not_recorded(stack)
    if stranded:
        problems.append(f"registry: {len(stranded)} events carried by organizations never reached the outbox, "
                        f"e.g. {sorted(stranded)[:3]}")
    for service in SERVICES:
        unsent = len(log.unsent[service])
        if unsent:
            problems.append(f"{service}: {unsent} recorded events were never published")
    applied = {}
    for consumer, producers in CONSUMES.items():
        db = stack.db(consumer)
        processed = {doc["_id"] for doc in db["processed_events"].find({}, {"_id": 1})}
        expected = set().union(*(log.ids(p) for p in producers))
        missing, unexpected = expected - processed, processed - expected
        if missing:
            problems.append(f"{consumer}: {len(missing)} events of {'/'.join(producers)} never applied, "
                            f"e.g. {sorted(missing)[:3]}")
        if unexpected:
            problems.append(f"{consumer}: applied {len(unexpected)} events no producer recorded, "
                            f"e.g. {sorted(unexpected)[:3]}")
        letters = list(db["dead_letters"].find({}, {"error": 1, "topic": 1}))
        if letters:
            problems.append(f"{consumer}: {len(letters)} dead-lettered messages, e.g. {letters[0]}")
        applied[consumer] = len(processed & expected)
    return applied


# -- 2 and 3. organizations: registry state <-> events <-> read models ------------------------------------------
def organization_problems(stack, log: EventLog, problems: list[str]) -> int:
    published: dict[str, list[dict]] = defaultdict(list)  # organization id -> snapshots, one per event
    for event in log.events["registry"]:
        snapshot = event["data"].get("organization")
        if isinstance(snapshot, dict):
            published[snapshot["id"]].append(snapshot)
    newest = {org_id: max(snapshots, key=lambda s: s["version"]) for org_id, snapshots in published.items()}

    stored = {doc["_id"]: doc for doc in stack.db("registry")["organizations"].find()}
    for org_id, organization in stored.items():
        # One command may publish two facts about one version (a report that also clears a flag).
        versions = sorted({s["version"] for s in published.get(org_id, [])})
        if versions != list(range(1, organization["version"] + 1)):
            problems.append(f"registry: organization {org_id} is at version {organization['version']} but its "
                            f"events carry versions {versions} (each committed version needs its event)")
        elif view(organization) != view(newest[org_id]):
            problems.append(f"registry: {org_id} stored as {view(organization)} but its last event says "
                            f"{view(newest[org_id])}")
    for org_id in published.keys() - stored.keys():
        problems.append(f"registry: events were published for organization {org_id}, which was never committed")

    for consumer in CONSUMES:
        models = {doc["_id"]: doc for doc in stack.db(consumer)["organizations"].find()}
        for org_id in newest.keys() - models.keys():
            problems.append(f"{consumer}: read model lacks organization {org_id}")
        for org_id in models.keys() - newest.keys():
            problems.append(f"{consumer}: read model has organization {org_id} the registry never published")
        for org_id in newest.keys() & models.keys():
            model = models[org_id]
            if view(model) != view(newest[org_id]):
                problems.append(f"{consumer}: read model of {org_id} is {view(model)}, the registry's newest "
                                f"snapshot is {view(newest[org_id])}")
            if model.get("applied_events") != len(published[org_id]):
                problems.append(f"{consumer}: {org_id} applied {model.get('applied_events')} events, the registry "
                                f"published {len(published[org_id])} (applied twice, or lost)")
    return len(newest)


def view(organization: dict) -> dict:
    """The fields every registry event's snapshot carries (the read models keep exactly these)."""
    if "_id" in organization and "id" not in organization:
        organization = {**organization, "id": organization["_id"]}
    return {name: organization.get(name) for name in ("id", *SNAPSHOT_FIELDS)}


# -- 2 and 5. evaluation: projects, disqualifications, closings, awards <-> events ----------------------------
def evaluation_problems(stack, log: EventLog, problems: list[str]) -> None:
    db = stack.db("evaluation")
    check_one_event_each(problems, "evaluation project", {p["_id"] for p in db["projects"].find({}, {"_id": 1})},
                         [e["subject"] for e in log.of_type("evaluation", "evaluation.project.entered")])
    disqualified = {p["_id"] for p in db["projects"].find({"status": "disqualified"}, {"_id": 1})}
    check_one_event_each(problems, "disqualified project", disqualified,
                         [e["subject"] for e in log.of_type("evaluation", "evaluation.project.disqualified")])
    closed = {r["_id"] for r in db["rounds"].find({"status": {"$ne": "open"}}, {"_id": 1})}
    check_one_event_each(problems, "closed round", closed,
                         [e["subject"] for e in log.of_type("evaluation", "evaluation.round.closed")])
    check_one_event_each(problems, "award", {a["_id"] for a in db["awards"].find({}, {"_id": 1})},
                         [e["data"]["award_id"] for e in log.of_type("evaluation", "evaluation.award.granted")])


def check_one_event_each(problems: list[str], what: str, committed: set[str], event_keys: list[str]) -> None:
    """Each committed thing has exactly one event naming it, and each event names a committed thing."""
    counts = Counter(event_keys)
    for key in sorted(committed - counts.keys())[:10]:
        problems.append(f"{what} {key} was committed without its event")
    for key in sorted(counts.keys() - committed)[:10]:
        problems.append(f"an event names {what} {key}, which was never committed")
    for key, count in sorted(counts.items()):
        if count > 1:
            problems.append(f"{what} {key} has {count} events, not one")


# -- 2, 3 and 5. fund: grants from awards, funds, disbursements, clawbacks, residencies <-> events -------------
def fund_problems(stack, log: EventLog, problems: list[str]) -> tuple[int, int]:
    db = stack.db("fund")
    grants = list(db["grants"].find())

    awards = {e["data"]["award_id"]: e["data"] for e in log.of_type("evaluation", "evaluation.award.granted")}
    by_award = defaultdict(list)
    for grant in grants:
        if grant.get("award_key"):
            by_award[grant["award_key"]].append(grant)
    for award_id, award in awards.items():
        made = by_award.get(award_id, [])
        if len(made) != 1:
            problems.append(f"fund: award {award_id} has {len(made)} grants, not one")
        elif (made[0]["amount_fen"], made[0]["organization_id"]) != (award["prize_fen"], award["organization_id"]):
            problems.append(f"fund: grant {made[0]['_id']} of award {award_id} is {made[0]['amount_fen']} fen to "
                            f"{made[0]['organization_id']}; the award is {award['prize_fen']} fen to "
                            f"{award['organization_id']}")
    for award_id in by_award.keys() - awards.keys():
        problems.append(f"fund: grants {[g['_id'] for g in by_award[award_id]]} name award {award_id}, "
                        f"which evaluation never published")

    check_one_event_each(problems, "fund", {f["_id"] for f in db["funds"].find({}, {"_id": 1})},
                         [e["subject"] for e in log.of_type("fund", "fund.fund.created")])
    check_one_event_each(problems, "grant", {g["_id"] for g in grants},
                         [e["subject"] for e in log.of_type("fund", "fund.grant.created", "fund.grant.rejected")])

    payments = disbursement_problems(db, grants, log, problems)
    check_one_event_each(problems, "clawback", {c["id"] for g in grants for c in g.get("clawbacks", [])},
                         [e["data"]["clawback"]["id"] for e in log.of_type("fund", "fund.clawback.recorded")])
    residencies = list(db["residencies"].find())
    check_one_event_each(problems, "residency", {r["_id"] for r in residencies},
                         [e["subject"] for e in log.of_type("fund", "fund.park.residency_started")])
    check_one_event_each(problems, "ended residency", {r["_id"] for r in residencies if r["status"] != "active"},
                         [e["subject"] for e in log.of_type("fund", "fund.park.residency_ended")])
    return sum(len(made) for made in by_award.values()), payments


def disbursement_problems(db, grants: list[dict], log: EventLog, problems: list[str]) -> int:
    """Each disbursement's history is in its events once each; each is paid at most once, each tranche too."""
    events = defaultdict(list)  # disbursement id -> event kinds
    for event in log.of_type("fund", "fund.disbursement.paid", "fund.disbursement.held",
                             "fund.disbursement.released", "fund.disbursement.cancelled"):
        events[event["data"]["disbursement"]["id"]].append(short_type(event).rsplit(".", 1)[1])
    committed = set()
    for grant in grants:
        for disbursement in grant["disbursements"]:
            committed.add(disbursement["id"])
            expected = expected_disbursement_events(disbursement)
            if sorted(events.get(disbursement["id"], [])) != sorted(expected):
                problems.append(f"fund: disbursement {disbursement['id']} ({disbursement['status']}) has events "
                                f"{events.get(disbursement['id'], [])}, expected {expected}")
    for disbursement_id in events.keys() - committed:
        problems.append(f"fund: events name disbursement {disbursement_id}, which was never committed")

    payments = list(db["journal"].find({"kind": "disbursement.paid"}, {"grant_id": 1, "ref": 1}))
    for key, count in Counter(p["ref"]["disbursement_id"] for p in payments).items():
        if count > 1:
            problems.append(f"fund: disbursement {key} was paid {count} times")
    for (grant_id, tranche), count in Counter((p["grant_id"], p["ref"]["tranche"]) for p in payments).items():
        if count > 1:
            problems.append(f"fund: tranche {tranche} of grant {grant_id} was paid {count} times")
    return len(payments)


def expected_disbursement_events(disbursement: dict) -> list[str]:
    if disbursement["status"] == "paid":
        return ["held", "released"] if disbursement.get("released_at") else ["paid"]
    if disbursement["status"] == "held":
        return ["held"]
    return ["held", "cancelled"]
