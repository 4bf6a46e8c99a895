"""Turning submitted HTML forms into API request bodies, and API errors back into form fields. Pure.

HTML fields are named by the API's dotted paths ("legal_representative.id_number", "council.2.role"), so
an API error's key finds its field by name. Money is typed in yuan and sent in fen: a field the API calls
`x_fen` is the form field `x_yuan`, and `form_field_of` maps the API's error keys the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Callable, Mapping

from services.portal.i18n import N_
from shared.text import ascii_digits

FEN_PER_YUAN = 100
# "member" first: an unused row's role select shows the ordinary choice, not a second chair.
COUNCIL_ROLES = ("member", "chair", "vice_chair", "secretary_general", "supervisor")
ORGANIZATION_TYPES = ("social_group", "social_service_agency", "foundation")
AGGREGATIONS = ("mean", "trimmed_mean", "zscore")
RISK_LISTS = ("abnormal", "serious")


class FieldError(ValueError):
    """A value the portal cannot even send (not a number, not a date); the message is an English msgid."""


def form_field_of(api_key: str) -> str:
    """The form field an API error key belongs to: `registered_funds_fen` -> `registered_funds_yuan`."""
    if api_key.endswith("_fen"):
        return api_key[: -len("_fen")] + "_yuan"
    return api_key


def errors_for_form(api_errors: Mapping[str, list[str]]) -> dict[str, list[str]]:
    return {form_field_of(key): list(messages) for key, messages in api_errors.items()}


# -- single values --------------------------------------------------------------------------------------
def parse_yuan(text: str) -> int:
    """'30,000.50' yuan -> 3000050 fen; at most two decimals, never negative."""
    cleaned = (text or "").strip().replace(",", "").replace("，", "").replace("¥", "").replace("￥", "")
    if not cleaned:
        raise FieldError(N_("required"))
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise FieldError(N_("enter an amount in yuan, such as 30000 or 1250.50")) from None
    if not amount.is_finite():
        raise FieldError(N_("enter an amount in yuan, such as 30000 or 1250.50"))
    fen = amount * FEN_PER_YUAN
    if fen != fen.to_integral_value():
        raise FieldError(N_("at most two decimal places (fen)"))
    if fen < 0:
        raise FieldError(N_("must not be negative"))
    return int(fen)


def format_yuan(fen: int | None) -> str:
    """3000050 -> '30,000.50' (for display and to refill a yuan field)."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(int(fen)), FEN_PER_YUAN)
    return f"{sign}{yuan:,}.{cents:02d}"


def parse_int(text: str) -> int:
    cleaned = (text or "").strip()
    if not cleaned:
        raise FieldError(N_("required"))
    try:
        return int(cleaned)
    except ValueError:
        raise FieldError(N_("enter a whole number")) from None


def parse_number(text: str) -> int | float:
    cleaned = (text or "").strip()
    if not cleaned:
        raise FieldError(N_("required"))
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise FieldError(N_("enter a number")) from None
    if not value.is_finite():
        raise FieldError(N_("enter a number"))
    return int(value) if value == value.to_integral_value() else float(value)


def parse_date(text: str) -> str:
    from datetime import date

    cleaned = (text or "").strip()
    if not cleaned:
        raise FieldError(N_("required"))
    try:
        return date.fromisoformat(cleaned).isoformat()
    except ValueError:
        raise FieldError(N_("enter a date as YYYY-MM-DD")) from None


def parse_percentages(text: str) -> list[int]:
    """'30, 30, 40' -> [30, 30, 40]"""
    parts = [p.strip() for p in (text or "").replace("，", ",").split(",") if p.strip()]
    if not parts:
        raise FieldError(N_("required"))
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise FieldError(N_("enter whole percentages separated by commas, such as 50, 50")) from None


# -- a form being read ----------------------------------------------------------------------------------
@dataclass
class FormReader:
    """Reads fields of a submitted form, collecting every error instead of stopping at the first."""

    form: Mapping[str, str]
    errors: dict[str, list[str]] = field(default_factory=dict)

    def text(self, name: str, *, required: bool = True) -> str | None:
        value = (self.form.get(name) or "").strip()
        if not value:
            if required:
                self.errors.setdefault(name, []).append(N_("required"))
            return None
        return value

    def parsed(self, name: str, parse: Callable[[str], object], *, required: bool = True):
        raw = (self.form.get(name) or "").strip()
        if not raw and not required:
            return None
        try:
            return parse(raw)
        except FieldError as exc:
            self.errors.setdefault(name, []).append(str(exc))
            return None

    def council(self, prefix: str = "council") -> list[dict]:
        """Rows `council.N.name` / `council.N.role`; empty rows are skipped, numbering stays the form's."""
        rows = []
        for index in row_indexes(self.form, prefix):
            name = (self.form.get(f"{prefix}.{index}.name") or "").strip()
            role = (self.form.get(f"{prefix}.{index}.role") or "").strip()
            if name:
                rows.append({"name": name, "role": role or "member"})
        return rows


def row_indexes(form: Mapping[str, str], prefix: str) -> list[int]:
    indexes = set()
    for key in form:
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == prefix and ascii_digits(parts[1]):
            indexes.add(int(parts[1]))
    return sorted(indexes)


# -- request bodies -------------------------------------------------------------------------------------
def application_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    """The body of POST /api/v1/organizations from the apply form, and the fields the portal could not read.

    The domain rules (name form, ID number check digit, funds, council) are the registry's to judge: the
    portal sends whatever was typed so that the registry's own message appears beside the field.
    """
    read = FormReader(form)
    body = {
        "name": read.text("name") or "",
        "type": read.text("type") or "",
        "domain": read.text("domain") or "",
        "address": read.text("address") or "",
        "legal_representative": {"name": read.text("legal_representative.name") or "",
                                 "id_number": read.text("legal_representative.id_number") or ""},
        "contact": {"phone": read.text("contact.phone") or "", "email": read.text("contact.email") or ""},
        "registered_funds_fen": read.parsed("registered_funds_yuan", parse_yuan),
        "council": read.council(),
        "term_years": read.parsed("term_years", parse_int),
    }
    members = {"individuals": read.parsed("members.individuals", parse_int, required=False),
               "units": read.parsed("members.units", parse_int, required=False)}
    if any(v is not None for v in members.values()):
        body["members"] = {k: v or 0 for k, v in members.items()}
    supervisor = read.text("supervisor_unit", required=False)
    if supervisor:
        body["supervisor_unit"] = supervisor
    return body, read.errors


def renewal_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    read = FormReader(form)
    body = {"election_date": read.parsed("election_date", parse_date), "council": read.council(),
            "term_years": read.parsed("term_years", parse_int)}
    return body, read.errors


def annual_report_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    read = FormReader(form)
    body = {"year": read.parsed("year", parse_int),
            "income_fen": read.parsed("income_yuan", parse_yuan),
            "expenditure_fen": read.parsed("expenditure_yuan", parse_yuan),
            "net_assets_fen": read.parsed("net_assets_yuan", _signed_yuan)}
    return body, read.errors


def _signed_yuan(text: str) -> int:
    """Net assets may be negative."""
    stripped = (text or "").strip()
    if stripped.startswith("-"):
        return -parse_yuan(stripped[1:])
    return parse_yuan(stripped)


def project_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    read = FormReader(form)
    body = {"organization_id": read.text("organization_id") or "", "title": read.text("title") or "",
            "summary": read.text("summary") or "", "budget_fen": read.parsed("budget_yuan", parse_yuan)}
    return body, read.errors


def scores_body(form: Mapping[str, str], criteria: list[dict]) -> tuple[dict, dict[str, list[str]]]:
    """{'scores': {key: number}, 'comment': ...} with one field `scores.<key>` per criterion."""
    read = FormReader(form)
    scores = {}
    for criterion in criteria:
        value = read.parsed(f"scores.{criterion['key']}", parse_number)
        if value is not None:
            scores[criterion["key"]] = value
    return {"scores": scores, "comment": (form.get("comment") or "").strip()}, read.errors


def conflict_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    read = FormReader(form)
    comment = read.text("conflict_comment")
    return {"conflict": True, "comment": comment or ""}, read.errors


def round_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    read = FormReader(form)
    criteria = []
    for index in row_indexes(form, "criteria"):
        key = (form.get(f"criteria.{index}.key") or "").strip()
        if not key:
            continue
        criteria.append({"key": key, "label": (form.get(f"criteria.{index}.label") or key).strip(),
                         "weight": read.parsed(f"criteria.{index}.weight", parse_number),
                         "max_score": read.parsed(f"criteria.{index}.max_score", parse_number)})
    if not criteria:
        read.errors.setdefault("criteria", []).append(N_("add at least one criterion"))
    closes_at = read.text("closes_at")
    body = {"name": read.text("name") or "", "year": read.parsed("year", parse_int), "criteria": criteria,
            "aggregation": read.text("aggregation") or "",
            "reviewers_per_project": read.parsed("reviewers_per_project", parse_int),
            # <input type="datetime-local"> gives 2026-12-31T17:00: a Shanghai local time, as the API reads it.
            "closes_at": _with_seconds(closes_at) if closes_at else None}
    return body, read.errors


def _with_seconds(local: str) -> str:
    return local + ":00" if len(local) == 16 else local


def reviewer_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    read = FormReader(form)
    affiliations = [a.strip() for a in (form.get("affiliations") or "").replace("，", ",").split(",") if a.strip()]
    return {"reviewer": read.text("reviewer") or "", "name": read.text("name") or "",
            "affiliations": affiliations}, read.errors


def awards_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    """Rows `awards.N.project_id|tier|prize_yuan`; a row without a tier is not awarded."""
    read = FormReader(form)
    awards = []
    for index in row_indexes(form, "awards"):
        tier = (form.get(f"awards.{index}.tier") or "").strip()
        if not tier:
            continue
        awards.append({"project_id": (form.get(f"awards.{index}.project_id") or "").strip(), "tier": tier,
                       "prize_fen": read.parsed(f"awards.{index}.prize_yuan", parse_yuan)})
    if not awards:
        read.errors.setdefault("awards", []).append(N_("give at least one project a tier and a prize"))
    fund_id = (form.get("fund_id") or "").strip()
    if fund_id:
        for award in awards:
            award["fund_id"] = fund_id
    return {"awards": awards}, read.errors


def fund_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    read = FormReader(form)
    return {"name": read.text("name") or "", "year": read.parsed("year", parse_int),
            "budget_fen": read.parsed("budget_yuan", parse_yuan)}, read.errors


def grant_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    read = FormReader(form)
    return {"organization_id": read.text("organization_id") or "", "title": read.text("title") or "",
            "amount_fen": read.parsed("amount_yuan", parse_yuan),
            "tranches": read.parsed("tranches", parse_percentages)}, read.errors


def clawback_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    """Money an organization returns on a grant, and why."""
    read = FormReader(form)
    return {"amount_fen": read.parsed("amount_yuan", parse_yuan), "reason": read.text("reason") or ""}, read.errors


def reason_body(form: Mapping[str, str], name: str = "reason") -> tuple[dict, dict[str, list[str]]]:
    """Reject, clear and deregister need a reason: the portal asks for it before calling the API."""
    read = FormReader(form)
    return {"reason": read.text(name) or ""}, read.errors


def sweep_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    """A risk sweep runs as of a date the officer picks."""
    read = FormReader(form)
    return {"as_of": read.parsed("as_of", parse_date)}, read.errors


def flag_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    read = FormReader(form)
    return {"list": read.text("list") or "", "reason": read.text("reason") or ""}, read.errors


def unit_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    read = FormReader(form)
    return {"code": read.text("code") or "", "area_m2": read.parsed("area_m2", parse_number)}, read.errors


def residency_body(form: Mapping[str, str]) -> tuple[dict, dict[str, list[str]]]:
    read = FormReader(form)
    return {"organization_id": read.text("organization_id") or "", "unit": read.text("unit") or "",
            "start": read.parsed("start", parse_date), "years": read.parsed("years", parse_int)}, read.errors
