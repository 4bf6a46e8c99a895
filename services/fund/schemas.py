"""Request and response schemas of the fund API (marshmallow; OpenAPI is generated from them)."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates

from services.fund import domain
from shared.schemas import IsoDate, PageArgs, Schema

MAX_FEN = 10**15  # a quadrillion fen (10 trillion yuan): far beyond any district fund, well inside 64-bit


def money(**kw):
    return fields.Int(strict=True, validate=validate.Range(min=1, max=MAX_FEN), **kw)


def text(max_length: int, **kw):
    return fields.Str(validate=validate.Length(min=1, max=max_length), **kw)


# -- funds ----------------------------------------------------------------------------------------------
class FundCreateSchema(Schema):
    name = text(100, required=True)
    year = fields.Int(strict=True, required=True, validate=validate.Range(min=2000, max=2100))
    budget_fen = money(required=True)

    @validates("name")
    def name_not_blank(self, value, **kwargs):
        if not value.strip():
            raise ValidationError("must not be blank")


class FundSchema(Schema):
    id = fields.Str(attribute="_id", required=True)
    name = fields.Str()
    year = fields.Int()
    budget_fen = fields.Int()
    committed_fen = fields.Int(metadata={"description": "all money ever committed to grants"})
    disbursed_fen = fields.Int(metadata={"description": "all money paid out on the fund's grants"})
    clawed_back_fen = fields.Int(metadata={"description": "paid money returned to the fund"})
    held_fen = fields.Int(metadata={"description": "tranches held while their organization is on the abnormal list"})
    available_fen = fields.Int(metadata={"description": "budget - committed + clawed back"})
    created_at = fields.DateTime()
    created_by = fields.Str()


class FundListArgs(PageArgs):
    year = fields.Int(validate=validate.Range(min=2000, max=2100))


# -- grants ---------------------------------------------------------------------------------------------
class GrantCreateSchema(Schema):
    organization_id = text(64, required=True)
    title = text(140, required=True)
    description = fields.Str(validate=validate.Length(max=2000), allow_none=True)
    amount_fen = money(required=True)
    tranches = fields.List(fields.Int(strict=True, validate=validate.Range(min=1, max=100)), required=True,
                           validate=validate.Length(min=1, max=domain.MAX_TRANCHES),
                           metadata={"description": "percent of the amount paid by each tranche; they sum to 100"})

    @validates("tranches")
    def sum_to_100(self, value, **kwargs):
        if sum(value) != 100:
            raise ValidationError(f"tranches must sum to 100, not {sum(value)}")

    @validates("title")
    def title_not_blank(self, value, **kwargs):
        if not value.strip():
            raise ValidationError("must not be blank")


class DisbursementSchema(Schema):
    id = fields.Str(required=True)
    grant_id = fields.Str()
    tranche = fields.Int()
    amount_fen = fields.Int()
    status = fields.Str(metadata={"description": "paid | held | cancelled"})
    hold_reason = fields.Str()
    requested_at = fields.DateTime()
    requested_by = fields.Str()
    paid_at = fields.DateTime()
    released_at = fields.DateTime()
    cancelled_at = fields.DateTime()
    cancel_reason = fields.Str()


class ClawbackSchema(Schema):
    id = fields.Str(required=True)
    grant_id = fields.Str()
    amount_fen = fields.Int()
    reason = fields.Str()
    recorded_at = fields.DateTime()
    recorded_by = fields.Str()


class AwardReferenceSchema(Schema):
    key = fields.Str()
    project_id = fields.Str()
    tier = fields.Str()
    year = fields.Int()
    prize_fen = fields.Int()
    fund_id = fields.Str(allow_none=True)
    awarded_by = fields.Str()


class RecipientSchema(Schema):
    name = fields.Str(allow_none=True)
    uscc = fields.Str(allow_none=True)


class GrantSchema(Schema):
    id = fields.Str(attribute="_id", required=True)
    fund_id = fields.Str(allow_none=True)
    organization_id = fields.Str()
    recipient = fields.Nested(RecipientSchema)
    title = fields.Str()
    description = fields.Str(allow_none=True)
    amount_fen = fields.Int()
    tranches = fields.List(fields.Int())
    tranche_amounts = fields.List(fields.Int())
    next_tranche = fields.Int()
    disbursed_fen = fields.Int()
    held_fen = fields.Int()
    clawed_back_fen = fields.Int()
    outstanding_fen = fields.Method("outstanding", metadata={"description": "committed and not yet paid"})
    status = fields.Str(metadata={"description": "active | completed | rejected"})
    rejection_reason = fields.Str()
    source = fields.Str(metadata={"description": "officer | award"})
    award = fields.Nested(AwardReferenceSchema, allow_none=True)
    disbursements = fields.List(fields.Nested(DisbursementSchema))
    clawbacks = fields.List(fields.Nested(ClawbackSchema))
    created_at = fields.DateTime()
    created_by = fields.Str()
    updated_at = fields.DateTime()

    def outstanding(self, grant):
        if grant.get("status") == domain.GRANT_REJECTED:
            return 0
        return grant["amount_fen"] - grant["disbursed_fen"]


class GrantListArgs(PageArgs):
    status = fields.Str(validate=validate.OneOf([domain.GRANT_ACTIVE, domain.GRANT_COMPLETED,
                                                 domain.GRANT_REJECTED]))
    organization_id = fields.Str()


class DisbursementRequestSchema(Schema):
    tranche = fields.Int(strict=True, validate=validate.Range(min=1),
                         metadata={"description": "optional; when given it must be the next tranche"})


class ClawbackRequestSchema(Schema):
    amount_fen = money(required=True)
    reason = text(500, required=True)

    @validates("reason")
    def reason_not_blank(self, value, **kwargs):
        if not value.strip():
            raise ValidationError("must not be blank")


# -- ledger ---------------------------------------------------------------------------------------------
class LineSchema(Schema):
    account = fields.Str()
    debit_fen = fields.Int()
    credit_fen = fields.Int()


class EntrySchema(Schema):
    id = fields.Str(attribute="_id", required=True)
    time = fields.DateTime()
    kind = fields.Str(metadata={"description": ", ".join(domain.ENTRY_KINDS)})
    fund_id = fields.Str()
    grant_id = fields.Str(allow_none=True)
    lines = fields.List(fields.Nested(LineSchema))
    actor = fields.Str()
    ref = fields.Dict()


class LedgerArgs(PageArgs):
    grant_id = fields.Str()


class AccountSchema(Schema):
    account = fields.Str()
    normal_side = fields.Str()
    debits_fen = fields.Int()
    credits_fen = fields.Int()
    balance_fen = fields.Int()


class AccountListSchema(Schema):
    fund_id = fields.Str()
    accounts = fields.List(fields.Nested(AccountSchema))


# -- park -----------------------------------------------------------------------------------------------
class UnitCreateSchema(Schema):
    code = text(32, required=True)
    area_m2 = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=0, min_inclusive=False,
                                                                                   max=100_000))

    @validates("code")
    def code_not_blank(self, value, **kwargs):
        if not value.strip():
            raise ValidationError("must not be blank")


class UnitSchema(Schema):
    id = fields.Str(attribute="_id", required=True)
    code = fields.Str()
    area_m2 = fields.Float()
    created_at = fields.DateTime()


class ResidencyCreateSchema(Schema):
    organization_id = text(64, required=True)
    unit = text(64, required=True, metadata={"description": "the unit's code (or id)"})
    start = IsoDate(required=True)
    years = fields.Int(strict=True, required=True)


class ResidencySchema(Schema):
    id = fields.Str(attribute="_id", required=True)
    unit_id = fields.Str()
    unit = fields.Str(attribute="unit_code")
    organization_id = fields.Str()
    organization_name = fields.Str(allow_none=True)
    start = IsoDate()
    end = IsoDate(metadata={"description": "the term's end (first day after it)"})
    years = fields.Int()
    status = fields.Str(metadata={"description": "active | graduated | ended"})
    ended_on = IsoDate(allow_none=True)
    end_reason = fields.Str(allow_none=True)
    created_at = fields.DateTime()


class ResidencyListArgs(PageArgs):
    unit = fields.Str()
    organization_id = fields.Str()
    status = fields.Str(validate=validate.OneOf([domain.RESIDENCY_ACTIVE, domain.RESIDENCY_GRADUATED,
                                                 domain.RESIDENCY_ENDED]))


class OccupancyArgs(Schema):
    as_of = IsoDate(metadata={"description": "defaults to today in Asia/Shanghai"})


class EndingSoonSchema(Schema):
    residency_id = fields.Str()
    organization_id = fields.Str()
    organization_name = fields.Str(allow_none=True)
    unit = fields.Str()
    unit_id = fields.Str()
    end = IsoDate()
    days_left = fields.Int()


class OccupancySchema(Schema):
    as_of = IsoDate()
    units = fields.Int()
    occupied = fields.Int()
    free = fields.Int()
    ending_within_days = fields.Int()
    ending_soon = fields.List(fields.Nested(EndingSoonSchema))
