"""Registry rules, pure: no Flask, no pymongo. Functions take and return plain data and Events.

Foundation slice: apply and approve with minimal checks; the full DOMAIN.md rules come with the
registry issue.
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from shared.errors import Conflict
from shared.events import Event

SUBMITTED, REGISTERED, REJECTED, DEREGISTERED = "submitted", "registered", "rejected", "deregistered"
NO_RISK = "none"
ORGANIZATION_TYPES = ("social_group", "social_service_agency", "foundation")


@dataclass(frozen=True)
class Rules:
    """Thresholds that districts set (DOMAIN.md); defaults are Pudong's."""

    region_prefix: str = "上海市浦东新区"
    area_code: str = "310115"


def new_organization_id() -> str:
    return "org_" + uuid.uuid4().hex[:20]


def name_key(name: str) -> str:
    """The form of a name that uniqueness is judged on: trimmed, full-width folded to half-width."""
    return unicodedata.normalize("NFKC", name).strip().replace(" ", "").lower()


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
    )


def submit(application: dict, *, applicant: str, now: datetime) -> tuple[dict, list[Event]]:
    organization = {
        "_id": new_organization_id(),
        **application,
        "name": application["name"].strip(),
        "name_key": name_key(application["name"]),
        "status": SUBMITTED,
        "risk": NO_RISK,
        "applicant": applicant,
        "submitted_at": now,
        "updated_at": now,
        "version": 1,
    }
    return organization, [organization_event("submitted", organization, applicant)]


def approve(organization: dict, *, uscc: str, today: date, now: datetime, actor: str) -> tuple[dict, list[Event]]:
    if organization["status"] != SUBMITTED:
        raise Conflict(f"only a submitted application can be approved; this one is {organization['status']}")
    term_end = add_years(today, organization["term_years"])
    changed = {
        **organization,
        "status": REGISTERED,
        "uscc": uscc,
        "registered_at": now,
        "term": {"start": today.isoformat(), "end": term_end.isoformat()},
        "approved_by": actor,
        "updated_at": now,
        "version": organization["version"] + 1,
    }
    return changed, [organization_event("registered", changed, actor)]


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year + years, day=28)
