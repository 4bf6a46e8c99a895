"""The registry's HTTP API: thin views that parse, check the role and call the store."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from services.registry.schemas import ApplicationSchema, OrganizationSchema
from shared.auth import current_principal, requires
from shared.errors import NotFound
from shared.web import idempotency_key, store

blp = Blueprint("organizations", __name__, url_prefix="/api/v1/organizations",
                description="Apply online, approve and follow social organizations")


def visible_to_caller(organization: dict) -> dict:
    """Applicants see only their own organization; to others it does not exist (404, not 403)."""
    principal = current_principal()
    if principal.role == "applicant" and principal.org != organization["_id"] \
            and organization.get("applicant") != principal.sub:
        raise NotFound(f"no organization {organization['_id']}")
    return organization


@blp.route("")
class Organizations(MethodView):
    @requires("applicant")
    @blp.arguments(ApplicationSchema)
    @blp.response(201, OrganizationSchema)
    def post(self, application):
        """Apply online for registration"""
        return store().submit(application, applicant=current_principal().sub,
                              idempotency=idempotency_key(application))


@blp.route("/<organization_id>")
class OrganizationById(MethodView):
    @requires("applicant", "officer")
    @blp.response(200, OrganizationSchema)
    def get(self, organization_id):
        """One organization (applicants: only their own)"""
        return visible_to_caller(store().get(organization_id))


@blp.route("/<organization_id>/approve")
class Approve(MethodView):
    @requires("officer")
    @blp.response(200, OrganizationSchema)
    def post(self, organization_id):
        """Approve a submitted application: assigns the USCC and starts the term"""
        return store().approve(organization_id, actor=current_principal().sub)
