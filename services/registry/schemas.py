"""Request and response schemas of the registry API (marshmallow; OpenAPI is generated from them).

Shapes and types are checked here; the rules that depend on the district's settings (name, funds,
members, council size, term length) are domain.py's, so their 422s name the rule in words.
"""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate

from services.registry import domain
from services.registry.domain import (COUNCIL_ROLES, ORGANIZATION_TYPES, PUBLIC_STATUSES, RISK_LEVELS, RISK_LISTS,
                                      STATUSES)
from shared.errors import flatten_errors
from shared.schemas import MAX_FEN, IsoDate, PageArgs, Schema
from shared.web import context

REASON = validate.Length(min=1, max=500)
FEN = validate.Range(min=0, max=MAX_FEN)
# Counts and amounts are bounded so they fit the 8-byte integers MongoDB stores (beyond that: 422, not 500).
MEMBERS = validate.Range(min=0, max=100_000_000)


class LegalRepresentativeSchema(Schema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=50))
    id_number = fields.Str(required=True, load_only=True, validate=validate.Length(equal=18))


class LegalRepresentativeViewSchema(Schema):
    """The legal representative as shown back: the ID number is never returned."""

    name = fields.Str()


class ContactSchema(Schema):
    phone = fields.Str(required=True, validate=validate.Length(min=5, max=30))
    email = fields.Email(required=True, validate=validate.Length(max=200))


class MembersSchema(Schema):
    individuals = fields.Int(load_default=0, validate=MEMBERS)
    units = fields.Int(load_default=0, validate=MEMBERS)


class CouncilMemberSchema(Schema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=50))
    role = fields.Str(required=True, validate=validate.OneOf(COUNCIL_ROLES))


COUNCIL = validate.Length(max=200)


def reads(field_name: str, path: str) -> bool:
    """Is `path` the field `field_name` or inside it ("council" and "council.1.role")?"""
    return path == field_name or path.startswith(field_name + ".")


class ApplicationSchema(Schema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    type = fields.Str(required=True, validate=validate.OneOf(ORGANIZATION_TYPES))
    domain = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    address = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    legal_representative = fields.Nested(LegalRepresentativeSchema, required=True)
    contact = fields.Nested(ContactSchema, required=True)
    registered_funds_fen = fields.Int(required=True, strict=True, validate=FEN)
    members = fields.Nested(MembersSchema)
    supervisor_unit = fields.Str(allow_none=True, validate=validate.Length(max=100))
    council = fields.List(fields.Nested(CouncilMemberSchema), required=True, validate=COUNCIL)
    term_years = fields.Int(required=True, strict=True, validate=validate.Range(min=1, max=100))

    def load(self, data, **kwargs):
        """An application with malformed fields is refused with the registration rules its valid fields break
        too, so that one answer names every problem: an applicant who mistyped the e-mail address learns in the
        same answer that the name lacks the region prefix, rather than after correcting the address. A rule that
        reads a malformed field is not judged (its field already has a message)."""
        try:
            return super().load(data, **kwargs)
        except ValidationError as exc:
            if not isinstance(exc.valid_data, dict):
                raise
            malformed = flatten_errors(exc.messages)
            # A list with a malformed item holds the valid items only (a council of 2 of the 3 people sent): judged
            # without that field. A nested object holds its valid fields, which are judged.
            judged = {name: value for name, value in exc.valid_data.items()
                      if not (isinstance(value, list) and any(reads(name, path) for path in malformed))}
            rules = domain.Rules.from_settings(context().settings)
            broken = {name: messages for name, messages in domain.application_problems(judged, rules).items()
                      if not any(reads(name, path) or reads(path, name) for path in malformed)}
            if not broken:
                raise
            raise ValidationError({**exc.messages, **broken}, valid_data=exc.valid_data) from None


class TermSchema(Schema):
    start = IsoDate()
    end = IsoDate()


class FlagSchema(Schema):
    """A risk flag: on which list, why, since when, and when and why it was cleared."""

    id = fields.Str()
    list = fields.Str(metadata={"enum": list(RISK_LISTS)})
    reason = fields.Str()
    raised_on = IsoDate()
    raised_by = fields.Str()
    origin = fields.Str(metadata={"description": "officer, or sweep (the automatic rules)"})
    active = fields.Bool()
    cleared_on = IsoDate(allow_none=True)
    cleared_by = fields.Str(allow_none=True)
    clear_reason = fields.Str(allow_none=True)
    escalated_from = fields.Str(allow_none=True, metadata={"description": "the abnormal flag this serious one "
                                                                          "escalates"})
    escalated_to = fields.Str(allow_none=True)


class OrganizationSchema(Schema):
    id = fields.Str(attribute="_id", dump_only=True)
    name = fields.Str()
    type = fields.Str()
    domain = fields.Str()
    address = fields.Str()
    legal_representative = fields.Nested(LegalRepresentativeViewSchema)
    contact = fields.Nested(ContactSchema)
    registered_funds_fen = fields.Int()
    members = fields.Nested(MembersSchema)
    supervisor_unit = fields.Str(allow_none=True, dump_default=None)
    council = fields.List(fields.Nested(CouncilMemberSchema))
    term_years = fields.Int()
    status = fields.Str(metadata={"enum": list(STATUSES)})
    uscc = fields.Str(allow_none=True, dump_default=None)
    registered_at = fields.DateTime(allow_none=True, dump_default=None)
    term = fields.Nested(TermSchema, allow_none=True, dump_default=None)
    risk = fields.Str(metadata={"enum": list(RISK_LEVELS)})
    active_flags = fields.Method("_active_flags", metadata={
        "type": "array", "description": "the active risk flags {id, list, reason, raised_on}",
        "items": {"type": "object"}})
    reported_years = fields.List(fields.Int())
    submitted_at = fields.DateTime()
    rejection_reason = fields.Str(allow_none=True, dump_default=None)
    deregistered_at = fields.DateTime(allow_none=True, dump_default=None)
    deregistration_reason = fields.Str(allow_none=True, dump_default=None)
    version = fields.Int()

    def _active_flags(self, organization):
        return [{"id": f["id"], "list": f["list"], "reason": f["reason"], "raised_on": f["raised_on"]}
                for f in organization.get("flags", []) if f["active"]]


class SearchArgs(PageArgs):
    q = fields.Str(validate=validate.Length(max=100),
                   metadata={"description": "a substring of the name, or the start of the USCC"})
    status = fields.Str(validate=validate.OneOf(STATUSES))
    type = fields.Str(validate=validate.OneOf(ORGANIZATION_TYPES))
    risk = fields.Str(validate=validate.OneOf(RISK_LEVELS))


class PublicSearchArgs(PageArgs):
    q = fields.Str(validate=validate.Length(max=100),
                   metadata={"description": "a substring of the name, or the start of the USCC"})
    status = fields.Str(validate=validate.OneOf(PUBLIC_STATUSES))
    type = fields.Str(validate=validate.OneOf(ORGANIZATION_TYPES))
    risk = fields.Str(validate=validate.OneOf(RISK_LEVELS))


class PublicOrganizationSchema(Schema):
    """The public register: credit information is public by law; no personal data (no ID numbers, phones,
    e-mails, names of people)."""

    identifier = fields.Function(lambda o: f"CN-USCI-{o['uscc']}",
                                 metadata={"description": "org-id.guide identifier"})
    uscc = fields.Str()
    name = fields.Str()
    type = fields.Str()
    domain = fields.Str()
    status = fields.Str()
    registered_at = fields.DateTime()
    deregistered_at = fields.DateTime(allow_none=True, dump_default=None)
    term = fields.Nested(TermSchema)
    risk = fields.Str()
    flags = fields.Method("_active_flags", metadata={"type": "array", "items": {"type": "object"},
                                                     "description": "the active risk flags {list, reason, raised_on}"})

    def _active_flags(self, organization):
        return [{"list": f["list"], "reason": f["reason"], "raised_on": f["raised_on"]}
                for f in organization.get("flags", []) if f["active"]]


class ReasonSchema(Schema):
    reason = fields.Str(required=True, validate=REASON)


class RenewalRequestSchema(Schema):
    election_date = IsoDate(required=True)
    council = fields.List(fields.Nested(CouncilMemberSchema), required=True, validate=COUNCIL)
    term_years = fields.Int(required=True, strict=True, validate=validate.Range(min=1, max=100))


class RenewalSchema(Schema):
    id = fields.Str(attribute="_id")
    organization_id = fields.Str()
    organization_name = fields.Str(dump_only=True, metadata={"description": "in the list across organizations"})
    election_date = IsoDate()
    council = fields.List(fields.Nested(CouncilMemberSchema))
    term_years = fields.Int()
    status = fields.Str(metadata={"enum": list(domain.RENEWAL_STATUSES)})
    filed_by = fields.Str()
    filed_at = fields.DateTime()
    term = fields.Nested(TermSchema, allow_none=True, metadata={"description": "the new term, once approved"})
    approved_at = fields.DateTime(allow_none=True)
    rejection_reason = fields.Str(allow_none=True)


class RenewalListArgs(PageArgs):
    status = fields.Str(load_default=domain.RENEWAL_SUBMITTED, validate=validate.OneOf(domain.RENEWAL_STATUSES))


class ReportRequestSchema(Schema):
    year = fields.Int(required=True, strict=True, validate=validate.Range(min=1900, max=2999))
    income_fen = fields.Int(required=True, strict=True, validate=FEN)
    expenditure_fen = fields.Int(required=True, strict=True, validate=FEN)
    net_assets_fen = fields.Int(required=True, strict=True, validate=validate.Range(min=-MAX_FEN, max=MAX_FEN))


class ReportSchema(Schema):
    id = fields.Str(attribute="_id")
    organization_id = fields.Str()
    year = fields.Int()
    income_fen = fields.Int()
    expenditure_fen = fields.Int()
    net_assets_fen = fields.Int()
    filed_by = fields.Str()
    filed_at = fields.DateTime()


class FlagRequestSchema(Schema):
    list = fields.Str(required=True, validate=validate.OneOf(RISK_LISTS))
    reason = fields.Str(required=True, validate=REASON)


class SweepRequestSchema(Schema):
    as_of = IsoDate(required=True)


class SweepItemSchema(Schema):
    organization_id = fields.Str()
    organization_name = fields.Str()
    id = fields.Str(metadata={"description": "the flag"})
    list = fields.Str()
    reason = fields.Str()
    raised_on = IsoDate()
    active = fields.Bool()
    cleared_on = IsoDate(allow_none=True)
    clear_reason = fields.Str(allow_none=True)


class SweepSchema(Schema):
    id = fields.Str()
    as_of = IsoDate()
    flagged = fields.List(fields.Nested(SweepItemSchema))
    cleared = fields.List(fields.Nested(SweepItemSchema))
