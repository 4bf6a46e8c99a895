"""Registry rules, pure: no Flask, no pymongo. Functions take and return plain data and Events.

Every rule of ../shared/DOMAIN.md (Identifiers, Registration, Terms, Risk lists) lives here; the store
only loads documents, calls these functions inside a transaction and writes what they return.
An organization document carries everything its rules need: its flags (the risk-list history), the years
it reported, and the `due_*` markers that let the sweep find the few organizations a date affects through
indexes instead of reading them all.
"""

from __future__ import annotations

import calendar
import copy
import re
import secrets
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from services.registry import identifiers
from shared.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from shared.events import SYSTEM_ACTOR, Event

SUBMITTED, REGISTERED, REJECTED, DEREGISTERED = "submitted", "registered", "rejected", "deregistered"
STATUSES = (SUBMITTED, REGISTERED, REJECTED, DEREGISTERED)
PUBLIC_STATUSES = (REGISTERED, DEREGISTERED)  # the public register shows only these
ORGANIZATION_TYPES = ("social_group", "social_service_agency", "foundation")
SOCIAL_GROUP, SOCIAL_SERVICE_AGENCY, FOUNDATION = ORGANIZATION_TYPES

NO_RISK, ABNORMAL, SERIOUS = "none", "abnormal", "serious"
RISK_LEVELS = (NO_RISK, ABNORMAL, SERIOUS)  # in order of gravity
RISK_LISTS = (ABNORMAL, SERIOUS)
BY_OFFICER, BY_SWEEP = "officer", "sweep"

# Reasons the sweep writes (DOMAIN.md, Risk lists), and why flags are cleared automatically.
TERM_OVERDUE = "term_overdue"
REPORT_MISSING = "annual_report_missing"
ABNORMAL_TWO_YEARS = "abnormal_two_years"
CLEARED_BY_RENEWAL = "term_renewed"
CLEARED_BY_REPORT = "annual_report_filed"
CLEARED_BY_EXPIRY = "expired"

CHAIR = "chair"
COUNCIL_ROLES = ("chair", "vice_chair", "secretary_general", "member", "supervisor")
FORM_WORDS = {
    SOCIAL_GROUP: ("协会", "学会", "研究会", "促进会", "联合会", "商会"),
    SOCIAL_SERVICE_AGENCY: ("中心", "服务社", "院", "社", "所", "站"),
    FOUNDATION: ("基金会",),
}
RENEWAL_SUBMITTED, RENEWAL_APPROVED, RENEWAL_REJECTED = "submitted", "approved", "rejected"
RENEWAL_STATUSES = (RENEWAL_SUBMITTED, RENEWAL_APPROVED, RENEWAL_REJECTED)


@dataclass(frozen=True)
class Rules:
    """Thresholds that districts set (DOMAIN.md); the defaults are Pudong's. Money in fen."""

    region_prefix: str = "上海市浦东新区"
    area_code: str = "310115"
    name_min_length: int = 6
    name_max_length: int = 50
    forbidden_name_words: tuple[str, ...] = ("中国", "全国", "中华")
    min_individual_members: int = 50
    min_unit_members: int = 30
    min_total_members: int = 50
    min_funds_fen: dict = field(default_factory=lambda: {
        SOCIAL_GROUP: 3_000_000, SOCIAL_SERVICE_AGENCY: 10_000_000, FOUNDATION: 200_000_000})
    council_min: int = 3
    foundation_council_min: int = 5
    council_max: int = 25
    term_years_max: int = 5
    renewal_window_months: int = 6
    report_deadline: tuple[int, int] = (5, 31)  # (month, day) of year Y+1
    escalation_years: int = 2
    officer_flag_expiry_months: int = 6
    serious_clear_years: int = 2

    @classmethod
    def from_settings(cls, settings) -> "Rules":
        month, day = (int(part) for part in settings.registry_annual_report_deadline.split("-"))
        return cls(
            region_prefix=settings.region_prefix,
            area_code=settings.area_code,
            name_min_length=settings.registry_name_min_length,
            name_max_length=settings.registry_name_max_length,
            forbidden_name_words=tuple(w.strip() for w in settings.registry_forbidden_name_words.split(",") if w.strip()),
            min_individual_members=settings.registry_min_individual_members,
            min_unit_members=settings.registry_min_unit_members,
            min_total_members=settings.registry_min_total_members,
            min_funds_fen={
                SOCIAL_GROUP: settings.registry_min_funds_social_group_fen,
                SOCIAL_SERVICE_AGENCY: settings.registry_min_funds_social_service_agency_fen,
                FOUNDATION: settings.registry_min_funds_foundation_fen,
            },
            council_min=settings.registry_council_min,
            foundation_council_min=settings.registry_foundation_council_min,
            council_max=settings.registry_council_max,
            term_years_max=settings.registry_term_years_max,
            renewal_window_months=settings.registry_renewal_window_months,
            report_deadline=(month, day),
            escalation_years=settings.registry_escalation_years,
            officer_flag_expiry_months=settings.registry_officer_flag_expiry_months,
            serious_clear_years=settings.registry_serious_clear_years,
        )

    @property
    def region_key(self) -> str:
        return name_key(self.region_prefix)


# -- identifiers of our own ------------------------------------------------------------------------------
_BASE32 = "0123456789abcdefghijklmnopqrstuv"  # ascending in ASCII, so fixed-width strings sort by value


def new_organization_id(now_ms: int | None = None) -> str:
    """`org_` + 9 base-32 digits of the creation time in ms + 8 random ones: ids sort by creation time,
    which is the order lists are shown in (newest first)."""
    stamp = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    return "org_" + _base32(stamp, 9) + _base32(secrets.randbits(40), 8)


def _base32(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 32)
        digits.append(_BASE32[rest])
    return "".join(reversed(digits))


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


# -- names ---------------------------------------------------------------------------------------------
def name_key(name: str) -> str:
    """The form of a name that uniqueness and search are judged on: full-width folded to half-width
    (NFKC), spaces removed, lower case."""
    return unicodedata.normalize("NFKC", name).strip().replace(" ", "").replace("\u3000", "").lower()


def name_problems(name: str, org_type: str, rules: Rules) -> list[str]:
    """Every naming rule the name breaks, in words (DOMAIN.md, Registration)."""
    trimmed = name.strip()
    folded = unicodedata.normalize("NFKC", trimmed)
    problems = []
    if not rules.name_min_length <= len(trimmed) <= rules.name_max_length:
        problems.append(f"a name has {rules.name_min_length} to {rules.name_max_length} characters "
                        f"(this one has {len(trimmed)})")
    if not folded.startswith(unicodedata.normalize("NFKC", rules.region_prefix)):
        problems.append(f"a name begins with the region prefix {rules.region_prefix}")
    # Invisible characters (zero-width space, joiners, soft hyphen: Unicode's "format" characters) and control
    # characters would make a second, different-looking-the-same name, and hide a forbidden word (中\u200b国).
    hidden = sorted({f"U+{ord(char):04X}" for char in trimmed if unicodedata.category(char) in ("Cc", "Cf")})
    if hidden:
        problems.append(f"a name must not contain invisible or control characters ({', '.join(hidden)})")
    for word in rules.forbidden_name_words:
        if word in folded:
            problems.append(f"a name must not contain {word}")
    form_words = FORM_WORDS.get(org_type, ())
    if form_words and not folded.endswith(form_words):
        problems.append(f"a {org_type} name ends with one of: {' '.join(form_words)}")
    return problems


# -- applications --------------------------------------------------------------------------------------
PHONE = re.compile(r"^(\+?86[- ]?)?(1[3-9]\d{9}|0\d{2,3}-?\d{7,8}(-\d{1,6})?)$", re.ASCII)  # \d: 0-9 only


def application_problems(application: dict, rules: Rules) -> dict[str, list[str]]:
    """Every registration rule the application breaks, by field (an empty dict when it is valid).

    Each rule is judged when the fields it reads are there, so this also judges the valid part of an application
    whose other fields are malformed (ApplicationSchema): one answer then names every problem. A complete
    application (domain.submit) has them all."""
    problems: dict[str, list[str]] = {}

    def add(field_name: str, message: str) -> None:
        problems.setdefault(field_name, []).append(message)

    org_type = application.get("type")
    known_type = org_type in rules.min_funds_fen
    if "name" in application:
        for message in name_problems(application["name"], org_type, rules):
            add("name", message)
    id_number = (application.get("legal_representative") or {}).get("id_number")
    if id_number is not None and (problem := id_number_problem(id_number)):
        add("legal_representative.id_number", problem)
    phone = (application.get("contact") or {}).get("phone")
    if phone is not None and not PHONE.match(phone.strip()):
        add("contact.phone", "a mainland mobile (11 digits, 1[3-9]…) or a landline with area code (0xx-xxxxxxxx)")
    if known_type and "registered_funds_fen" in application:
        minimum = rules.min_funds_fen[org_type]
        if application["registered_funds_fen"] < minimum:
            add("registered_funds_fen", f"a {org_type} registers at least {minimum} fen ({minimum // 100} CNY)")
    if org_type == SOCIAL_GROUP:
        members = application.get("members")
        if members is None:
            add("members", "a social_group states its members {individuals, units}")
        elif not members_enough(members, rules):
            add("members", f"a social_group has at least {rules.min_individual_members} individual members, "
                           f"or at least {rules.min_unit_members} unit members, or at least "
                           f"{rules.min_total_members} together")
    if known_type and "council" in application:
        for field_name, messages in council_problems(application["council"], org_type, rules).items():
            problems.setdefault(field_name, []).extend(messages)
    if "term_years" in application:
        for message in term_years_problems(application["term_years"], rules):
            add("term_years", message)
    return problems


def id_number_problem(id_number: str) -> str | None:
    """What is wrong with a resident ID number (GB 11643), or None."""
    if not id_number.isascii():
        return "digits 0-9 and X only, half-width (not full-width)"
    if not identifiers.is_valid_id_number(id_number):
        return "not a valid resident ID number (GB 11643 check character)"
    if not identifiers.id_number_birth_date(id_number):
        return "the birth date in the ID number is not a real date"
    return None


def members_enough(members: dict, rules: Rules) -> bool:
    individuals, units = members.get("individuals", 0), members.get("units", 0)
    return (individuals >= rules.min_individual_members or units >= rules.min_unit_members
            or individuals + units >= rules.min_total_members)


def council_problems(council: list[dict], org_type: str, rules: Rules) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    smallest = rules.foundation_council_min if org_type == FOUNDATION else rules.council_min
    if not smallest <= len(council) <= rules.council_max:
        problems.setdefault("council", []).append(
            f"a {org_type} council has {smallest} to {rules.council_max} people (this one has {len(council)})")
    chairs = sum(1 for member in council if member["role"] == CHAIR)
    if chairs != 1:
        problems.setdefault("council", []).append(f"a council has exactly one chair (this one has {chairs})")
    return problems


def term_years_problems(term_years: int, rules: Rules) -> list[str]:
    if not 1 <= term_years <= rules.term_years_max:
        return [f"a term lasts 1 to {rules.term_years_max} years"]
    return []


def raise_problems(problems: dict[str, list[str]]) -> None:
    if problems:
        raise ValidationFailed.of(problems)


# -- the snapshot every event carries ----------------------------------------------------------------
def snapshot(organization: dict) -> dict:
    """The organization as every registry event carries it, for the other services' read models."""
    return {
        "id": organization["_id"],
        "name": organization["name"],
        "uscc": organization.get("uscc"),
        "type": organization["type"],
        "status": organization["status"],
        "risk": organization.get("risk", NO_RISK),
        "version": organization["version"],
    }


def organization_event(kind: str, organization: dict, actor: str, **extra) -> Event:
    return Event(
        type=f"registry.organization.{kind}",
        subject=organization["_id"],
        data={"actor": actor, "organization": snapshot(organization), **extra},
        time=organization["updated_at"],  # the change's time, whenever the outbox records the event
    )


def changed(organization: dict, now: datetime, **fields) -> dict:
    """A new version of the organization with `fields` set (the input is left as it was)."""
    return {**organization, **fields, "updated_at": now, "version": organization["version"] + 1}


def check_version(organization: dict, expected_version: int | None) -> None:
    """`If-Match`: refuse to act on a version the caller has not seen."""
    if expected_version is not None and expected_version != organization["version"]:
        raise PreconditionFailed(f"the organization is at version {organization['version']}, "
                                 f"not {expected_version}; reload it and decide again")


# -- lifecycle -----------------------------------------------------------------------------------------
def submit(application: dict, *, applicant: str, now: datetime, rules: Rules) -> tuple[dict, list[Event]]:
    raise_problems(application_problems(application, rules))
    name = application["name"].strip()
    organization = {
        "_id": new_organization_id(int(now.timestamp() * 1000)),
        **application,
        "name": name,
        "name_key": name_key(name),
        # Held while submitted or registered: unique among organizations (a unique index in the store).
        "name_claim": name_key(name),
        "status": SUBMITTED,
        "risk": NO_RISK,
        "flags": [],
        "reported_years": [],
        "applicant": applicant,
        "submitted_at": now,
        "updated_at": now,
        "version": 1,
    }
    if organization["type"] != SOCIAL_GROUP:
        organization.pop("members", None)
    return organization, [organization_event("submitted", organization, applicant)]


def require_status(organization: dict, action: str, *allowed: str) -> None:
    if organization["status"] not in allowed:
        raise Conflict(f"only a {' or '.join(allowed)} organization can be {action}; "
                       f"this one is {organization['status']}")


def approve(organization: dict, *, uscc: str, today: date, now: datetime, actor: str) -> tuple[dict, list[Event]]:
    require_status(organization, "approved", SUBMITTED)
    term = term_from(today, organization["term_years"])
    approved = changed(organization, now, status=REGISTERED, uscc=uscc, registered_at=now, registered_on=today.isoformat(),
                       term=term, approved_by=actor, reports_checked_through=today.year)
    approved = with_markers(approved)
    return approved, [organization_event("registered", approved, actor)]


def reject(organization: dict, *, reason: str, now: datetime, actor: str) -> tuple[dict, list[Event]]:
    require_status(organization, "rejected", SUBMITTED)
    rejected = released(changed(organization, now, status=REJECTED, rejected_at=now, rejected_by=actor,
                                rejection_reason=reason))
    return rejected, [organization_event("rejected", rejected, actor, reason=reason)]


def deregister(organization: dict, *, reason: str, today: date, now: datetime,
               actor: str) -> tuple[dict, list[Event]]:
    require_status(organization, "deregistered", REGISTERED)
    ended = changed(organization, now, status=DEREGISTERED, deregistered_at=now, deregistered_on=today.isoformat(),
                    deregistered_by=actor, deregistration_reason=reason)
    ended = with_markers(released(ended))
    return ended, [organization_event("deregistered", ended, actor, reason=reason)]


def released(organization: dict) -> dict:
    """A rejected or deregistered organization no longer holds its name: another may apply with it."""
    return {key: value for key, value in organization.items() if key != "name_claim"}


def term_from(start: date, years: int) -> dict:
    return {"start": start.isoformat(), "end": add_years(start, years).isoformat()}


# -- terms (换届) ----------------------------------------------------------------------------------------
def file_renewal(organization: dict, body: dict, *, today: date, now: datetime, actor: str,
                 rules: Rules) -> dict:
    """A term renewal as filed by the organization; the organization itself changes on approval."""
    require_status(organization, "renewed", REGISTERED)
    problems = council_problems(body["council"], organization["type"], rules)
    for message in term_years_problems(body["term_years"], rules):
        problems.setdefault("term_years", []).append(message)
    election = body["election_date"]
    if election > today:
        problems.setdefault("election_date", []).append("the election has to have taken place (not after today)")
    elif election < date.fromisoformat(organization["term"]["start"]):
        problems.setdefault("election_date", []).append("the election cannot be before the current term began")
    raise_problems(problems)
    term_end = date.fromisoformat(organization["term"]["end"])
    opens = add_months(term_end, -rules.renewal_window_months)
    if today < opens:
        raise Conflict(f"a renewal may be filed from {opens.isoformat()}, {rules.renewal_window_months} months "
                       f"before the term ends on {term_end.isoformat()}")
    return {
        "_id": new_id("ren"),
        "organization_id": organization["_id"],
        "election_date": election.isoformat(),
        "council": body["council"],
        "term_years": body["term_years"],
        "status": RENEWAL_SUBMITTED,
        "filed_by": actor,
        "filed_at": now,
    }


def approve_renewal(organization: dict, renewal: dict, *, today: date, now: datetime,
                    actor: str) -> tuple[dict, dict, list[Event]]:
    require_status(organization, "renewed", REGISTERED)
    if renewal["status"] != RENEWAL_SUBMITTED:
        raise Conflict(f"only a submitted renewal can be approved; this one is {renewal['status']}")
    term = term_from(date.fromisoformat(renewal["election_date"]), renewal["term_years"])
    flags, cleared = clear_flags(organization["flags"], lambda f: f["reason"] == TERM_OVERDUE,
                                 reason=CLEARED_BY_RENEWAL, today=today, now=now, actor=actor)
    renewed = with_markers(changed(organization, now, term=term, term_years=renewal["term_years"],
                                   council=renewal["council"], flags=flags))
    approved = {**renewal, "status": RENEWAL_APPROVED, "approved_by": actor, "approved_at": now, "term": term}
    events = [organization_event("term_renewed", renewed, actor, renewal=renewal_view(approved))]
    events += [organization_event("risk_cleared", renewed, actor, flag=flag_view(flag)) for flag in cleared]
    return renewed, approved, events


def reject_renewal(organization: dict, renewal: dict, *, reason: str, now: datetime,
                   actor: str) -> tuple[dict, list[Event]]:
    """The organization itself does not change; the event records the officer's decision (the audit trail is
    read from the outbox) with the organization's unchanged snapshot, as every registry event carries it."""
    if renewal["status"] != RENEWAL_SUBMITTED:
        raise Conflict(f"only a submitted renewal can be rejected; this one is {renewal['status']}")
    rejected = {**renewal, "status": RENEWAL_REJECTED, "rejected_by": actor, "rejected_at": now,
                "rejection_reason": reason}
    event = Event(type="registry.organization.renewal_rejected", subject=organization["_id"],
                  data={"actor": actor, "organization": snapshot(organization),
                        "renewal": {"id": renewal["_id"], "election_date": renewal["election_date"]}, "reason": reason},
                  time=now)
    return rejected, [event]


def renewal_view(renewal: dict) -> dict:
    return {"id": renewal["_id"], "election_date": renewal["election_date"], "term_years": renewal["term_years"],
            "term": renewal.get("term")}


# -- annual reports ------------------------------------------------------------------------------------
def file_annual_report(organization: dict, body: dict, *, today: date, now: datetime,
                       actor: str) -> tuple[dict, dict, list[Event]]:
    require_status(organization, "reporting", REGISTERED)
    year = body["year"]
    registered_year = date.fromisoformat(organization["registered_on"]).year
    if not registered_year <= year < today.year:
        raise_problems({"year": [f"a report covers a finished year since registration "
                                 f"({registered_year} to {today.year - 1})"]})
    if year in organization.get("reported_years", []):
        raise Conflict(f"the annual report for {year} has already been filed")
    report = {
        "_id": f"{organization['_id']}:{year}",
        "organization_id": organization["_id"],
        "year": year,
        "income_fen": body["income_fen"],
        "expenditure_fen": body["expenditure_fen"],
        "net_assets_fen": body["net_assets_fen"],
        "filed_by": actor,
        "filed_at": now,
    }
    obligation = report_obligation(year)
    flags, cleared = clear_flags(organization["flags"], lambda f: f.get("obligation") == obligation,
                                 reason=CLEARED_BY_REPORT, today=today, now=now, actor=actor)
    reported = with_markers(changed(organization, now, flags=flags,
                                    reported_years=sorted({*organization.get("reported_years", []), year})))
    events = [organization_event("annual_report_filed", reported, actor, report=report_view(report))]
    events += [organization_event("risk_cleared", reported, actor, flag=flag_view(flag)) for flag in cleared]
    return reported, report, events


def report_view(report: dict) -> dict:
    return {name: report[name] for name in ("year", "income_fen", "expenditure_fen", "net_assets_fen")}


# -- risk flags ----------------------------------------------------------------------------------------
def new_flag(risk_list: str, reason: str, *, raised_on: date, now: datetime, actor: str, origin: str,
             obligation: str | None = None, escalated_from: str | None = None) -> dict:
    return {
        "id": new_id("flag"),
        "list": risk_list,
        "reason": reason,
        "raised_on": raised_on.isoformat(),
        "raised_by": actor,
        "raised_at": now,
        "origin": origin,
        "obligation": obligation,
        "escalated_from": escalated_from,
        "escalated_to": None,
        "active": True,
        "cleared_on": None,
        "cleared_by": None,
        "clear_reason": None,
    }


def flag_view(flag: dict) -> dict:
    """The flag as events carry it."""
    view = {name: flag[name] for name in ("id", "list", "reason", "raised_on", "active", "origin")}
    if not flag["active"]:
        view.update(cleared_on=flag["cleared_on"], clear_reason=flag["clear_reason"])
    return view


def raise_flag(organization: dict, *, risk_list: str, reason: str, today: date, now: datetime,
               actor: str) -> tuple[dict, dict, list[Event]]:
    require_status(organization, "flagged", REGISTERED)
    flag = new_flag(risk_list, reason, raised_on=today, now=now, actor=actor, origin=BY_OFFICER)
    flagged = with_markers(changed(organization, now, flags=[*organization["flags"], flag]))
    return flagged, flag, [organization_event("risk_flagged", flagged, actor, flag=flag_view(flag))]


def clear_flag(organization: dict, flag_id: str, *, reason: str, today: date, now: datetime, actor: str,
               rules: Rules) -> tuple[dict, dict, list[Event]]:
    flag = find_flag(organization, flag_id)
    if not flag["active"]:
        raise Conflict(f"the flag {flag_id} was already cleared on {flag['cleared_on']}")
    if flag["list"] == SERIOUS:
        earliest = add_years(date.fromisoformat(flag["raised_on"]), rules.serious_clear_years)
        if today < earliest:
            raise Conflict(f"a serious flag can be cleared only {rules.serious_clear_years} years after it was "
                           f"raised, from {earliest.isoformat()}")
    flags, cleared = clear_flags(organization["flags"], lambda f: f["id"] == flag_id, reason=reason, today=today,
                                 now=now, actor=actor)
    updated = with_markers(changed(organization, now, flags=flags))
    return updated, cleared[0], [organization_event("risk_cleared", updated, actor, flag=flag_view(cleared[0]))]


def find_flag(organization: dict, flag_id: str) -> dict:
    for flag in organization.get("flags", []):
        if flag["id"] == flag_id:
            return flag
    raise NotFound(f"no risk flag {flag_id} on organization {organization['_id']}")


def clear_flags(flags: list[dict], which, *, reason: str, today: date, now: datetime,
                actor: str) -> tuple[list[dict], list[dict]]:
    """Clear the active flags `which(flag)` selects; return (all flags, the ones cleared now)."""
    result, cleared = [], []
    for flag in flags:
        if flag["active"] and which(flag):
            flag = {**flag, "active": False, "cleared_on": today.isoformat(), "cleared_by": actor,
                    "cleared_at": now, "clear_reason": reason}
            cleared.append(flag)
        result.append(flag)
    return result, cleared


def risk_of(flags: list[dict]) -> str:
    """The worse list among the active flags (DOMAIN.md: `abnormal` or `serious`), else `none`."""
    active = {flag["list"] for flag in flags if flag["active"]}
    if SERIOUS in active:
        return SERIOUS
    return ABNORMAL if ABNORMAL in active else NO_RISK


def active_flags(organization: dict) -> list[dict]:
    return [flag for flag in organization.get("flags", []) if flag["active"]]


# -- the sweep (DOMAIN.md, Risk lists 1-4) --------------------------------------------------------------
def term_obligation(term_end: str) -> str:
    return f"{TERM_OVERDUE}:{term_end}"


def report_obligation(year: int) -> str:
    return f"{REPORT_MISSING}:{year}"


def last_report_year_due(as_of: date, rules: Rules) -> int:
    """The latest year Y whose report deadline (31 May of Y+1) lies before `as_of`."""
    month, day = rules.report_deadline
    deadline_this_year = _clamped_date(as_of.year, month, day)
    return as_of.year - 1 if as_of > deadline_this_year else as_of.year - 2


@dataclass
class SweepOutcome:
    organization: dict | None  # the new version, or None when nothing changed
    flagged: list[dict]
    cleared: list[dict]
    events: list[Event]


def sweep(organization: dict, *, as_of: date, now: datetime, rules: Rules) -> SweepOutcome:
    """Apply the automatic rules as of `as_of` to one organization, idempotently: an obligation that was
    flagged once (whatever happened to that flag since) is never flagged again."""
    if organization["status"] != REGISTERED:
        return SweepOutcome(None, [], [], [])
    flags = copy.deepcopy(organization["flags"])
    flagged: list[dict] = []
    raised_on = as_of

    # 4. An officer's abnormal flag (no obligation to fulfil) expires after some months.
    flags, expired = clear_flags(
        flags, lambda f: f["list"] == ABNORMAL and f["origin"] == BY_OFFICER
        and as_of >= add_months(date.fromisoformat(f["raised_on"]), rules.officer_flag_expiry_months),
        reason=CLEARED_BY_EXPIRY, today=as_of, now=now, actor=SYSTEM_ACTOR)
    obligations = {flag.get("obligation") for flag in flags}

    # 1. The term ended before as_of and no renewal was approved (an approval moves the term end).
    term_end = organization["term"]["end"]
    if term_end < as_of.isoformat() and term_obligation(term_end) not in obligations:
        flagged.append(new_flag(ABNORMAL, TERM_OVERDUE, raised_on=raised_on, now=now, actor=SYSTEM_ACTOR,
                                origin=BY_SWEEP, obligation=term_obligation(term_end)))

    # 2. A year the organization existed all of, whose report deadline has passed, without a report.
    checked_through = organization.get("reports_checked_through",
                                       date.fromisoformat(organization["registered_on"]).year)
    due_through = last_report_year_due(as_of, rules)
    for year in range(checked_through + 1, due_through + 1):
        if year not in organization.get("reported_years", []) and report_obligation(year) not in obligations:
            flagged.append(new_flag(ABNORMAL, f"{REPORT_MISSING}:{year}", raised_on=raised_on, now=now,
                                    actor=SYSTEM_ACTOR, origin=BY_SWEEP, obligation=report_obligation(year)))

    # 3. An abnormal flag whose obligation is still unfulfilled after two years puts the organization on
    #    the serious list (once per flag).
    for flag in flags:
        if (flag["active"] and flag["list"] == ABNORMAL and flag["origin"] == BY_SWEEP and not flag["escalated_to"]
                and as_of >= add_years(date.fromisoformat(flag["raised_on"]), rules.escalation_years)):
            serious = new_flag(SERIOUS, ABNORMAL_TWO_YEARS, raised_on=raised_on, now=now, actor=SYSTEM_ACTOR,
                               origin=BY_SWEEP, escalated_from=flag["id"])
            flag["escalated_to"] = serious["id"]
            flagged.append(serious)

    new_checked_through = max(checked_through, due_through)
    if not flagged and not expired:
        if new_checked_through == checked_through:
            return SweepOutcome(None, [], [], [])
        # Only the bookkeeping moved: no event, no new version for the other services.
        return SweepOutcome({**organization, "reports_checked_through": new_checked_through}, [], [], [])
    updated = with_markers(changed(organization, now, flags=[*flags, *flagged],
                                   reports_checked_through=new_checked_through))
    events = [organization_event("risk_flagged", updated, SYSTEM_ACTOR, flag=flag_view(f)) for f in flagged]
    events += [organization_event("risk_cleared", updated, SYSTEM_ACTOR, flag=flag_view(f)) for f in expired]
    return SweepOutcome(updated, flagged, expired, events)


MARKERS = ("due_term_end", "due_officer_flag_raised", "due_escalation_raised")


def with_markers(organization: dict) -> dict:
    """Recompute `risk` and the sweep markers from the organization's state.

    The markers are indexed, so a sweep as of D reads only the organizations the date can affect:
    `due_term_end < D` (rule 1), `reports_checked_through` behind the last year due (rule 2),
    `due_escalation_raised <= D - 2 years` (rule 3) and `due_officer_flag_raised <= D - 6 months` (rule 4).
    They hold dates, not deadlines, so a district that changes a threshold needs no migration.
    Organizations that are not registered carry none of them.
    """
    result = {key: value for key, value in organization.items() if key not in MARKERS}
    result["risk"] = risk_of(result.get("flags", []))
    if result["status"] != REGISTERED:
        result.pop("reports_checked_through", None)
        return result
    flags = result["flags"]
    if term_obligation(result["term"]["end"]) not in {flag.get("obligation") for flag in flags}:
        result["due_term_end"] = result["term"]["end"]
    officer = [f["raised_on"] for f in flags if f["active"] and f["list"] == ABNORMAL and f["origin"] == BY_OFFICER]
    if officer:
        result["due_officer_flag_raised"] = min(officer)
    unfulfilled = [f["raised_on"] for f in flags
                   if f["active"] and f["list"] == ABNORMAL and f["origin"] == BY_SWEEP and not f["escalated_to"]]
    if unfulfilled:
        result["due_escalation_raised"] = min(unfulfilled)
    return result


def sweep_windows(as_of: date, rules: Rules) -> dict:
    """The marker bounds that select every organization a sweep as of `as_of` may change.

    Going back by months or years clamps at month ends (31 August + 6 months is 28 February), so the
    raised-on bounds reach a few days further than exact; the sweep itself decides exactly.
    """
    slack = timedelta(days=MONTH_END_SLACK_DAYS)
    return {
        "term_ended_before": as_of.isoformat(),
        "reports_due_through": last_report_year_due(as_of, rules),
        "escalation_raised_by": (add_years(as_of, -rules.escalation_years) + slack).isoformat(),
        "officer_flag_raised_by": (add_months(as_of, -rules.officer_flag_expiry_months) + slack).isoformat(),
    }


MONTH_END_SLACK_DAYS = 4


# -- dates ---------------------------------------------------------------------------------------------
def add_years(day: date, years: int) -> date:
    return _clamped_date(day.year + years, day.month, day.day)


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + (day.month - 1) + months
    return _clamped_date(index // 12, index % 12 + 1, day.day)


def _clamped_date(year: int, month: int, day: int) -> date:
    """The date, or the last day of that month when it is shorter (29 February in a common year)."""
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))
