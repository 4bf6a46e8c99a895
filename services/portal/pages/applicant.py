"""Applicant pages: apply online, follow the organization (status, USCC, term, risk flags and what clears
them), file term renewals and annual reports, and enter projects into open rounds."""

from __future__ import annotations

from flask import Blueprint, render_template, request, session
from flask_babel import gettext

from services.portal import forms
from services.portal.backend import ApiError, new_idempotency_key
from services.portal.guidance import advice_for
from services.portal.i18n import N_
from services.portal.pages.auth import act_for
from services.portal.web import (backend, current_user, district_today, flash_and_go, optional, post_form,
                                 render_form, role_required)

blp = Blueprint("applicant", __name__, url_prefix="/applicant")
COUNCIL_ROWS = 5

APPLY_LABELS = {
    "name": N_("Organization name"), "type": N_("Organization type"), "domain": N_("Field of work"),
    "address": N_("Address"), "legal_representative.name": N_("Legal representative"),
    "legal_representative.id_number": N_("Legal representative's resident ID number"),
    "contact.phone": N_("Contact phone"), "contact.email": N_("Contact e-mail"),
    "registered_funds_yuan": N_("Registered funds (yuan)"), "members.individuals": N_("Individual members"),
    "members.units": N_("Unit members"), "supervisor_unit": N_("Supervising unit (optional)"),
    "council": N_("Council"), "council.*.name": N_("Council member name"), "council.*.role": N_("Council role"),
    "term_years": N_("Term (years)"),
}
RENEWAL_LABELS = {"election_date": N_("Election date"), "term_years": N_("Term (years)"), "council": N_("Council"),
                  "council.*.name": N_("Council member name"), "council.*.role": N_("Council role")}
REPORT_LABELS = {"year": N_("Year"), "income_yuan": N_("Income (yuan)"), "expenditure_yuan": N_("Expenditure (yuan)"),
                 "net_assets_yuan": N_("Net assets (yuan)")}
PROJECT_LABELS = {"organization_id": N_("Organization"), "title": N_("Project title"), "summary": N_("Summary"),
                  "budget_yuan": N_("Budget (yuan)")}


def remember_organization(organization_id: str) -> None:
    known = session.get("orgs", [])
    if organization_id not in known:
        session["orgs"] = [*known, organization_id][-20:]


def my_organizations() -> list[dict]:
    """The organizations this applicant acts for: the registry's list if it serves applicants, else the ones
    named by the token or filed in this session."""
    api = backend().registry
    try:
        return api.get("/api/v1/organizations", per_page=100).get("items", [])
    except ApiError as error:
        if error.status not in (403, 404, 405):
            raise
    user = current_user()
    ids = [i for i in [user.org, *session.get("orgs", [])] if i]
    found = []
    for organization_id in dict.fromkeys(ids):
        try:
            found.append(api.get(f"/api/v1/organizations/{organization_id}"))
        except ApiError as error:
            if error.status != 404:
                raise
    return found


def open_rounds() -> tuple[list[dict], bool]:
    """Rounds open for entries, and whether the evaluation service could list them."""
    try:
        return backend().evaluation.get("/api/v1/rounds", status="open", per_page=100).get("items", []), True
    except ApiError as error:
        if error.status in (403, 404, 405):
            return [], False
        raise


@blp.get("")
@role_required("applicant")
def home():
    rounds, rounds_listed = open_rounds()
    for round_ in rounds:  # what this applicant's organizations entered in each, with its status
        round_["mine"] = optional(lambda: backend().evaluation.get(f"/api/v1/rounds/{round_['id']}/projects",
                                                                   per_page=100)["items"], 403, 404, default=[])
    return render_template("applicant/home.html", organizations=my_organizations(), rounds=rounds,
                           rounds_listed=rounds_listed, outcomes=my_outcomes())


def my_outcomes() -> list[dict]:
    """The results of this applicant's projects in finished rounds (the evaluation answers an applicant with its
    own projects only), newest round first, each with its award if it won one."""
    evaluation = backend().evaluation
    outcomes = []
    for status in ("awarded", "closed"):
        finished = optional(lambda: evaluation.get("/api/v1/rounds", status=status, per_page=20)["items"],
                            403, 404, default=[])
        for round_ in finished:
            results = optional(lambda: evaluation.get(f"/api/v1/rounds/{round_['id']}/results",
                                                      per_page=100)["items"], 403, 404, 409, default=[])
            if not results:
                continue
            awards = {} if status != "awarded" else {
                award["project_id"]: award for award in optional(
                    lambda: evaluation.get(f"/api/v1/rounds/{round_['id']}/awards", per_page=100)["items"],
                    403, 404, default=[])}
            outcomes += [{"round": round_, "result": result, "award": awards.get(result["project_id"])}
                         for result in results]
    return sorted(outcomes, key=lambda outcome: outcome["round"].get("year", 0), reverse=True)


# -- apply ---------------------------------------------------------------------------------------------
def apply_page(values, errors=None, problem=None):
    return render_form("applicant/apply.html", values=values, errors=errors, problem=problem, labels=APPLY_LABELS,
                       council_rows=council_rows(values), types=forms.ORGANIZATION_TYPES, roles=forms.COUNCIL_ROLES)


def council_rows(values) -> list[int]:
    filled = forms.row_indexes(values, "council")
    return list(range(max(COUNCIL_ROWS, (max(filled) + 1) if filled else 0)))


@blp.get("/apply")
@role_required("applicant")
def apply():
    return apply_page({"idempotency_key": new_idempotency_key(), "council.0.role": "chair", "term_years": "5"})


@blp.post("/apply")
@role_required("applicant")
def apply_submit():
    def submitted(organization):
        remember_organization(organization["id"])
        act_for(organization["id"])
        return flash_and_go(gettext("Application submitted. The bureau will review it."), "applicant.organization",
                            organization_id=organization["id"])

    return post_form(forms.application_body,
                     lambda body: backend().registry.post("/api/v1/organizations", body,
                                                          idempotency_key=request.form.get("idempotency_key")),
                     lambda **shown: apply_page(request.form, **shown), submitted)


# -- one organization ----------------------------------------------------------------------------------
def risk_flags(organization_id: str) -> list[dict] | None:
    """Active flags with advice; None when the registry does not show them to applicants."""
    page = optional(lambda: backend().registry.get(f"/api/v1/organizations/{organization_id}/risk-flags",
                                                   per_page=100), 403, 404, 405)
    if page is None:
        return None
    return [{**flag, "advice": advice_for(flag)} for flag in page.get("items", []) if flag.get("active", True)]


def organization_page(organization_id: str, *, renewal=None, report=None, status: int = 200):
    """The organization with both filing forms; `renewal`/`report` are (values, errors, problem) to re-show."""
    organization = backend().registry.get(f"/api/v1/organizations/{organization_id}")
    remember_organization(organization_id)
    renewal_values, renewal_errors, renewal_problem = renewal or (
        {"idempotency_key": new_idempotency_key(), "council.0.role": "chair", "term_years": "5"}, {}, None)
    report_values, report_errors, report_problem = report or (
        {"idempotency_key": new_idempotency_key(), "year": str(district_today().year - 1)}, {}, None)
    for problem, errors in ((renewal_problem, renewal_errors), (report_problem, report_errors)):
        if problem is not None:
            errors.update(forms.errors_for_form(problem.errors))
            status = problem.status
    if renewal_errors or report_errors:
        status = status if status != 200 else 422
    renewals = optional(lambda: backend().registry.get(f"/api/v1/organizations/{organization_id}/term-renewals",
                                                       per_page=20)["items"], 403, 404, 405, default=[])
    return render_template(
        "applicant/organization.html", organization=organization, flags=risk_flags(organization_id),
        renewals=renewals,
        renewal={"values": renewal_values, "errors": renewal_errors, "problem": renewal_problem,
                 "labels": RENEWAL_LABELS, "rows": council_rows(renewal_values)},
        report={"values": report_values, "errors": report_errors, "problem": report_problem, "labels": REPORT_LABELS},
        roles=forms.COUNCIL_ROLES), status


@blp.get("/organizations/<organization_id>")
@role_required("applicant")
def organization(organization_id):
    return organization_page(organization_id)


def _file(organization_id: str, path: str, body_of, which: str, done_message: str):
    def again(errors=None, problem=None):  # the form `which` shown again with what was typed
        return organization_page(organization_id, **{which: (request.form.to_dict(), errors or {}, problem)})

    return post_form(body_of,
                     lambda body: backend().registry.post(f"/api/v1/organizations/{organization_id}/{path}", body,
                                                          idempotency_key=request.form.get("idempotency_key")),
                     again, lambda _: flash_and_go(done_message, "applicant.organization", organization_id=organization_id))


@blp.post("/organizations/<organization_id>/renewals")
@role_required("applicant")
def file_renewal(organization_id):
    return _file(organization_id, "term-renewals", forms.renewal_body, "renewal",
                 gettext("Term renewal filed. The bureau will review it."))


@blp.post("/organizations/<organization_id>/annual-reports")
@role_required("applicant")
def file_annual_report(organization_id):
    return _file(organization_id, "annual-reports", forms.annual_report_body, "report",
                 gettext("Annual report filed."))


# -- projects ------------------------------------------------------------------------------------------
def enter_page(round_, values, errors=None, problem=None):
    registered = [o for o in my_organizations() if o.get("status") == "registered"]
    return render_form("applicant/enter.html", round=round_, organizations=registered, values=values,
                       errors=errors, problem=problem, labels=PROJECT_LABELS)


@blp.get("/rounds/<round_id>/enter")
@role_required("applicant")
def enter(round_id):
    round_ = backend().evaluation.get(f"/api/v1/rounds/{round_id}")
    return enter_page(round_, {"idempotency_key": new_idempotency_key(), "organization_id": current_user().org or ""})


@blp.post("/rounds/<round_id>/enter")
@role_required("applicant")
def enter_submit(round_id):
    api = backend().evaluation
    round_ = api.get(f"/api/v1/rounds/{round_id}")
    return post_form(forms.project_body,
                     lambda body: api.post(f"/api/v1/rounds/{round_id}/projects", body,
                                           idempotency_key=request.form.get("idempotency_key")),
                     lambda **shown: enter_page(round_, request.form, **shown),
                     lambda project: flash_and_go(gettext("Project “%(title)s” entered into %(round)s.",
                                                          title=project.get("title", ""), round=round_.get("name", "")),
                                                  "applicant.home"))
