"""The registry's HTTP API: thin views that parse, check the role and call the store."""

from __future__ import annotations

from flask import request
from flask.views import MethodView

from services.registry import search
from services.registry.schemas import (ApplicationSchema, FlagRequestSchema, FlagSchema, OrganizationSchema,
                                       PublicOrganizationSchema, PublicSearchArgs, ReasonSchema, RenewalListArgs,
                                       RenewalRequestSchema, RenewalSchema, ReportRequestSchema, ReportSchema, SearchArgs,
                                       SweepRequestSchema, SweepSchema)
from services.registry.domain import PUBLIC_STATUSES
from shared.auth import current_principal, requires
from shared.blueprint import Blueprint
from shared.errors import NotFound, PreconditionFailed
from shared.ratelimit import rate_limited
from shared.schemas import PageArgs, page_of, page_response
from shared.text import ascii_digits
from shared.web import idempotency_key, store

blp = Blueprint("organizations", __name__, url_prefix="/api/v1/organizations",
                description="Apply online, approve and follow social organizations")
sweeps_blp = Blueprint("risk_sweeps", __name__, url_prefix="/api/v1/risk-sweeps",
                       description="The automatic risk-list rules, as of a date")
public_blp = Blueprint("public_register", __name__, url_prefix="/api/v1/public/organizations",
                       description="The public register: registered and deregistered organizations, no token")
renewals_blp = Blueprint("term_renewals", __name__, url_prefix="/api/v1/term-renewals",
                         description="Term renewals across organizations, for the officers who decide them")
BLUEPRINTS = (blp, sweeps_blp, public_blp, renewals_blp)
# Argument schemas are given as instances: given a class, webargs builds a new schema (and its nested ones)
# for every request.


def visible_to_caller(organization: dict) -> dict:
    """Applicants see only their own organization; to others it does not exist (404, not 403)."""
    principal = current_principal()
    if principal.role == "applicant" and principal.org != organization["_id"] \
            and organization.get("applicant") != principal.sub:
        raise NotFound(f"no organization {organization['_id']}")
    return organization


def own_organization(organization_id: str) -> dict:
    """The organization, if the caller may see it (404 otherwise)."""
    return visible_to_caller(store().get(organization_id))


def expected_version() -> int | None:
    """`If-Match: "<version>"` (the ETag of GET /organizations/{id}); a stale one answers 412."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    tag = header.strip().removeprefix("W/").strip('"')
    if not ascii_digits(tag):
        raise PreconditionFailed(f"If-Match {header!r} names no version of this organization")
    return int(tag)


def filters_of(args: dict, *, statuses=None) -> search.Filters:
    status = args.get("status")
    return search.Filters(statuses=(status,) if status else tuple(statuses or ()),
                          types=(args["type"],) if args.get("type") else (),
                          risks=(args["risk"],) if args.get("risk") else ())


@blp.route("")
class Organizations(MethodView):
    @requires("applicant")
    @rate_limited("applications")
    @blp.arguments(ApplicationSchema())
    @blp.response(201, OrganizationSchema)
    def post(self, application):
        """Apply online for registration (rate-limited per applicant: 429 with Retry-After)"""
        return store().submit(application, applicant=current_principal().sub,
                              idempotency=idempotency_key(application))

    @requires("applicant", "officer")
    @blp.arguments(SearchArgs(), location="query")
    @blp.response(200, page_of(OrganizationSchema))
    def get(self, args):
        """Search organizations: `q` is a substring of the name or the start of the USCC (applicants: their own)"""
        principal = current_principal()
        if principal.role == "applicant":
            items, total = store().search_of_applicant(principal.sub, principal.org, args.get("q"),
                                                       filters_of(args), args)
        else:
            items, total = store().search(args.get("q"), filters_of(args), args)
        return page_response(items, total, args)


@blp.route("/<organization_id>")
class OrganizationById(MethodView):
    @requires("applicant", "officer")
    @blp.response(200, OrganizationSchema)
    def get(self, organization_id):
        """One organization (applicants: only their own); its ETag is its version"""
        organization = own_organization(organization_id)
        return organization, 200, {"ETag": f'"{organization["version"]}"'}


@blp.route("/<organization_id>/approve")
class Approve(MethodView):
    @requires("officer")
    @blp.response(200, OrganizationSchema)
    def post(self, organization_id):
        """Approve a submitted application: assigns the USCC and starts the term"""
        return store().approve(organization_id, actor=current_principal().sub, expected_version=expected_version())


@blp.route("/<organization_id>/reject")
class Reject(MethodView):
    @requires("officer")
    @blp.arguments(ReasonSchema())
    @blp.response(200, OrganizationSchema)
    def post(self, body, organization_id):
        """Reject a submitted application (its name becomes free again)"""
        return store().reject(organization_id, reason=body["reason"], actor=current_principal().sub,
                              expected_version=expected_version())


@blp.route("/<organization_id>/deregister")
class Deregister(MethodView):
    @requires("officer")
    @blp.arguments(ReasonSchema())
    @blp.response(200, OrganizationSchema)
    def post(self, body, organization_id):
        """Deregister a registered organization (it stays on the public register, its name becomes free)"""
        return store().deregister(organization_id, reason=body["reason"], actor=current_principal().sub,
                                  expected_version=expected_version())


@blp.route("/<organization_id>/term-renewals")
class TermRenewals(MethodView):
    @requires("applicant")
    @blp.arguments(RenewalRequestSchema())
    @blp.response(201, RenewalSchema)
    def post(self, body, organization_id):
        """File a term renewal (换届): from 6 months before the term ends, or any time after"""
        own_organization(organization_id)
        return store().file_renewal(organization_id, body, actor=current_principal().sub,
                                    idempotency=idempotency_key(body))

    @requires("applicant", "officer")
    @blp.arguments(PageArgs(), location="query")
    @blp.response(200, page_of(RenewalSchema))
    def get(self, args, organization_id):
        """The organization's term renewals, newest first"""
        own_organization(organization_id)
        return page_response(*store().renewals_of(organization_id, args), args)


@blp.route("/<organization_id>/term-renewals/<renewal_id>/approve")
class ApproveRenewal(MethodView):
    @requires("officer")
    @blp.response(200, RenewalSchema)
    def post(self, organization_id, renewal_id):
        """Approve a renewal: the new term starts at the election date; a term_overdue flag is cleared"""
        return store().approve_renewal(organization_id, renewal_id, actor=current_principal().sub)


@blp.route("/<organization_id>/term-renewals/<renewal_id>/reject")
class RejectRenewal(MethodView):
    @requires("officer")
    @blp.arguments(ReasonSchema())
    @blp.response(200, RenewalSchema)
    def post(self, body, organization_id, renewal_id):
        """Reject a renewal (the organization may file another)"""
        return store().reject_renewal(organization_id, renewal_id, reason=body["reason"],
                                      actor=current_principal().sub)


@blp.route("/<organization_id>/annual-reports")
class AnnualReports(MethodView):
    @requires("applicant")
    @blp.arguments(ReportRequestSchema())
    @blp.response(201, ReportSchema)
    def post(self, body, organization_id):
        """File the annual report for a finished year (one per year); clears that year's missing-report flag"""
        own_organization(organization_id)
        return store().file_report(organization_id, body, actor=current_principal().sub,
                                   idempotency=idempotency_key(body))

    @requires("applicant", "officer")
    @blp.arguments(PageArgs(), location="query")
    @blp.response(200, page_of(ReportSchema))
    def get(self, args, organization_id):
        """The organization's annual reports, newest year first"""
        own_organization(organization_id)
        return page_response(*store().reports_of(organization_id, args), args)


@blp.route("/<organization_id>/risk-flags")
class RiskFlags(MethodView):
    @requires("officer")
    @blp.arguments(FlagRequestSchema())
    @blp.response(201, FlagSchema)
    def post(self, body, organization_id):
        """Put a registered organization on the abnormal or the serious list"""
        return store().raise_flag(organization_id, body, actor=current_principal().sub,
                                  idempotency=idempotency_key(body))

    @requires("applicant", "officer")
    @blp.arguments(PageArgs(), location="query")
    @blp.response(200, page_of(FlagSchema))
    def get(self, args, organization_id):
        """The organization's risk-flag history, newest first"""
        flags = sorted(own_organization(organization_id).get("flags", []),
                       key=lambda flag: (flag["raised_on"], flag["raised_at"]), reverse=True)
        start = (args["page"] - 1) * args["per_page"]
        return page_response(flags[start:start + args["per_page"]], len(flags), args)


@blp.route("/<organization_id>/risk-flags/<flag_id>/clear")
class ClearFlag(MethodView):
    @requires("officer")
    @blp.arguments(ReasonSchema())
    @blp.response(200, FlagSchema)
    def post(self, body, organization_id, flag_id):
        """Clear a flag (a serious one only 2 years after it was raised)"""
        return store().clear_flag(organization_id, flag_id, reason=body["reason"], actor=current_principal().sub)


@sweeps_blp.route("")
class RiskSweeps(MethodView):
    @requires("officer")
    @sweeps_blp.arguments(SweepRequestSchema())
    @sweeps_blp.response(201, SweepSchema)
    def post(self, body):
        """Run the automatic risk rules as of a date (not after today). Idempotent by rule: a second sweep
        flags nothing already flagged. Answers what this sweep flagged and cleared."""
        return store().sweep(body["as_of"], actor=current_principal().sub, idempotency=idempotency_key(body))


@public_blp.route("")
class PublicOrganizations(MethodView):
    @public_blp.arguments(PublicSearchArgs(), location="query")
    @public_blp.response(200, page_of(PublicOrganizationSchema))
    def get(self, args):
        """Search the public register (no token): registered and deregistered organizations"""
        items, total = store().search(args.get("q"), filters_of(args, statuses=PUBLIC_STATUSES), args)
        return page_response(items, total, args)


@public_blp.route("/<uscc>")
class PublicOrganization(MethodView):
    @public_blp.response(200, PublicOrganizationSchema)
    def get(self, uscc):
        """One organization of the public register, by its unified social credit code"""
        return store().get_public(uscc)


@renewals_blp.route("")
class RenewalsToDecide(MethodView):
    @requires("officer")
    @renewals_blp.arguments(RenewalListArgs(), location="query")
    @renewals_blp.response(200, page_of(RenewalSchema))
    def get(self, args):
        """Term renewals across organizations by status (`submitted`, the default: those waiting for a decision),
        oldest filed first, each with its organization's name"""
        return page_response(*store().renewals_by_status(args), args)
