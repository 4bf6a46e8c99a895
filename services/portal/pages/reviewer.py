"""Reviewer pages: assigned projects with progress, a scoring form per criterion (maximum and weight shown),
declaring a conflict, saving and coming back, and a round's results once it is closed."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_babel import gettext

from services.portal import forms
from services.portal.i18n import N_
from services.portal.web import backend, current_user, flash_and_go, optional, post_form, render_form, role_required

blp = Blueprint("reviewer", __name__, url_prefix="/reviewer")


def my_review(round_id: str, project_id: str) -> dict | None:
    return optional(lambda: backend().evaluation.get(f"/api/v1/rounds/{round_id}/projects/{project_id}/scores"),
                    403, 404, 405)


def assignments_of(round_: dict) -> list[dict]:
    """This reviewer's assignments in a round, each with whether it is scored yet."""
    api = backend().evaluation
    page = api.get(f"/api/v1/rounds/{round_['id']}/assignments", reviewer=current_user().sub, per_page=100)
    items = []
    for assignment in page.get("items", []):
        if assignment.get("status", "active") != "active":
            continue
        scored = assignment.get("scored")
        if scored is None:  # the list does not say: ask for the review itself
            scored = my_review(round_["id"], assignment["project_id"]) is not None
        items.append({**assignment, "scored": bool(scored)})
    return items


@blp.get("")
@role_required("reviewer")
def home():
    rounds = optional(lambda: backend().evaluation.get("/api/v1/rounds", per_page=100), 403, 404, 405,
                      default={"items": []})["items"]
    work = []
    for round_ in rounds:
        assignments = optional(lambda: assignments_of(round_), 403, 404, default=[])
        if assignments or round_.get("status") != "open":
            done = sum(1 for a in assignments if a["scored"])
            work.append({"round": round_, "assignments": assignments, "done": done,
                         "percent": round(100 * done / len(assignments)) if assignments else 0})
    work = [w for w in work if w["assignments"]]
    return render_template("reviewer/home.html", work=work)


def score_page(round_id: str, project_id: str, *, values=None, errors=None, problem=None):
    api = backend().evaluation
    round_ = api.get(f"/api/v1/rounds/{round_id}")
    project = optional(lambda: api.get(f"/api/v1/rounds/{round_id}/projects/{project_id}"), 403, 404, 405,
                       default={"id": project_id})
    review = my_review(round_id, project_id)
    if values is None:
        values = {"comment": (review or {}).get("comment", "")}
        for key, score in ((review or {}).get("scores") or {}).items():
            values[f"scores.{key}"] = score
    labels = {f"scores.{c['key']}": c.get("label") or c["key"] for c in round_.get("criteria", [])}
    labels.update({"comment": N_("Comment"), "conflict_comment": N_("Why you have a conflict of interest")})
    return render_form("reviewer/score.html", round=round_, project=project, review=review, values=values,
                       errors=errors, problem=problem, labels=labels)


@blp.get("/rounds/<round_id>/projects/<project_id>")
@role_required("reviewer")
def score(round_id, project_id):
    return score_page(round_id, project_id)


@blp.post("/rounds/<round_id>/projects/<project_id>")
@role_required("reviewer")
def score_submit(round_id, project_id):
    api = backend().evaluation
    conflict = request.form.get("action") == "conflict"
    criteria = [] if conflict else api.get(f"/api/v1/rounds/{round_id}").get("criteria", [])

    def parse(form):
        return forms.conflict_body(form) if conflict else forms.scores_body(form, criteria)

    def done(_):
        if conflict:
            return flash_and_go(gettext("Conflict of interest declared: the project will be given to another "
                                        "reviewer."), "reviewer.home")
        return flash_and_go(gettext("Scores saved. You can change them until the round closes."), "reviewer.score",
                            round_id=round_id, project_id=project_id)

    return post_form(parse, lambda body: api.put(f"/api/v1/rounds/{round_id}/projects/{project_id}/scores", body),
                     lambda **shown: score_page(round_id, project_id, values=request.form, **shown), done)


@blp.get("/rounds/<round_id>/results")
@role_required("reviewer")
def results(round_id):
    api = backend().evaluation
    round_ = api.get(f"/api/v1/rounds/{round_id}")
    results_page = optional(lambda: api.get(f"/api/v1/rounds/{round_id}/results", per_page=100), 409)
    return render_template("reviewer/results.html", round=round_, results=results_page)
