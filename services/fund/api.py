"""The fund service's HTTP API: thin views that check the role, parse, and call the store."""

from __future__ import annotations

from flask.views import MethodView

from services.fund.schemas import (AccountListSchema, ClawbackRequestSchema, ClawbackSchema, DisbursementRequestSchema,
                                   DisbursementSchema, EntrySchema, FundCreateSchema, FundListArgs, FundSchema,
                                   GrantCreateSchema, GrantListArgs, GrantSchema, LedgerArgs, OccupancyArgs,
                                   OccupancySchema, ResidencyCreateSchema, ResidencyListArgs, ResidencySchema,
                                   UnitCreateSchema, UnitSchema)
from shared.auth import current_principal, requires
from shared.blueprint import Blueprint
from shared.organizations import read_model_blueprint
from shared.schemas import PageArgs, page_of, page_response
from shared.web import idempotency_key, store

organizations_blp = read_model_blueprint(lambda: store().organizations)
funds_blp = Blueprint("funds", __name__, url_prefix="/api/v1/funds",
                      description="The special development fund: budgets, grants, the ledger and open data")
grants_blp = Blueprint("grants", __name__, url_prefix="/api/v1/grants",
                       description="Grants: tranche disbursements and clawbacks")
park_blp = Blueprint("park", __name__, url_prefix="/api/v1/park",
                     description="The innovation demonstration park: units, residencies, graduation")


def actor() -> str:
    return current_principal().sub


# -- funds ------------------------------------------------------------------------------------------------
@funds_blp.route("")
class Funds(MethodView):
    @requires("officer")
    @funds_blp.arguments(FundCreateSchema)
    @funds_blp.response(201, FundSchema)
    def post(self, body):
        """Open a fund with its budget"""
        return store().create_fund(body, actor=actor(), idempotency=idempotency_key(body))

    @requires("officer")
    @funds_blp.arguments(FundListArgs, location="query")
    @funds_blp.response(200, page_of(FundSchema))
    def get(self, args):
        """Funds, newest year first (filter: `year`)"""
        return page_response(*store().list_funds(args), args)


@funds_blp.route("/<fund_id>")
class FundById(MethodView):
    @requires("officer")
    @funds_blp.response(200, FundSchema)
    def get(self, fund_id):
        """One fund: budget, committed, disbursed and available"""
        return store().get_fund(fund_id)


@funds_blp.route("/<fund_id>/grants")
class FundGrants(MethodView):
    @requires("officer")
    @funds_blp.arguments(GrantCreateSchema)
    @funds_blp.response(201, GrantSchema)
    def post(self, body, fund_id):
        """Commit a grant: only if the fund has the amount available (409 otherwise)"""
        return store().create_grant(fund_id, body, actor=actor(), idempotency=idempotency_key(body))

    @requires("officer")
    @funds_blp.arguments(GrantListArgs, location="query")
    @funds_blp.response(200, page_of(GrantSchema))
    def get(self, args, fund_id):
        """The fund's grants (filters: `status`, `organization_id`)"""
        return page_response(*store().list_grants(fund_id, args), args)


@funds_blp.route("/<fund_id>/ledger")
class FundLedger(MethodView):
    @requires("officer")
    @funds_blp.arguments(LedgerArgs, location="query")
    @funds_blp.response(200, page_of(EntrySchema))
    def get(self, args, fund_id):
        """The fund's double-entry journal, oldest first; every entry's debits equal its credits"""
        return page_response(*store().ledger(fund_id, args), args)


@funds_blp.route("/<fund_id>/accounts")
class FundAccounts(MethodView):
    @requires("officer")
    @funds_blp.response(200, AccountListSchema)
    def get(self, fund_id):
        """Balances of every account the fund's journal touches, derived from the journal"""
        return store().accounts(fund_id)


@funds_blp.route("/<fund_id>/export.json")
class FundExport(MethodView):
    @funds_blp.doc(responses={"200": {"description": "a 360Giving data package (amounts in yuan, CNY)"}})
    def get(self, fund_id):
        """Open data: the fund's grants in the 360Giving shape (public, no token)"""
        return store().export(fund_id)


# -- grants -----------------------------------------------------------------------------------------------
@grants_blp.route("/<grant_id>")
class GrantById(MethodView):
    @requires("officer")
    @grants_blp.response(200, GrantSchema)
    def get(self, grant_id):
        """One grant with its tranches, disbursements and clawbacks"""
        return store().get_grant(grant_id)


@grants_blp.route("/<grant_id>/disbursements")
class Disbursements(MethodView):
    @requires("officer")
    @grants_blp.arguments(DisbursementRequestSchema)
    @grants_blp.response(201, DisbursementSchema)
    @grants_blp.doc(parameters=[{"in": "header", "name": "Idempotency-Key", "required": True,
                                 "schema": {"type": "string"}}])
    def post(self, body, grant_id):
        """Pay the next tranche (Idempotency-Key required). `held` while the organization is on the abnormal list"""
        return store().disburse(grant_id, tranche=body.get("tranche"), actor=actor(),
                                idempotency=idempotency_key(body, required=True))

    @requires("officer")
    @grants_blp.arguments(PageArgs, location="query")
    @grants_blp.response(200, page_of(DisbursementSchema))
    def get(self, args, grant_id):
        """The grant's disbursements, by tranche"""
        disbursements = sorted(store().get_grant(grant_id)["disbursements"], key=lambda d: d["requested_at"])
        start = (args["page"] - 1) * args["per_page"]
        return page_response(disbursements[start:start + args["per_page"]], len(disbursements), args)


@grants_blp.route("/<grant_id>/clawbacks")
class Clawbacks(MethodView):
    @requires("officer")
    @grants_blp.arguments(ClawbackRequestSchema)
    @grants_blp.response(201, ClawbackSchema)
    def post(self, body, grant_id):
        """Record money the organization returns to the fund (at most what it was paid, net)"""
        return store().clawback(grant_id, body, actor=actor(), idempotency=idempotency_key(body))


# -- park -------------------------------------------------------------------------------------------------
@park_blp.route("/units")
class Units(MethodView):
    @requires("officer")
    @park_blp.arguments(UnitCreateSchema)
    @park_blp.response(201, UnitSchema)
    def post(self, body):
        """Add a unit (code unique)"""
        return store().create_unit(body, actor=actor(), idempotency=idempotency_key(body))

    @requires("officer")
    @park_blp.arguments(PageArgs, location="query")
    @park_blp.response(200, page_of(UnitSchema))
    def get(self, args):
        """The park's units, by code"""
        return page_response(*store().list_units(args), args)


@park_blp.route("/residencies")
class Residencies(MethodView):
    @requires("officer")
    @park_blp.arguments(ResidencyCreateSchema)
    @park_blp.response(201, ResidencySchema)
    def post(self, body):
        """Give a registered organization a unit for 1-5 years (one resident per unit at a time)"""
        return store().start_residency(body, actor=actor(), idempotency=idempotency_key(body))

    @requires("officer")
    @park_blp.arguments(ResidencyListArgs, location="query")
    @park_blp.response(200, page_of(ResidencySchema))
    def get(self, args):
        """Residencies (filters: `unit` code, `organization_id`, `status`)"""
        return page_response(*store().list_residencies(args), args)


@park_blp.route("/residencies/<residency_id>")
class ResidencyById(MethodView):
    @requires("officer")
    @park_blp.response(200, ResidencySchema)
    def get(self, residency_id):
        """One residency"""
        return store().get_residency(residency_id)


@park_blp.route("/residencies/<residency_id>/graduate")
class Graduate(MethodView):
    @requires("officer")
    @park_blp.response(200, ResidencySchema)
    def post(self, residency_id):
        """Graduation (出壳): the residency ends today and the unit is free"""
        return store().graduate(residency_id, actor=actor())


@park_blp.route("/occupancy")
class Occupancy(MethodView):
    @requires("officer")
    @park_blp.arguments(OccupancyArgs, location="query")
    @park_blp.response(200, OccupancySchema)
    def get(self, args):
        """Units, occupied, free, and residents whose term ends within the notice period (90 days)"""
        return store().occupancy(args.get("as_of"))
