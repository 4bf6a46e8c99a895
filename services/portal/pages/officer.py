"""Officer pages: pending applications, organization search, the risk dashboard and sweeps, award rounds
(reviewers, assignment, closing, the leaderboard with spread and disagreement, awards), the fund dashboard
and the park's occupancy."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext

from services.portal import charts, forms
from services.portal.backend import ApiError, new_idempotency_key
from services.portal.i18n import N_
from services.portal.web import (back_to, backend, district_today, flash_and_go, optional, page_number, post_form,
                                 render_form, role_required)

blp = Blueprint("officer", __name__, url_prefix="/officer")
PER_PAGE = 20
ORGANIZATION_ID_PREFIX = "org_"  # the registry's ids (services/registry/domain.py, new_organization_id)


def api_failure_flash(problem: ApiError) -> None:
    flash(problem.detail, "error")


def naming_organizations(parse, field: str = "organization_id"):
    """`parse` for a form whose `field` an officer fills in with what it knows of an organization (or, for a
    list, of each): its unified social credit code, its exact name, or its id. The services want ids; a code or a
    name is looked up among registered organizations (the registry's search)."""
    def parse_and_find(form):
        body, errors = parse(form)
        value = body.get(field)
        if errors.get(field) or not value:
            return body, errors
        several = isinstance(value, list)
        ids = []
        for typed in (value if several else [value]):
            found, problem = organization_id_of(typed.strip())
            if problem:
                errors.setdefault(field, []).append(f"{typed}: {gettext(problem)}" if several else problem)
            ids.append(found)
        body[field] = ids if several else ids[0]
        return body, errors

    return parse_and_find


def organization_id_of(typed: str) -> tuple[str | None, str | None]:
    """The id of the registered organization `typed` names, or None and why not (a msgid)."""
    if typed.startswith(ORGANIZATION_ID_PREFIX):
        return typed, None
    found = optional(lambda: backend().registry.get("/api/v1/organizations", q=typed, status="registered",
                                                    per_page=5)["items"], 422, default=[])  # 422: too long a text
    exact = [o for o in found if typed.upper() == (o.get("uscc") or "") or typed == o.get("name")]
    chosen = exact if exact else found
    if len(chosen) == 1:
        return chosen[0]["id"], None
    if not chosen:
        return None, N_("no registered organization has this code or name")
    return None, N_("several registered organizations match; type the whole code or the whole name")


@blp.get("")
@role_required("officer")
def home():
    registry = backend().registry
    pending = registry.get("/api/v1/organizations", status="submitted", per_page=1)
    flagged = {risk: registry.get("/api/v1/organizations", risk=risk, per_page=1)["total"]
               for risk in forms.RISK_LISTS}
    renewals = optional(lambda: registry.get("/api/v1/term-renewals", per_page=1)["total"], 403, 404, 405)
    return render_template("officer/home.html", pending=pending["total"], flagged=flagged, renewals=renewals)


# -- applications --------------------------------------------------------------------------------------
@blp.get("/applications")
@role_required("officer")
def applications():
    return applications_page()


def applications_page(**shown):
    """The pending applications and the term renewals waiting; `shown`: a rejection form shown again with its
    errors (`rejecting`, `values`, `errors`, `labels`)."""
    page = backend().registry.get("/api/v1/organizations", status="submitted", page=page_number(), per_page=PER_PAGE)
    return render_form("officer/applications.html", page=page, renewals=waiting_renewals(), **shown)


def waiting_renewals() -> list[dict]:
    """Term renewals waiting for a decision, oldest filed first (each is decided on its organization's page)."""
    return optional(lambda: backend().registry.get("/api/v1/term-renewals", per_page=100)["items"],
                    403, 404, 405, default=[])


@blp.post("/organizations/<organization_id>/approve")
@role_required("officer")
def approve(organization_id):
    try:
        organization = backend().registry.post(f"/api/v1/organizations/{organization_id}/approve")
        flash(gettext("%(name)s registered with USCC %(uscc)s.", name=organization.get("name", ""),
                      uscc=organization.get("uscc", "")), "success")
    except ApiError as problem:
        if problem.status >= 500:
            raise
        api_failure_flash(problem)
    return redirect(request.form.get("back") or url_for("officer.applications"))


@blp.post("/organizations/<organization_id>/reject")
@role_required("officer")
def reject(organization_id):
    if request.form.get("from") == "organization":  # the organization's own page: back to it
        return organization_action(organization_id, "reject", forms.reason_body, gettext("Application rejected."),
                                   form="reject")
    body, errors = forms.reason_body(request.form)
    if errors:
        return applications_page(errors=errors, rejecting=organization_id, values=request.form,
                                 labels={"reason": N_("Reason for rejection")})
    try:
        backend().registry.post(f"/api/v1/organizations/{organization_id}/reject", body)
        flash(gettext("Application rejected."), "success")
    except ApiError as problem:
        if problem.status >= 500:
            raise
        api_failure_flash(problem)
    return back_to("officer.applications")


# -- organizations -------------------------------------------------------------------------------------
SEARCH_FILTERS = ("q", "status", "type", "risk")


@blp.get("/organizations")
@role_required("officer")
def organizations():
    filters = {name: request.args.get(name, "").strip() for name in SEARCH_FILTERS}
    try:
        page = backend().registry.get("/api/v1/organizations", page=page_number(), per_page=PER_PAGE, **filters)
        problem = None
    except ApiError as error:
        if error.status != 422:
            raise
        page, problem = {"items": [], "total": 0, "page": 1, "per_page": PER_PAGE}, error
    return render_template("officer/organizations.html", page=page, filters=filters, problem=problem,
                           types=forms.ORGANIZATION_TYPES, risks=("none", *forms.RISK_LISTS))


def organization_page(organization_id: str, *, errors=None, values=None, problem=None, form: str | None = None):
    """The organization, its council, flags and renewals, and the officer's actions; `form` names the action
    whose form shows `values` and `errors` (a flag's when None)."""
    registry = backend().registry
    organization = registry.get(f"/api/v1/organizations/{organization_id}")
    flags = optional(lambda: registry.get(f"/api/v1/organizations/{organization_id}/risk-flags", per_page=100),
                     404, 405, default={"items": []})
    renewals = optional(lambda: registry.get(f"/api/v1/organizations/{organization_id}/term-renewals",
                                             per_page=100), 404, 405, default=None)
    return render_form("officer/organization.html", organization=organization, flags=flags["items"],
                       renewals=renewals, errors=errors, values=values or {}, problem=problem, form=form,
                       lists=forms.RISK_LISTS, labels={"list": N_("List"), "reason": N_("Reason")})


@blp.get("/organizations/<organization_id>")
@role_required("officer")
def organization(organization_id):
    return organization_page(organization_id)


def organization_action(organization_id: str, path: str, body_of, done: str, *, form: str | None = None):
    return post_form(body_of, lambda body: backend().registry.post(f"/api/v1/organizations/{organization_id}/{path}", body),
                     lambda **shown: organization_page(organization_id, values=request.form, form=form, **shown),
                     lambda _: flash_and_go(done, "officer.organization", organization_id=organization_id))


@blp.post("/organizations/<organization_id>/flags")
@role_required("officer")
def raise_flag(organization_id):
    return organization_action(organization_id, "risk-flags", forms.flag_body, gettext("Risk flag raised."))


@blp.post("/organizations/<organization_id>/flags/<flag_id>/clear")
@role_required("officer")
def clear_flag(organization_id, flag_id):
    return organization_action(organization_id, f"risk-flags/{flag_id}/clear", forms.reason_body,
                               gettext("Risk flag cleared."))


@blp.post("/organizations/<organization_id>/renewals/<renewal_id>/approve")
@role_required("officer")
def approve_renewal(organization_id, renewal_id):
    return organization_action(organization_id, f"term-renewals/{renewal_id}/approve", None,
                               gettext("Term renewal approved: the new term has started."))


@blp.post("/organizations/<organization_id>/renewals/<renewal_id>/reject")
@role_required("officer")
def reject_renewal(organization_id, renewal_id):
    return organization_action(organization_id, f"term-renewals/{renewal_id}/reject", forms.reason_body,
                               gettext("Term renewal rejected."), form="reject-renewal")


@blp.post("/organizations/<organization_id>/deregister")
@role_required("officer")
def deregister(organization_id):
    return organization_action(organization_id, "deregister", forms.reason_body,
                               gettext("Organization deregistered."), form="deregister")


# -- risk ----------------------------------------------------------------------------------------------
def risk_page(*, sweep=None, values=None, errors=None, problem=None):
    registry = backend().registry
    flagged = {risk: registry.get("/api/v1/organizations", risk=risk, per_page=100) for risk in forms.RISK_LISTS}
    values = values or {"as_of": district_today().isoformat()}
    return render_form("officer/risk.html", flagged=flagged, sweep=sweep, values=values, errors=errors,
                       problem=problem, labels={"as_of": N_("As of")})


@blp.get("/risk")
@role_required("officer")
def risk():
    return risk_page()


@blp.post("/risk")
@role_required("officer")
def run_sweep():
    return post_form(forms.sweep_body, lambda body: backend().registry.post("/api/v1/risk-sweeps", body),
                     lambda **shown: risk_page(values=request.form, **shown),
                     lambda sweep: risk_page(sweep=sweep_summary(sweep), values=request.form))


def sweep_summary(sweep: dict) -> dict:
    """The sweep's answer as two lists, whatever names the registry gives them (`flagged`/`cleared`)."""
    def items(name):
        value = sweep.get(name) or []
        return value.get("items", []) if isinstance(value, dict) else value
    return {"as_of": sweep.get("as_of"), "flagged": items("flagged"), "cleared": items("cleared"),
            "raw": sweep}


# -- rounds --------------------------------------------------------------------------------------------
ROUND_LABELS = {"name": N_("Round name"), "year": N_("Year"), "aggregation": N_("Aggregation"),
                "reviewers_per_project": N_("Reviewers per project"), "closes_at": N_("Closes at (Shanghai time)"),
                "criteria": N_("Criteria"), "criteria.*.key": N_("Criterion key"),
                "criteria.*.label": N_("Criterion label"), "criteria.*.weight": N_("Weight"),
                "criteria.*.max_score": N_("Maximum score")}
DEFAULT_CRITERIA = (("impact", "社会效益", "0.4", "10"), ("innovation", "创新性", "0.3", "10"),
                    ("feasibility", "可行性", "0.3", "10"))


def rounds_page(values=None, errors=None, problem=None):
    rounds = backend().evaluation.get("/api/v1/rounds", per_page=100)
    if values is None:
        values = {"idempotency_key": new_idempotency_key(), "year": str(district_today().year), "aggregation": "mean",
                  "reviewers_per_project": "2"}
        for index, (key, label, weight, maximum) in enumerate(DEFAULT_CRITERIA):
            values.update({f"criteria.{index}.key": key, f"criteria.{index}.label": label,
                           f"criteria.{index}.weight": weight, f"criteria.{index}.max_score": maximum})
    return render_form("officer/rounds.html", rounds=rounds, values=values, errors=errors, problem=problem,
                       labels=ROUND_LABELS, aggregations=forms.AGGREGATIONS, criteria_rows=range(5))


@blp.get("/rounds")
@role_required("officer")
def rounds():
    return rounds_page()


@blp.post("/rounds")
@role_required("officer")
def create_round():
    return post_form(forms.round_body,
                     lambda body: backend().evaluation.post("/api/v1/rounds", body,
                                                            idempotency_key=request.form.get("idempotency_key")),
                     lambda **shown: rounds_page(request.form, **shown),
                     lambda created: flash_and_go(gettext("Round created."), "officer.round_detail",
                                                  round_id=created["id"]))


REVIEWER_LABELS = {"reviewer": N_("Reviewer id"), "name": N_("Reviewer name"),
                   "affiliations": N_("Affiliated organizations (comma-separated)")}


def round_page(round_id: str, *, form: str | None = None, values=None, errors=None, problem=None):
    api = backend().evaluation
    round_ = api.get(f"/api/v1/rounds/{round_id}")
    projects = optional(lambda: api.get(f"/api/v1/rounds/{round_id}/projects", per_page=100), 403, 404, 405)
    reviewers = optional(lambda: api.get(f"/api/v1/rounds/{round_id}/reviewers", per_page=100), 403, 404, 405)
    assignments = optional(lambda: api.get(f"/api/v1/rounds/{round_id}/assignments", per_page=100), 403, 404, 405)
    results = optional(lambda: api.get(f"/api/v1/rounds/{round_id}/results", per_page=100), 409)
    funds = optional(lambda: backend().fund.get("/api/v1/funds", per_page=100), 403, 404, 405,
                     default={"items": []})
    chart = None
    if results:
        scores = [r["score"] for r in results.get("items", []) if r.get("score") is not None]
        chart = charts.histogram(scores, title=gettext("Distribution of project scores"))
    return render_form("officer/round.html", round=round_, projects=projects, reviewers=reviewers,
                       assignments=assignments, results=results, chart=chart, funds=funds["items"], form=form,
                       values=values or {"idempotency_key": new_idempotency_key()}, errors=errors, problem=problem,
                       labels=REVIEWER_LABELS | {"awards": N_("Awards"), "awards.*.prize_yuan": N_("Prize (yuan)"),
                                                 "awards.*.tier": N_("Tier")})


@blp.get("/rounds/<round_id>")
@role_required("officer")
def round_detail(round_id):
    return round_page(round_id)


def round_action(round_id: str, path: str, body_of, which: str, done: str, *, idempotent: bool = False):
    key = request.form.get("idempotency_key") if idempotent else None
    return post_form(body_of,
                     lambda body: backend().evaluation.post(f"/api/v1/rounds/{round_id}/{path}", body,
                                                            idempotency_key=key),
                     lambda **shown: round_page(round_id, form=which, values=request.form, **shown),
                     lambda _: flash_and_go(done, "officer.round_detail", round_id=round_id))


@blp.post("/rounds/<round_id>/reviewers")
@role_required("officer")
def add_reviewer(round_id):
    return round_action(round_id, "reviewers", naming_organizations(forms.reviewer_body, "affiliations"), "reviewer",
                        gettext("Reviewer added."))


@blp.post("/rounds/<round_id>/assignments")
@role_required("officer")
def assign(round_id):
    return round_action(round_id, "assignments", None, "assign", gettext("Reviewers assigned to every project."))


@blp.post("/rounds/<round_id>/close")
@role_required("officer")
def close_round(round_id):
    return round_action(round_id, "close", None, "close", gettext("Round closed: the results are final."))


@blp.post("/rounds/<round_id>/awards")
@role_required("officer")
def award(round_id):
    return round_action(round_id, "awards", forms.awards_body, "awards", gettext("Awards granted."), idempotent=True)


# -- fund ----------------------------------------------------------------------------------------------
FUND_LABELS = {"name": N_("Fund name"), "year": N_("Year"), "budget_yuan": N_("Budget (yuan)")}
GRANT_LABELS = {"organization_id": N_("Organization"), "title": N_("Grant title"),
                "amount_yuan": N_("Amount (yuan)"), "tranches": N_("Tranches (percent, comma-separated)")}
CLAWBACK_LABELS = {"reason": N_("Reason")}


def funds_page(values=None, errors=None, problem=None):
    funds = backend().fund.get("/api/v1/funds", per_page=100)
    values = values or {"idempotency_key": new_idempotency_key(), "year": str(district_today().year)}
    return render_form("officer/funds.html", funds=funds, values=values, errors=errors, problem=problem,
                       labels=FUND_LABELS)


@blp.get("/funds")
@role_required("officer")
def funds():
    return funds_page()


@blp.post("/funds")
@role_required("officer")
def create_fund():
    return post_form(forms.fund_body,
                     lambda body: backend().fund.post("/api/v1/funds", body,
                                                      idempotency_key=request.form.get("idempotency_key")),
                     lambda **shown: funds_page(request.form, **shown),
                     lambda created: flash_and_go(gettext("Fund opened."), "officer.fund", fund_id=created["id"]))


def fund_chart(fund: dict):
    bars = [charts.Bar(gettext("Budget"), fund.get("budget_fen", 0), "¥" + forms.format_yuan(fund.get("budget_fen")),
                       "bar bar-budget"),
            charts.Bar(gettext("Committed"), fund.get("committed_fen", 0),
                       "¥" + forms.format_yuan(fund.get("committed_fen")), "bar bar-committed"),
            charts.Bar(gettext("Disbursed"), fund.get("disbursed_fen", 0),
                       "¥" + forms.format_yuan(fund.get("disbursed_fen")), "bar bar-disbursed"),
            charts.Bar(gettext("Available"), fund.get("available_fen", 0),
                       "¥" + forms.format_yuan(fund.get("available_fen")), "bar bar-available")]
    return charts.horizontal_bars(bars, title=gettext("Budget, committed, disbursed and available"))


def fund_page(fund_id: str, *, values=None, errors=None, problem=None, form: str = "grant"):
    """The fund, its grants and held tranches, and the officer's forms; `form` names the one that shows `values`
    and `errors`: "grant" (commit a grant) or "clawback:<grant id>"."""
    api = backend().fund
    fund_ = api.get(f"/api/v1/funds/{fund_id}")
    grants = api.get(f"/api/v1/funds/{fund_id}/grants", per_page=100)
    held = [{**d, "grant": g} for g in grants.get("items", []) for d in g.get("disbursements", [])
            if d.get("status") == "held"]
    new_grant = {"idempotency_key": new_idempotency_key(), "tranches": "100"}
    return render_form("officer/fund.html", fund=fund_, chart=fund_chart(fund_), grants=grants, held=held,
                       values=values or new_grant, errors=errors, problem=problem, form=form, new_grant=new_grant,
                       labels=GRANT_LABELS | CLAWBACK_LABELS, pay_key=new_idempotency_key)


@blp.get("/funds/<fund_id>")
@role_required("officer")
def fund(fund_id):
    return fund_page(fund_id)


@blp.post("/funds/<fund_id>/grants")
@role_required("officer")
def create_grant(fund_id):
    return post_form(naming_organizations(forms.grant_body),
                     lambda body: backend().fund.post(f"/api/v1/funds/{fund_id}/grants", body,
                                                      idempotency_key=request.form.get("idempotency_key")),
                     lambda **shown: fund_page(fund_id, values=request.form, **shown),
                     lambda _: flash_and_go(gettext("Grant committed."), "officer.fund", fund_id=fund_id))


@blp.post("/funds/<fund_id>/grants/<grant_id>/clawbacks")
@role_required("officer")
def claw_back(fund_id, grant_id):
    return post_form(forms.clawback_body,
                     lambda body: backend().fund.post(f"/api/v1/grants/{grant_id}/clawbacks", body,
                                                      idempotency_key=request.form.get("idempotency_key")),
                     lambda **shown: fund_page(fund_id, values=request.form, form=f"clawback:{grant_id}", **shown),
                     lambda _: flash_and_go(gettext("Clawback recorded: the amount is back in the fund."),
                                            "officer.fund", fund_id=fund_id))


@blp.post("/funds/<fund_id>/grants/<grant_id>/disburse")
@role_required("officer")
def disburse(fund_id, grant_id):
    try:
        paid = backend().fund.post(f"/api/v1/grants/{grant_id}/disbursements", {},
                                   idempotency_key=request.form.get("idempotency_key") or new_idempotency_key())
    except ApiError as problem:
        if problem.status >= 500:
            raise
        api_failure_flash(problem)
        return back_to("officer.fund", fund_id=fund_id)
    if paid.get("status") == "held":
        flash(gettext("Tranche %(n)s is held while the organization is on the abnormal list.",
                      n=paid.get("tranche")), "warning")
    else:
        flash(gettext("Tranche %(n)s paid: %(amount)s.", n=paid.get("tranche"),
                      amount="¥" + forms.format_yuan(paid.get("amount_fen"))), "success")
    return back_to("officer.fund", fund_id=fund_id)


# -- park ----------------------------------------------------------------------------------------------
PARK_LABELS = {"code": N_("Unit code"), "area_m2": N_("Area (m²)"), "organization_id": N_("Organization"),
               "unit": N_("Unit code"), "start": N_("Start date"), "years": N_("Years")}


def park_page(*, form=None, values=None, errors=None, problem=None):
    api = backend().fund
    occupancy = api.get("/api/v1/park/occupancy")
    units = api.get("/api/v1/park/units", per_page=100)
    residencies = api.get("/api/v1/park/residencies", status="active", per_page=100)
    chart = charts.horizontal_bars(
        [charts.Bar(gettext("Occupied"), occupancy.get("occupied", 0), str(occupancy.get("occupied", 0)),
                    "bar bar-committed"),
         charts.Bar(gettext("Free"), occupancy.get("free", 0), str(occupancy.get("free", 0)), "bar bar-available")],
        title=gettext("Park occupancy"))
    return render_form("officer/park.html", occupancy=occupancy, units=units, residencies=residencies, chart=chart,
                       form=form, values=values or {"start": district_today().isoformat(), "years": "3"}, errors=errors,
                       problem=problem, labels=PARK_LABELS)


@blp.get("/park")
@role_required("officer")
def park():
    return park_page()


def park_action(path: str, body_of, which: str, done: str):
    return post_form(body_of, lambda body: backend().fund.post(f"/api/v1/park/{path}", body),
                     lambda **shown: park_page(form=which, values=request.form, **shown),
                     lambda _: flash_and_go(done, "officer.park"))


@blp.post("/park/units")
@role_required("officer")
def add_unit():
    return park_action("units", forms.unit_body, "unit", gettext("Unit added."))


@blp.post("/park/residencies")
@role_required("officer")
def add_residency():
    return park_action("residencies", naming_organizations(forms.residency_body), "residency",
                       gettext("Residency started."))


@blp.post("/park/residencies/<residency_id>/graduate")
@role_required("officer")
def graduate(residency_id):
    return park_action(f"residencies/{residency_id}/graduate", None, "graduate", gettext("Graduated (出壳)."))
