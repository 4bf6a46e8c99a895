"""The public register, without signing in: anyone can look an organization up by name or code and see its
registration and credit status (the registry's public API; credit information is public by law, and the API
gives no personal data)."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from services.portal import forms
from services.portal.backend import ApiError
from services.portal.web import backend, page_number

blp = Blueprint("public", __name__, url_prefix="/register")
PER_PAGE = 20
FILTERS = ("q", "status", "type", "risk")
PUBLIC_STATUSES = ("registered", "deregistered")  # what the public register holds


@blp.get("")
def search():
    filters = {name: request.args.get(name, "").strip() for name in FILTERS}
    page, problem = None, None
    if any(filters.values()):
        try:
            page = backend().registry.get("/api/v1/public/organizations", page=page_number(), per_page=PER_PAGE,
                                          **filters)
        except ApiError as error:
            if error.status != 422:
                raise
            problem = error
    return render_template("public/search.html", page=page, filters=filters, problem=problem,
                           statuses=PUBLIC_STATUSES, types=forms.ORGANIZATION_TYPES, risks=("none", *forms.RISK_LISTS))


@blp.get("/<uscc>")
def organization(uscc: str):
    # A code that is not valid is a 422 from the registry: for a reader it is an entry that does not exist.
    try:
        found = backend().registry.get(f"/api/v1/public/organizations/{uscc}")
    except ApiError as error:
        if error.status not in (404, 422):
            raise
        return render_template("public/organization.html", organization=None, uscc=uscc), 404
    return render_template("public/organization.html", organization=found, uscc=found["uscc"])
