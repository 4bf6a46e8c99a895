"""Fund and park rules, pure: no Flask, no pymongo. Plain data in, plain data and Events out.

The money model is a double-entry journal of transfers (TigerBeetle style). Four kinds of account:

| account | normal side | its balance is |
|---|---|---|
| `fund:<fid>:budget` | credit | the fund's budget |
| `fund:<fid>:available` | debit | what the fund can still commit (budget - committed + clawed back) |
| `grant:<gid>:committed` | debit | what the grant has committed but not yet paid |
| `recipient:<org>` | debit | what the organization received, net of clawbacks |

and four kinds of entry, each one transfer whose debit equals its credit:

| entry | debit | credit |
|---|---|---|
| `fund.opened` | fund available | fund budget |
| `grant.committed` | grant committed | fund available |
| `disbursement.paid` | recipient | grant committed |
| `clawback.recorded` | fund available | recipient |

The summary fields on funds and grants (`committed_fen`, `disbursed_fen`, ...) are kept in the same
transaction as the entry that changes them, and always equal what the journal says.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.errors import Conflict, ValidationFailed
from shared.events import Event

# -- states and kinds ---------------------------------------------------------------------------------
GRANT_ACTIVE, GRANT_COMPLETED, GRANT_REJECTED = "active", "completed", "rejected"
PAID, HELD, CANCELLED = "paid", "held", "cancelled"
RESIDENCY_ACTIVE, RESIDENCY_GRADUATED, RESIDENCY_ENDED = "active", "graduated", "ended"
REGISTERED, DEREGISTERED = "registered", "deregistered"
RISK_NONE, RISK_ABNORMAL, RISK_SERIOUS = "none", "abnormal", "serious"

FUND_OPENED = "fund.opened"
GRANT_COMMITTED = "grant.committed"
DISBURSEMENT_PAID = "disbursement.paid"
CLAWBACK_RECORDED = "clawback.recorded"
ENTRY_KINDS = (FUND_OPENED, GRANT_COMMITTED, DISBURSEMENT_PAID, CLAWBACK_RECORDED)

CURRENCY = "CNY"
FEN_PER_YUAN = 100
MAX_TRANCHES = 60  # monthly payments over five years


@dataclass(frozen=True)
class Rules:
    """Thresholds and names that districts set (DOMAIN.md); defaults are Pudong's."""

    award_tranches: tuple[int, ...] = (100,)
    park_min_years: int = 1
    park_max_years: int = 5
    park_ending_soon_days: int = 90
    funder_name: str = "上海市浦东新区民政局"
    funder_org_id: str = "socorg-funder-pudong-civil-affairs"
    grant_id_prefix: str = "360G-socorg-pudong"

    @classmethod
    def from_settings(cls, settings) -> "Rules":
        return cls(
            award_tranches=parse_tranches(settings.fund_award_tranches),
            park_min_years=settings.park_min_years,
            park_max_years=settings.park_max_years,
            park_ending_soon_days=settings.park_ending_soon_days,
            funder_name=settings.fund_funder_name,
            funder_org_id=settings.fund_funder_org_id,
            grant_id_prefix=settings.fund_grant_id_prefix,
        )


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


# -- accounts and journal entries ---------------------------------------------------------------------
def fund_budget_account(fund_id: str) -> str:
    return f"fund:{fund_id}:budget"


def fund_available_account(fund_id: str) -> str:
    return f"fund:{fund_id}:available"


def grant_committed_account(grant_id: str) -> str:
    return f"grant:{grant_id}:committed"


def recipient_account(organization_id: str) -> str:
    return f"recipient:{organization_id}"


def transfer(kind: str, *, debit: str, credit: str, amount_fen: int, fund_id: str, actor: str, now: datetime,
             grant_id: str | None = None, ref: dict | None = None) -> dict:
    """One journal entry moving `amount_fen` from `credit` to `debit`; refuses anything but a positive integer."""
    if kind not in ENTRY_KINDS:
        raise ValueError(f"unknown journal entry kind {kind!r}")
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
        raise ValueError(f"a transfer moves a positive integer number of fen, not {amount_fen!r}")
    if debit == credit:
        raise ValueError("a transfer needs two different accounts")
    entry = {
        "_id": new_id("je"),
        "fund_id": fund_id,
        "grant_id": grant_id,
        "time": now,
        "kind": kind,
        "lines": [
            {"account": debit, "debit_fen": amount_fen, "credit_fen": 0},
            {"account": credit, "debit_fen": 0, "credit_fen": amount_fen},
        ],
        "actor": actor,
        "ref": ref or {},
    }
    assert_balanced(entry)
    return entry


def assert_balanced(entry: dict) -> None:
    debits = sum(line["debit_fen"] for line in entry["lines"])
    credits = sum(line["credit_fen"] for line in entry["lines"])
    if debits != credits:
        raise ValueError(f"journal entry {entry['_id']} is not balanced: debits {debits} != credits {credits}")


def balances(entries) -> dict[str, dict[str, int]]:
    """Debits and credits posted to each account by `entries`."""
    totals: dict[str, dict[str, int]] = {}
    for entry in entries:
        for line in entry["lines"]:
            account = totals.setdefault(line["account"], {"debits_fen": 0, "credits_fen": 0})
            account["debits_fen"] += line["debit_fen"]
            account["credits_fen"] += line["credit_fen"]
    return totals


def normal_side(account: str) -> str:
    return "credit" if account.endswith(":budget") else "debit"


def balance_of(account: str, posted: dict[str, int]) -> int:
    """The balance on the account's normal side."""
    if normal_side(account) == "credit":
        return posted["credits_fen"] - posted["debits_fen"]
    return posted["debits_fen"] - posted["credits_fen"]


def yuan(fen: int) -> float:
    """Fen as a JSON number of yuan for the 360Giving export (exact to the fen for any real amount)."""
    return float(Decimal(fen) / FEN_PER_YUAN)


# -- tranches -------------------------------------------------------------------------------------------
def parse_tranches(text: str) -> tuple[int, ...]:
    """A setting such as "30,70" as percentages; raises ValueError if they are not whole and do not sum to 100."""
    try:
        percents = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"tranches must be whole percentages separated by commas, not {text!r}") from None
    problem = tranche_problem(percents)
    if problem:
        raise ValueError(problem)
    return percents


def tranche_problem(percents) -> str | None:
    if not percents:
        return "at least one tranche is needed"
    if len(percents) > MAX_TRANCHES:
        return f"at most {MAX_TRANCHES} tranches"
    if any(p <= 0 for p in percents):
        return "every tranche is a positive percentage"
    if sum(percents) != 100:
        return f"tranches must sum to 100, not {sum(percents)}"
    return None


def tranche_amounts(amount_fen: int, percents) -> list[int]:
    """floor(amount x percent / 100) for each tranche; the last takes the remainder, so they sum exactly."""
    problem = tranche_problem(percents)
    if problem:
        raise ValidationFailed.field("tranches", problem)
    amounts = [amount_fen * percent // 100 for percent in percents[:-1]]
    amounts.append(amount_fen - sum(amounts))
    if min(amounts) <= 0:
        raise ValidationFailed.field("amount_fen", f"{amount_fen} fen is too small to pay every tranche at least 1 fen")
    return amounts


# -- organizations as this service knows them ---------------------------------------------------------
def organization_label(organization: dict | None, organization_id: str) -> str:
    if organization and organization.get("name"):
        return f"{organization['name']} ({organization_id})"
    return organization_id


def grant_refusal(organization: dict | None, organization_id: str) -> str | None:
    """Why this organization may not be given a grant, or None. (abnormal may: its payments are held.)"""
    if organization is None:
        return f"organization {organization_id} is not known to the fund service as a registered organization"
    label = organization_label(organization, organization_id)
    if organization.get("status") == DEREGISTERED:
        return f"organization {label} is deregistered"
    if organization.get("status") != REGISTERED:
        return f"organization {label} is {organization.get('status')}, not registered"
    if organization.get("risk") == RISK_SERIOUS:
        return f"organization {label} is on the serious list (严重违法失信名单)"
    return None


def payment_refusal(organization: dict | None, organization_id: str) -> str | None:
    """Why nothing may be paid to this organization (409), or None. Same reasons as for a grant."""
    return grant_refusal(organization, organization_id)


def payment_held(organization: dict) -> bool:
    return organization.get("risk") == RISK_ABNORMAL


def may_release(organization: dict | None) -> bool:
    return bool(organization) and organization.get("status") == REGISTERED and organization.get("risk") == RISK_NONE


# -- funds --------------------------------------------------------------------------------------------
def open_fund(body: dict, *, actor: str, now: datetime) -> tuple[dict, dict, list[Event]]:
    fund = {
        "_id": new_id("fund"),
        "name": body["name"].strip(),
        "year": body["year"],
        "budget_fen": body["budget_fen"],
        "committed_fen": 0,
        "clawed_back_fen": 0,
        "available_fen": body["budget_fen"],
        "created_at": now,
        "created_by": actor,
        "version": 1,
    }
    entry = transfer(FUND_OPENED, debit=fund_available_account(fund["_id"]), credit=fund_budget_account(fund["_id"]),
                     amount_fen=fund["budget_fen"], fund_id=fund["_id"], actor=actor, now=now)
    event = Event(type="fund.fund.created", subject=fund["_id"],
                  data={"actor": actor, "fund": fund_summary(fund)})
    return fund, entry, [event]


def fund_summary(fund: dict) -> dict:
    return {"id": fund["_id"], "name": fund["name"], "year": fund["year"], "budget_fen": fund["budget_fen"]}


def fund_view(fund: dict, disbursed_fen: int, held_fen: int = 0) -> dict:
    """The fund as the API shows it; `disbursed_fen` is summed over its grants (each kept by its own entries)."""
    return {**fund, "disbursed_fen": disbursed_fen, "held_fen": held_fen}


# -- grants -------------------------------------------------------------------------------------------
def commit_grant(fund: dict, organization: dict | None, body: dict, *, actor: str, now: datetime,
                 source: str = "officer", award: dict | None = None) -> tuple[dict, dict, dict, list[Event]]:
    """A grant that commits `amount_fen` of the fund. Returns (grant, fund changes, entry, events);
    raises Conflict when the organization may not receive it or the fund cannot cover it."""
    organization_id = body["organization_id"]
    refusal = grant_refusal(organization, organization_id)
    if refusal:
        raise Conflict(refusal)
    amount = body["amount_fen"]
    amounts = tranche_amounts(amount, body["tranches"])
    if amount > fund["available_fen"]:
        raise Conflict(f"fund {fund['_id']} has {fund['available_fen']} fen available; the grant needs {amount} fen")
    grant = _new_grant(fund["_id"], organization, body, amounts, actor=actor, now=now, source=source, award=award)
    grant["status"] = GRANT_ACTIVE
    fund_changes = {"committed_fen": fund["committed_fen"] + amount, "available_fen": fund["available_fen"] - amount}
    entry = transfer(GRANT_COMMITTED, debit=grant_committed_account(grant["_id"]),
                     credit=fund_available_account(fund["_id"]), amount_fen=amount, fund_id=fund["_id"],
                     grant_id=grant["_id"], actor=actor, now=now)
    event = Event(type="fund.grant.created", subject=grant["_id"],
                  data={"actor": actor, "grant": grant_summary(grant)})
    return grant, fund_changes, entry, [event]


def reject_grant(fund_id: str | None, organization: dict | None, body: dict, reason: str, *, actor: str,
                 now: datetime, source: str, award: dict | None = None) -> tuple[dict, list[Event]]:
    """A grant recorded as `rejected` (no money moves), for an award the fund cannot honour."""
    grant = _new_grant(fund_id, organization, body, [], actor=actor, now=now, source=source, award=award)
    grant.update(status=GRANT_REJECTED, rejection_reason=reason)
    event = Event(type="fund.grant.rejected", subject=grant["_id"],
                  data={"actor": actor, "grant": grant_summary(grant), "reason": reason})
    return grant, [event]


def _new_grant(fund_id, organization, body, amounts, *, actor, now, source, award) -> dict:
    organization = organization or {}
    grant = {
        "_id": new_id("grant"),
        "fund_id": fund_id,
        "organization_id": body["organization_id"],
        "recipient": {"name": organization.get("name"), "uscc": organization.get("uscc")},
        "title": body["title"].strip(),
        "description": (body.get("description") or "").strip() or None,
        "amount_fen": body["amount_fen"],
        "tranches": list(body["tranches"]),
        "tranche_amounts": amounts,
        "next_tranche": 1,
        "disbursed_fen": 0,
        "held_fen": 0,
        "clawed_back_fen": 0,
        "disbursements": [],
        "clawbacks": [],
        "source": source,
        "award": award,
        "created_at": now,
        "created_by": actor,
        "updated_at": now,
        "version": 1,
    }
    if award:  # only award grants carry the key: the unique index skips documents without it
        grant["award_key"] = award["key"]
    return grant


def grant_summary(grant: dict) -> dict:
    return {
        "id": grant["_id"], "fund_id": grant["fund_id"], "organization_id": grant["organization_id"],
        "title": grant["title"], "amount_fen": grant["amount_fen"], "tranches": grant["tranches"],
        "tranche_amounts": grant["tranche_amounts"], "status": grant["status"], "source": grant["source"],
        "award": grant.get("award"),
    }


def grant_status(grant: dict) -> str:
    if grant["status"] == GRANT_REJECTED:
        return GRANT_REJECTED
    all_requested = grant["next_tranche"] > len(grant["tranche_amounts"])
    return GRANT_COMPLETED if all_requested and grant["held_fen"] == 0 else GRANT_ACTIVE


# -- disbursements ------------------------------------------------------------------------------------
def disburse(grant: dict, organization: dict | None, *, requested_tranche: int | None, actor: str,
             now: datetime) -> tuple[dict, dict, dict | None, list[Event]]:
    """Pay (or hold) the grant's next tranche. Returns (updated grant, disbursement, entry or None, events)."""
    tranche = next_payable_tranche(grant, requested_tranche)
    refusal = payment_refusal(organization, grant["organization_id"])
    if refusal:
        raise Conflict(f"nothing may be paid: {refusal}")
    amount = grant["tranche_amounts"][tranche - 1]
    if grant["disbursed_fen"] + grant["held_fen"] + amount > grant["amount_fen"]:
        raise Conflict(f"tranche {tranche} of {amount} fen would exceed the grant's {grant['amount_fen']} fen")
    disbursement = {
        "id": new_id("disb"),
        "grant_id": grant["_id"],
        "tranche": tranche,
        "amount_fen": amount,
        "requested_at": now,
        "requested_by": actor,
    }
    updated = {**grant, "next_tranche": tranche + 1, "updated_at": now, "version": grant["version"] + 1}
    if payment_held(organization):
        disbursement.update(status=HELD, hold_reason=f"organization {grant['organization_id']} is on the abnormal "
                                                     f"list (活动异常名录); paid when the flag clears")
        updated["held_fen"] = grant["held_fen"] + amount
        updated["disbursements"] = grant["disbursements"] + [disbursement]
        updated["status"] = grant_status(updated)
        return updated, disbursement, None, [disbursement_event("held", updated, disbursement, actor)]
    disbursement.update(status=PAID, paid_at=now)
    updated["disbursed_fen"] = grant["disbursed_fen"] + amount
    updated["disbursements"] = grant["disbursements"] + [disbursement]
    updated["status"] = grant_status(updated)
    entry = payment_entry(updated, disbursement, actor=actor, now=now)
    return updated, disbursement, entry, [disbursement_event("paid", updated, disbursement, actor)]


def next_payable_tranche(grant: dict, requested: int | None) -> int:
    count = len(grant["tranche_amounts"])
    if grant["status"] == GRANT_REJECTED:
        raise Conflict(f"grant {grant['_id']} was rejected ({grant.get('rejection_reason')}); nothing is paid on it")
    held = [d for d in grant["disbursements"] if d["status"] == HELD]
    if held:
        raise Conflict(f"tranche {held[0]['tranche']} of grant {grant['_id']} is held while the organization is on "
                       f"the abnormal list; no further tranche is paid until it is released")
    if requested is not None and requested > count:
        raise ValidationFailed.field("tranche", f"grant {grant['_id']} has {count} tranches")
    if grant["next_tranche"] > count:
        raise Conflict(f"all {count} tranches of grant {grant['_id']} have been disbursed")
    if requested is not None and requested != grant["next_tranche"]:
        raise Conflict(f"tranche {requested} is not the next one; the next tranche is {grant['next_tranche']}")
    return grant["next_tranche"]


def payment_entry(grant: dict, disbursement: dict, *, actor: str, now: datetime, released: bool = False) -> dict:
    return transfer(DISBURSEMENT_PAID, debit=recipient_account(grant["organization_id"]),
                    credit=grant_committed_account(grant["_id"]), amount_fen=disbursement["amount_fen"],
                    fund_id=grant["fund_id"], grant_id=grant["_id"], actor=actor, now=now,
                    ref={"disbursement_id": disbursement["id"], "tranche": disbursement["tranche"],
                         "released": released})


def release_held(grant: dict, *, actor: str, now: datetime) -> tuple[dict, list[dict], list[Event]]:
    """Pay every held disbursement of the grant (its organization's flag has cleared)."""
    updated = {**grant, "disbursements": [dict(d) for d in grant["disbursements"]]}
    entries, events = [], []
    for disbursement in sorted(updated["disbursements"], key=lambda d: d["tranche"]):
        if disbursement["status"] != HELD:
            continue
        disbursement.update(status=PAID, paid_at=now, released_at=now, released_by=actor)
        updated["held_fen"] -= disbursement["amount_fen"]
        updated["disbursed_fen"] += disbursement["amount_fen"]
        entries.append(payment_entry(updated, disbursement, actor=actor, now=now, released=True))
        events.append(disbursement_event("released", updated, disbursement, actor))
    if entries:
        updated.update(status=grant_status(updated), updated_at=now, version=grant["version"] + 1)
    return updated, entries, events


def cancel_held(grant: dict, reason: str, *, actor: str, now: datetime) -> tuple[dict, list[Event]]:
    """Cancel every held disbursement (the organization was deregistered: it is paid nothing).
    The tranche goes back to being the next one, so it is never lost from the grant's count."""
    updated = {**grant, "disbursements": [dict(d) for d in grant["disbursements"]]}
    events = []
    for disbursement in updated["disbursements"]:
        if disbursement["status"] != HELD:
            continue
        disbursement.update(status=CANCELLED, cancelled_at=now, cancel_reason=reason)
        updated["held_fen"] -= disbursement["amount_fen"]
        updated["next_tranche"] = min(updated["next_tranche"], disbursement["tranche"])
        events.append(disbursement_event("cancelled", updated, disbursement, actor, reason=reason))
    if events:
        updated.update(status=grant_status(updated), updated_at=now, version=grant["version"] + 1)
    return updated, events


def disbursement_event(kind: str, grant: dict, disbursement: dict, actor: str, **extra) -> Event:
    return Event(type=f"fund.disbursement.{kind}", subject=grant["_id"], data={
        "actor": actor, "grant_id": grant["_id"], "fund_id": grant["fund_id"],
        "organization_id": grant["organization_id"], "disbursement": _public(disbursement), **extra})


# -- clawbacks ----------------------------------------------------------------------------------------
def claw_back(grant: dict, fund: dict, body: dict, *, actor: str, now: datetime) -> tuple[dict, dict, dict, dict,
                                                                                            list[Event]]:
    """Money the organization returns to the fund. Returns (updated grant, fund changes, clawback, entry, events)."""
    amount = body["amount_fen"]
    paid_net = grant["disbursed_fen"] - grant["clawed_back_fen"]
    if grant["status"] == GRANT_REJECTED:
        raise Conflict(f"grant {grant['_id']} was rejected; nothing was paid that could be clawed back")
    if amount > paid_net:
        raise Conflict(f"a clawback of {amount} fen exceeds the {paid_net} fen paid on grant {grant['_id']} "
                       f"(net of earlier clawbacks)")
    clawback = {"id": new_id("claw"), "grant_id": grant["_id"], "amount_fen": amount, "reason": body["reason"].strip(),
                "recorded_at": now, "recorded_by": actor}
    updated = {**grant, "clawed_back_fen": grant["clawed_back_fen"] + amount,
               "clawbacks": grant.get("clawbacks", []) + [clawback], "updated_at": now,
               "version": grant["version"] + 1}
    fund_changes = {"clawed_back_fen": fund["clawed_back_fen"] + amount,
                    "available_fen": fund["available_fen"] + amount}
    entry = transfer(CLAWBACK_RECORDED, debit=fund_available_account(fund["_id"]),
                     credit=recipient_account(grant["organization_id"]), amount_fen=amount, fund_id=fund["_id"],
                     grant_id=grant["_id"], actor=actor, now=now, ref={"clawback_id": clawback["id"]})
    event = Event(type="fund.clawback.recorded", subject=grant["_id"], data={
        "actor": actor, "grant_id": grant["_id"], "fund_id": fund["_id"], "organization_id": grant["organization_id"],
        "clawback": _public(clawback)})
    return updated, fund_changes, clawback, entry, [event]


# -- awards (evaluation.award.granted) -----------------------------------------------------------------
@dataclass(frozen=True)
class Award:
    key: str
    organization_id: str
    project_id: str
    tier: str
    prize_fen: int
    year: int
    fund_id: str | None
    title: str | None
    actor: str

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> "Award":
        """Read an award.granted event's data; raise ValueError (the message goes to the DLQ) if malformed."""
        prize, year = data.get("prize_fen"), data.get("year")
        if not isinstance(prize, int) or isinstance(prize, bool) or prize <= 0:
            raise ValueError(f"award prize_fen must be a positive integer, not {prize!r}")
        if not isinstance(year, int) or isinstance(year, bool):
            raise ValueError(f"award year must be an integer, not {year!r}")
        for name in ("organization_id", "project_id"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise ValueError(f"award {name} is missing")
        return cls(key=str(data.get("award_id") or data["project_id"]), organization_id=data["organization_id"],
                   project_id=data["project_id"], tier=str(data.get("tier") or ""), prize_fen=prize, year=year,
                   fund_id=data.get("fund_id") or None, title=data.get("title") or data.get("project_title"),
                   actor=str(data.get("actor") or "system"))

    def grant_body(self, tranches) -> dict:
        title = f"{self.year}年度品牌项目奖励" + (f"（{self.tier}）" if self.tier else "")
        description = f"品牌项目 {self.title or self.project_id} 获奖奖金" + (f"，{self.tier}" if self.tier else "")
        return {"organization_id": self.organization_id, "title": title, "description": description,
                "amount_fen": self.prize_fen, "tranches": list(tranches)}

    def as_reference(self) -> dict:
        return {"key": self.key, "project_id": self.project_id, "tier": self.tier, "year": self.year,
                "prize_fen": self.prize_fen, "fund_id": self.fund_id, "awarded_by": self.actor}


def award_fund_refusal(fund: dict | None, award: Award) -> str | None:
    if fund is None:
        if award.fund_id:
            return f"the award names fund {award.fund_id}, which does not exist"
        return f"there is no fund for the award's year {award.year}"
    if fund["available_fen"] < award.prize_fen:
        return (f"fund {fund['_id']} has {fund['available_fen']} fen available; the prize needs "
                f"{award.prize_fen} fen")
    return None


# -- park -----------------------------------------------------------------------------------------------
def new_unit(body: dict, *, actor: str, now: datetime) -> tuple[dict, list[Event]]:
    unit = {"_id": new_id("unit"), "code": body["code"].strip(), "area_m2": body["area_m2"], "created_at": now,
            "created_by": actor, "bookings": 0}
    event = Event(type="fund.park.unit_created", subject=unit["_id"], key=unit["_id"],
                  data={"actor": actor, "unit": {"id": unit["_id"], "code": unit["code"], "area_m2": unit["area_m2"]}})
    return unit, [event]


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year + years, day=28)


def residency_end(residency: dict) -> date:
    """The first day the unit is free again: the early end (graduation, deregistration) or the term's end."""
    return date.fromisoformat(residency.get("ended_on") or residency["end"])


def overlaps(start_a: date, end_a: date, start_b: date, end_b: date) -> bool:
    """Half-open periods [start, end) share at least one day."""
    return start_a < end_b and start_b < end_a


def start_residency(unit: dict, organization: dict | None, body: dict, others_on_unit: list[dict], *, rules: Rules,
                    actor: str, now: datetime) -> tuple[dict, list[Event]]:
    organization_id = body["organization_id"]
    years = body["years"]
    if not rules.park_min_years <= years <= rules.park_max_years:
        raise ValidationFailed.field("years", f"a residency lasts {rules.park_min_years} to {rules.park_max_years} years")
    if organization is None or organization.get("status") != REGISTERED:
        status = "not known to the fund service" if organization is None else organization.get("status")
        raise Conflict(f"only registered organizations may reside in the park; "
                       f"{organization_label(organization, organization_id)} is {status}")
    start = body["start"]
    end = add_years(start, years)
    for other in others_on_unit:
        if overlaps(start, end, date.fromisoformat(other["start"]), residency_end(other)):
            raise Conflict(f"unit {unit['code']} is taken by residency {other['_id']} of "
                           f"{other['organization_id']} from {other['start']} to {residency_end(other).isoformat()}; "
                           f"a unit holds one resident at a time")
    residency = {
        "_id": new_id("res"), "unit_id": unit["_id"], "unit_code": unit["code"], "organization_id": organization_id,
        "organization_name": organization.get("name"), "start": start.isoformat(), "end": end.isoformat(),
        "years": years, "status": RESIDENCY_ACTIVE, "ended_on": None, "end_reason": None,
        "created_at": now, "created_by": actor, "version": 1,
    }
    return residency, [residency_event("residency_started", residency, actor)]


def end_residency(residency: dict, *, today: date, reason: str, actor: str, now: datetime) -> tuple[dict, list[Event]]:
    """End a residency early: graduation (出壳) or deregistration. The unit is free from `today` (or from the
    start, for a residency that had not begun)."""
    if residency["status"] != RESIDENCY_ACTIVE:
        raise Conflict(f"residency {residency['_id']} already ended ({residency['status']} on {residency['ended_on']})")
    start = date.fromisoformat(residency["start"])
    ended_on = min(max(today, start), date.fromisoformat(residency["end"]))
    status = RESIDENCY_GRADUATED if reason == "graduated" else RESIDENCY_ENDED
    updated = {**residency, "status": status, "ended_on": ended_on.isoformat(), "end_reason": reason,
               "ended_at": now, "ended_by": actor, "version": residency["version"] + 1}
    return updated, [residency_event("residency_ended", updated, actor, reason=reason)]


def residency_event(kind: str, residency: dict, actor: str, **extra) -> Event:
    return Event(type=f"fund.park.{kind}", subject=residency["_id"], key=residency["unit_id"], data={
        "actor": actor, "residency": {
            "id": residency["_id"], "unit_id": residency["unit_id"], "unit": residency["unit_code"],
            "organization_id": residency["organization_id"], "start": residency["start"], "end": residency["end"],
            "status": residency["status"], "ended_on": residency["ended_on"]}, **extra})


def occupies(residency: dict, day: date) -> bool:
    return date.fromisoformat(residency["start"]) <= day < residency_end(residency)


def occupancy(units: list[dict], residencies: list[dict], *, today: date, rules: Rules) -> dict:
    """Units, occupied and free as of `today`, and the residents whose term ends within the notice period."""
    current = {r["unit_id"]: r for r in residencies if occupies(r, today)}
    horizon = today + timedelta(days=rules.park_ending_soon_days)
    ending = sorted((r for r in current.values() if residency_end(r) <= horizon), key=residency_end)
    occupied = sum(1 for unit in units if unit["_id"] in current)
    return {
        "as_of": today.isoformat(),
        "units": len(units),
        "occupied": occupied,
        "free": len(units) - occupied,
        "ending_within_days": rules.park_ending_soon_days,
        "ending_soon": [{
            "residency_id": r["_id"], "organization_id": r["organization_id"],
            "organization_name": r.get("organization_name"), "unit": r["unit_code"], "unit_id": r["unit_id"],
            "end": residency_end(r).isoformat(), "days_left": (residency_end(r) - today).days,
        } for r in ending],
    }


# -- open data (360Giving) ------------------------------------------------------------------------------
def org_id_of(uscc: str | None, organization_id: str) -> str:
    """The org-id.guide identifier: `CN-USCI-<uscc>`; an organization without one keeps the service's id."""
    return f"CN-USCI-{uscc}" if uscc else f"socorg-{organization_id}"


def giving_export(fund: dict, grants: list[dict], organizations: dict[str, dict], *, rules: Rules,
                  award_date_of, now: datetime) -> dict:
    """A 360Giving data package of the fund's committed grants (rejected ones never held money).
    Amounts are yuan; `amountDisbursed` is what the recipient holds (paid, net of clawbacks)."""
    records = []
    for grant in grants:
        if grant["status"] == GRANT_REJECTED:
            continue
        known = organizations.get(grant["organization_id"]) or {}
        name = known.get("name") or grant["recipient"].get("name") or grant["organization_id"]
        uscc = known.get("uscc") or grant["recipient"].get("uscc")
        records.append({
            "id": f"{rules.grant_id_prefix}-{grant['_id']}",
            "title": grant["title"],
            "description": grant.get("description") or grant["title"],
            "currency": CURRENCY,
            "amountAwarded": yuan(grant["amount_fen"]),
            "amountDisbursed": yuan(grant["disbursed_fen"] - grant["clawed_back_fen"]),
            "awardDate": award_date_of(grant["created_at"]).isoformat(),
            "recipientOrganization": [{"id": org_id_of(uscc, grant["organization_id"]), "name": name}],
            "fundingOrganization": [{"id": rules.funder_org_id, "name": rules.funder_name}],
            "grantProgramme": [{"code": fund["_id"], "title": fund["name"]}],
            "dateModified": _iso(grant.get("updated_at") or grant["created_at"]),
        })
    return {
        "title": f"{fund['name']} ({fund['year']})",
        "issued": _iso(now),
        "publisher": {"name": rules.funder_name, "identifier": rules.funder_org_id},
        "grants": records,
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _public(record: dict) -> dict:
    """A record as events carry it (plain JSON: times as ISO strings)."""
    return {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in record.items()}
