"""Request and response schemas of the registry API (marshmallow; OpenAPI is generated from them)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from shared.schemas import IsoDate

from services.registry.domain import ORGANIZATION_TYPES


class LegalRepresentativeSchema(Schema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=50))
    id_number = fields.Str(required=True, load_only=True)


class LegalRepresentativeViewSchema(Schema):
    """The legal representative as shown back: the ID number is never returned."""

    name = fields.Str()


class ContactSchema(Schema):
    phone = fields.Str(required=True)
    email = fields.Email(required=True)


class MembersSchema(Schema):
    individuals = fields.Int(load_default=0, validate=validate.Range(min=0))
    units = fields.Int(load_default=0, validate=validate.Range(min=0))


class CouncilMemberSchema(Schema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=50))
    role = fields.Str(required=True, validate=validate.Length(min=1, max=30))


class ApplicationSchema(Schema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    type = fields.Str(required=True, validate=validate.OneOf(ORGANIZATION_TYPES))
    domain = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    address = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    legal_representative = fields.Nested(LegalRepresentativeSchema, required=True)
    contact = fields.Nested(ContactSchema, required=True)
    registered_funds_fen = fields.Int(required=True, validate=validate.Range(min=0))
    members = fields.Nested(MembersSchema)
    supervisor_unit = fields.Str(allow_none=True)
    council = fields.List(fields.Nested(CouncilMemberSchema), required=True)
    term_years = fields.Int(required=True, validate=validate.Range(min=1, max=5))


class TermSchema(Schema):
    start = IsoDate()
    end = IsoDate()


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
    supervisor_unit = fields.Str(allow_none=True)
    council = fields.List(fields.Nested(CouncilMemberSchema))
    term_years = fields.Int()
    status = fields.Str()
    uscc = fields.Str(allow_none=True)
    registered_at = fields.DateTime(allow_none=True)
    term = fields.Nested(TermSchema, allow_none=True)
    risk = fields.Str()
    submitted_at = fields.DateTime()
    version = fields.Int()
