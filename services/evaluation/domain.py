"""Brand-project award rules, pure: no Flask, no pymongo. Plain data in, plain data and Events out.

A round moves open -> closed -> awarded. While it is open (and before `closes_at`) eligible organizations
enter projects, the officer adds reviewers and assigns them, and assigned reviewers score. Closing
computes the results once (services/evaluation/scoring.py) and records a digest of every input, so anyone
can check later that the published ranking came from exactly those scores.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from shared.errors import Conflict, Forbidden, ValidationFailed
from shared.events import Event

from services.evaluation import scoring
from services.evaluation.assignment import AssignmentImpossible, assign, loads_of

if TYPE_CHECKING:  # shared.auth imports Flask, which the rules must not need
    from shared.auth import Principal

OPEN, CLOSED, AWARDED = "open", "closed", "awarded"
ENTERED, DISQUALIFIED = "entered", "disqualified"
ACTIVE, CONFLICT, WITHDRAWN = "active", "conflict", "withdrawn"  # assignment states
REGISTERED, DEREGISTERED = "registered", "deregistered"
NO_RISK, SERIOUS = "none", "serious"
RESULT_DISQUALIFIED = "disqualified"
ALGORITHM = "socorg-evaluation-results/1"  # names the result rules the digest was recorded under


@dataclass(frozen=True)
class Rules:
    """Award thresholds districts may set (DOMAIN.md defaults)."""

    timezone: str = "Asia/Shanghai"
    trim_min_reviews: int = 5
    min_reviews_share: float = 0.5
    disagreement_sd: float = 15.0

    @classmethod
    def from_settings(cls, settings) -> "Rules":
        return cls(timezone=settings.timezone, trim_min_reviews=settings.evaluation_trim_min_reviews,
                   min_reviews_share=settings.evaluation_min_reviews_share,
                   disagreement_sd=settings.evaluation_disagreement_sd)

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.timezone)

    def scoring_rules(self, round_: dict) -> scoring.ScoringRules:
        return scoring.ScoringRules(
            aggregation=round_["aggregation"], reviewers_per_project=round_["reviewers_per_project"],
            trim_min_reviews=self.trim_min_reviews, min_reviews_share=scoring.decimal_of(self.min_reviews_share),
            disagreement_sd=scoring.decimal_of(self.disagreement_sd))


# -- the officers' decisions that change no other aggregate still go to the outbox: the audit trail is read there
def round_opened(round_: dict, actor: str) -> Event:
    return Event(type="evaluation.round.opened", subject=round_["_id"], key=round_["_id"], data={
        "actor": actor, "round_id": round_["_id"], "name": round_["name"], "year": round_["year"],
        "aggregation": round_["aggregation"], "reviewers_per_project": round_["reviewers_per_project"],
        "closes_at": round_["closes_at"].isoformat()})


def reviewer_added(reviewer: dict, actor: str) -> Event:
    return Event(type="evaluation.reviewer.added", subject=reviewer["round_id"], key=reviewer["round_id"], data={
        "actor": actor, "round_id": reviewer["round_id"], "reviewer": reviewer["reviewer"],
        "affiliations": reviewer["affiliations"]})


def assignments_made(round_id: str, summary: dict, actor: str) -> Event:
    return Event(type="evaluation.round.assigned", subject=round_id, key=round_id, data={
        "actor": actor, "round_id": round_id,
        **{name: summary[name] for name in ("projects", "reviewers", "assignments", "added", "removed")}})


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def assignment_id(project_id: str, reviewer: str) -> str:
    """One id for a reviewer's assignment to a project and for its review: a pair is assigned at most once."""
    return f"{project_id}:{reviewer}"


def reviewer_doc_id(round_id: str, reviewer: str) -> str:
    return f"{round_id}:{reviewer}"


# -- rounds -------------------------------------------------------------------------------------------------
def new_round(body: dict, *, actor: str, now: datetime, rules: Rules) -> dict:
    """A new open round; every rule the body breaks is named at once (422)."""
    criteria = body["criteria"]
    closes_at = aware(body["closes_at"], rules.tz)
    problems = {name: messages for name, messages in (
        ("criteria", criteria_problems(criteria)),
        ("closes_at", ["must be in the future"] if closes_at <= now else [])) if messages}
    if problems:
        raise ValidationFailed.of(problems)
    return {
        "_id": new_id("rnd"),
        "name": body["name"].strip(),
        "year": body["year"],
        "criteria": [{"key": c["key"], "label": c["label"], "weight": c["weight"], "max_score": c["max_score"]}
                     for c in criteria],
        "aggregation": body["aggregation"],
        "reviewers_per_project": body["reviewers_per_project"],
        "closes_at": closes_at,
        "status": OPEN,
        "projects": 0,
        "created_by": actor,
        "created_at": now,
        "updated_at": now,
    }


def criteria_problems(criteria: Sequence[dict]) -> list[str]:
    """What is wrong with a round's criteria: repeated keys, weights that do not sum to 1."""
    problems = []
    keys = [c["key"] for c in criteria]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        problems.append(f"criterion keys must be unique; repeated: {', '.join(duplicates)}")
    total = sum((scoring.decimal_of(c["weight"]) for c in criteria), Decimal(0))
    if total != 1:
        problems.append(f"weights must sum to 1; they sum to {total}")
    return problems


def aware(moment: datetime, tz: tzinfo) -> datetime:
    """A deadline given without an offset is a local time of the district (Asia/Shanghai). It is kept in UTC at
    the millisecond precision MongoDB stores, so the round reads back exactly as it was first answered."""
    moment = moment.replace(tzinfo=tz) if moment.tzinfo is None else moment
    moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def ensure_open(round_: dict, now: datetime, doing: str) -> None:
    """Nothing changes a round's inputs after it closed, or after its closing time even if not yet closed."""
    if round_["status"] != OPEN:
        raise Conflict(f"the round is {round_['status']}: {doing} is possible only while it is open")
    if now > round_["closes_at"]:
        raise Conflict(f"the round stopped accepting changes at {round_['closes_at'].isoformat()}: "
                       f"{doing} is no longer possible")


def ensure_not_yet_closed(round_: dict) -> None:
    if round_["status"] != OPEN:
        raise Conflict(f"the round is already {round_['status']}")


def ensure_closed(round_: dict, what: str) -> None:
    if round_["status"] == OPEN:
        raise Conflict(f"{what} exist only once the round is closed; it is still open")


# -- organizations and projects ---------------------------------------------------------------------------
def ineligibility(organization: dict | None, organization_id: str) -> str | None:
    """Why an organization may not enter a project, as this service knows it from registry events."""
    if organization is None:
        return f"organization {organization_id} is not registered (no registration is known to this service)"
    if organization.get("status") != REGISTERED:
        return f"organization {organization_id} is {organization.get('status')}, not registered"
    if organization.get("risk", NO_RISK) != NO_RISK:
        return f"organization {organization_id} is on the {organization['risk']} risk list"
    return None


def entry_refusal(organization: dict | None, organization_id: str) -> str | None:
    """Why an organization may not enter a project, as the applicant reads it (a 409), or None."""
    reason = ineligibility(organization, organization_id)
    return f"only a registered organization with no active risk flag may enter: {reason}" if reason else None


def exclusion_while_open(organization: dict) -> str | None:
    """The reason an organization's projects leave open rounds (DOMAIN.md: serious flag or deregistration)."""
    if organization.get("status") == DEREGISTERED:
        return "organization_deregistered"
    if organization.get("risk") == SERIOUS:
        return "organization_on_serious_risk_list"
    return None


def acts_for(principal: Principal, organization_id: str, organization: dict | None) -> bool:
    """An applicant acts for an organization named in its token, or whose application it filed."""
    if principal.org == organization_id:
        return True
    return organization is not None and organization.get("applicant") == principal.sub


def new_project(round_: dict, organization: dict, body: dict, *, actor: str, now: datetime) -> tuple[dict, list[Event]]:
    project = {
        "_id": new_id("prj"),
        "round_id": round_["_id"],
        "organization_id": organization["_id"],
        "organization_name": organization.get("name"),
        "title": body["title"].strip(),
        "summary": body["summary"].strip(),
        "budget_fen": body["budget_fen"],
        "status": ENTERED,
        "entered_by": actor,
        "entered_at": now,
        "updated_at": now,
    }
    event = Event(type="evaluation.project.entered", subject=project["_id"], data={
        "actor": actor, "round_id": round_["_id"], "year": round_["year"], "project_id": project["_id"],
        "organization_id": project["organization_id"], "title": project["title"],
        "budget_fen": project["budget_fen"]})
    return project, [event]


def disqualify(project: dict, *, reason: str, actor: str, now: datetime, cause: str | None = None) -> tuple[dict, Event]:
    if project["status"] != ENTERED:
        raise Conflict(f"project {project['_id']} is already {project['status']}")
    changes = {"status": DISQUALIFIED, "disqualified_reason": reason, "disqualified_by": actor,
               "disqualified_at": now, "updated_at": now}
    data = {"actor": actor, "round_id": project["round_id"], "project_id": project["_id"],
            "organization_id": project["organization_id"], "reason": reason}
    if cause:
        data["cause_event_id"] = cause
    return changes, Event(type="evaluation.project.disqualified", subject=project["_id"], data=data)


# -- reviewers and assignment ------------------------------------------------------------------------------
def new_reviewer(round_: dict, body: dict, *, actor: str, now: datetime) -> dict:
    return {
        "_id": reviewer_doc_id(round_["_id"], body["reviewer"]),
        "round_id": round_["_id"],
        "reviewer": body["reviewer"],
        "name": body["name"].strip(),
        "affiliations": sorted(set(body.get("affiliations") or [])),
        "added_by": actor,
        "added_at": now,
    }


@dataclass(frozen=True)
class AssignmentPlan:
    keep: list[str]  # assignment ids that stay
    add: list[dict]  # new assignment documents
    remove: list[str]  # assignment ids withdrawn (unscored, moved to another reviewer)
    loads: dict[str, int]


def plan_assignments(round_: dict, projects: Sequence[dict], reviewers: Sequence[dict],
                     assignments: Sequence[dict], *, actor: str, now: datetime) -> AssignmentPlan:
    """Give every entered project `reviewers_per_project` reviewers; scored assignments never move, other
    current ones stay where the balance allows. Raises Conflict saying why when no assignment can satisfy
    the rules."""
    active = [a for a in assignments if a["status"] == ACTIVE]
    try:
        plan = assign(
            {p["_id"]: p["organization_id"] for p in projects},
            {r["reviewer"]: r.get("affiliations", ()) for r in reviewers},
            round_["reviewers_per_project"],
            fixed=_by_project(a for a in active if a.get("scored")),
            current=_by_project(a for a in active if not a.get("scored")),
            excluded=_by_project(a for a in assignments if a["status"] == CONFLICT),
        )
    except AssignmentImpossible as exc:
        raise Conflict(f"no assignment is possible: {exc}") from None
    wanted = {assignment_id(p, r) for p, rs in plan.items() for r in rs}
    existing = {a["_id"] for a in active}
    by_id = {p["_id"]: p for p in projects}
    add = [assignment_doc(round_, by_id[p], r, actor=actor, now=now)
           for p, rs in plan.items() for r in rs if assignment_id(p, r) not in existing]
    return AssignmentPlan(keep=sorted(existing & wanted), add=add, remove=sorted(existing - wanted),
                          loads=loads_of(plan, [r["reviewer"] for r in reviewers]))


def assignment_doc(round_: dict, project: dict, reviewer: str, *, actor: str, now: datetime,
                   replaces: str | None = None) -> dict:
    doc = {
        "_id": assignment_id(project["_id"], reviewer),
        "round_id": round_["_id"],
        "project_id": project["_id"],
        "organization_id": project["organization_id"],
        "title": project["title"],
        "reviewer": reviewer,
        "status": ACTIVE,
        "scored": False,
        "assigned_by": actor,
        "assigned_at": now,
    }
    if replaces:
        doc["replaces"] = replaces
    return doc


def choose_replacement(project: dict, reviewers: Sequence[dict], already: Iterable[str],
                       loads: Mapping[str, int]) -> str | None:
    """After a declared conflict: the least-loaded reviewer (then by id) free to review the project, if any."""
    taken = set(already)
    free = [r["reviewer"] for r in reviewers
            if r["reviewer"] not in taken and project["organization_id"] not in r.get("affiliations", ())]
    return min(free, key=lambda r: (loads.get(r, 0), r), default=None)


def _by_project(assignments: Iterable[dict]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for a in assignments:
        grouped.setdefault(a["project_id"], []).append(a["reviewer"])
    return grouped


# -- scoring --------------------------------------------------------------------------------------------------
def ensure_assigned(assignment: dict | None, principal: Principal, project_id: str) -> dict:
    if assignment is None or assignment["reviewer"] != principal.sub:
        raise Forbidden(f"reviewer {principal.sub} is not assigned to project {project_id}")
    if assignment["status"] == CONFLICT:
        raise Forbidden(f"reviewer {principal.sub} declared a conflict of interest on project {project_id}")
    if assignment["status"] != ACTIVE:
        raise Forbidden(f"reviewer {principal.sub} is no longer assigned to project {project_id}")
    return assignment


def ensure_scorable(project: dict) -> None:
    if project["status"] != ENTERED:
        raise Conflict(f"project {project['_id']} is {project['status']} and can no longer be reviewed")


def check_scores(criteria: Sequence[dict], scores: Mapping[str, int | float]) -> None:
    """Every criterion scored, each within 0..max_score, nothing else (422 naming each wrong score)."""
    errors: dict[str, list[str]] = {}
    known = {c["key"] for c in criteria}
    for criterion in criteria:
        key = criterion["key"]
        if key not in scores:
            errors[f"scores.{key}"] = ["missing: every criterion must be scored"]
        elif not 0 <= scoring.decimal_of(scores[key]) <= scoring.decimal_of(criterion["max_score"]):
            errors[f"scores.{key}"] = [f"must be between 0 and {criterion['max_score']}"]
    for key in sorted(set(scores) - known):
        errors[f"scores.{key}"] = ["not a criterion of this round"]
    if errors:
        raise ValidationFailed.of(errors)


def review_doc(round_: dict, assignment: dict, body: dict, *, previous: dict | None, now: datetime) -> dict:
    weighted = scoring.weighted_score(scoring.criteria_of(round_["criteria"]), body["scores"])
    return {
        "_id": assignment["_id"],
        "round_id": round_["_id"],
        "project_id": assignment["project_id"],
        "reviewer": assignment["reviewer"],
        "scores": dict(body["scores"]),
        "comment": body.get("comment", ""),
        "weighted_score": float(scoring.to_cents(weighted)),
        "submitted_at": previous["submitted_at"] if previous else now,
        "updated_at": now,
        "revision": (previous or {}).get("revision", 0) + 1,
    }


# -- closing and results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Closing:
    changes: dict  # to the round
    results: list[dict]  # one document per project
    events: list[Event]


def close_round(round_: dict, projects: Sequence[dict], reviews: Sequence[dict], *, rules: Rules, actor: str,
                now: datetime) -> Closing:
    ensure_not_yet_closed(round_)
    documents, inputs, outcome, counted = compute_results(round_, projects, reviews, rules)
    summary = {"ranked": sum(1 for d in documents if d["status"] == scoring.RANKED),
               "insufficient_reviews": sum(1 for d in documents if d["status"] == scoring.INSUFFICIENT),
               "disqualified": sum(1 for d in documents if d["status"] == RESULT_DISQUALIFIED),
               "reviews": counted,
               "disagreements": sum(1 for d in documents if d["disagreement"])}
    changes = {"status": CLOSED, "closed_at": now, "closed_by": actor, "inputs_digest": inputs,
               "results_digest": outcome, "algorithm": ALGORITHM, "summary": summary, "updated_at": now}
    event = Event(type="evaluation.round.closed", subject=round_["_id"], key=round_["_id"], data={
        "actor": actor, "round_id": round_["_id"], "name": round_["name"], "year": round_["year"],
        "aggregation": round_["aggregation"], "inputs_digest": inputs, "results_digest": outcome,
        "algorithm": ALGORITHM, **summary})
    return Closing(changes=changes, results=documents, events=[event])


def compute_results(round_: dict, projects: Sequence[dict], reviews: Sequence[dict],
                    rules: Rules) -> tuple[list[dict], str, str, int]:
    """The result documents, the digests of the inputs and of the results, and how many reviews counted."""
    entered = [p for p in projects if p["status"] == ENTERED]
    entered_ids = {p["_id"] for p in entered}
    counted = [r for r in reviews if r["project_id"] in entered_ids]
    weighted = scoring.weighted_scores(scoring.criteria_of(round_["criteria"]), (r["scores"] for r in counted))
    computed = scoring.results(entered_ids, [scoring.Review(r["project_id"], r["reviewer"], w)
                                             for r, w in zip(counted, weighted)], rules.scoring_rules(round_))
    by_id = {p["_id"]: p for p in projects}
    documents = [result_doc(round_, by_id[r.project_id], r, position) for position, r in enumerate(computed)]
    for p in sorted((p for p in projects if p["status"] != ENTERED), key=lambda p: p["_id"]):
        documents.append(disqualified_result_doc(round_, p, len(documents)))
    return documents, inputs_digest(round_, projects, reviews, rules), results_digest(documents), len(counted)


def verification(round_: dict, projects: Sequence[dict], reviews: Sequence[dict], stored_results: Sequence[dict],
                 rules: Rules) -> dict:
    """An audit of a closed round: recompute from the stored inputs and compare with what the close recorded."""
    ensure_closed(round_, "verifications")
    _, inputs, outcome, _ = compute_results(round_, projects, reviews, rules)
    published = results_digest(sorted(stored_results, key=lambda d: d["position"]))
    return {
        "round_id": round_["_id"], "algorithm": round_.get("algorithm"),
        "recorded_inputs_digest": round_.get("inputs_digest"), "inputs_digest": inputs,
        "recorded_results_digest": round_.get("results_digest"), "results_digest": outcome,
        "published_results_digest": published,
        "inputs_unchanged": inputs == round_.get("inputs_digest"),
        "results_reproduced": outcome == round_.get("results_digest") == published,
    }


def result_doc(round_: dict, project: dict, result: scoring.ProjectResult, position: int) -> dict:
    spread = result.spread
    return {
        "_id": f"{round_['_id']}:{project['_id']}",
        "round_id": round_["_id"],
        "position": position,
        "project_id": project["_id"],
        "organization_id": project["organization_id"],
        "title": project["title"],
        # Two-decimal values: a float's shortest repr gives the same two decimals back in JSON.
        "score": None if result.score is None else float(result.score),
        "rank": result.rank,
        "reviews": result.reviews,
        "status": result.status,
        "spread": None if spread is None else {"sd": float(spread.sd), "min": float(spread.min),
                                               "max": float(spread.max)},
        "disagreement": result.disagreement,
    }


def disqualified_result_doc(round_: dict, project: dict, position: int) -> dict:
    return {"_id": f"{round_['_id']}:{project['_id']}", "round_id": round_["_id"], "position": position,
            "project_id": project["_id"], "organization_id": project["organization_id"], "title": project["title"],
            "score": None, "rank": None, "reviews": 0, "status": RESULT_DISQUALIFIED, "spread": None,
            "disagreement": False, "reason": project.get("disqualified_reason")}


def inputs_digest(round_: dict, projects: Sequence[dict], reviews: Sequence[dict], rules: Rules) -> str:
    """SHA-256 of everything the results depend on, in a canonical form (order and number spelling free)."""
    canonical = {
        "algorithm": ALGORITHM,
        "round": {"id": round_["_id"], "aggregation": round_["aggregation"],
                  "reviewers_per_project": round_["reviewers_per_project"],
                  "criteria": [{"key": c["key"], "weight": _number(c["weight"]), "max_score": _number(c["max_score"])}
                               for c in round_["criteria"]]},
        "rules": {"trim_min_reviews": rules.trim_min_reviews, "min_reviews_share": _number(rules.min_reviews_share),
                  "disagreement_sd": _number(rules.disagreement_sd)},
        "projects": sorted([p["_id"], p["organization_id"], p["status"]] for p in projects),
        "reviews": sorted([r["project_id"], r["reviewer"], sorted((k, _number(v)) for k, v in r["scores"].items())]
                          for r in reviews),
    }
    return _sha256(canonical)


def results_digest(documents: Sequence[dict]) -> str:
    fields = ("project_id", "score", "rank", "reviews", "status")
    return _sha256([[d[f] if f != "score" or d[f] is None else _number(d[f]) for f in fields] for d in documents])


@lru_cache(maxsize=4096)
def _number(value) -> str:
    """One spelling per number (8, 8.0 and 8.00 are "8"); cached, since a round's scores take few values."""
    return format(scoring.decimal_of(value).normalize(), "f")


def _sha256(value) -> str:
    encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()


# -- awards ----------------------------------------------------------------------------------------------------
def grant_awards(round_: dict, requested: Sequence[dict], results: Mapping[str, dict],
                 organizations: Mapping[str, dict], *, actor: str, now: datetime) -> tuple[list[dict], list[Event]]:
    if round_["status"] == OPEN:
        raise Conflict("awards can be granted only once the round is closed; it is still open")
    if round_["status"] == AWARDED:
        raise Conflict("the round's awards were already granted")
    seen = [a["project_id"] for a in requested]
    repeated = sorted({p for p in seen if seen.count(p) > 1})
    if repeated:
        raise ValidationFailed.field("awards", f"a project can be awarded once; repeated: {', '.join(repeated)}")
    awards, events = [], []
    for request in requested:
        result = results.get(request["project_id"])
        if result is None:
            raise Conflict(f"project {request['project_id']} is not in this round's results")
        if result["status"] != scoring.RANKED:
            raise Conflict(f"project {request['project_id']} is {result['status']} and cannot be awarded")
        refusal = _award_refusal(organizations.get(result["organization_id"]), result["organization_id"])
        if refusal:
            raise Conflict(f"project {request['project_id']} cannot be awarded: {refusal}")
        award = {"_id": new_id("awd"), "round_id": round_["_id"], "year": round_["year"],
                 "project_id": result["project_id"], "organization_id": result["organization_id"],
                 "title": result["title"], "rank": result["rank"], "score": result["score"],
                 "tier": request["tier"].strip(), "prize_fen": request["prize_fen"],
                 "fund_id": request.get("fund_id"), "granted_by": actor, "granted_at": now}
        awards.append(award)
        data = {"actor": actor, "award_id": award["_id"], "round_id": round_["_id"], "year": round_["year"],
                "project_id": award["project_id"], "organization_id": award["organization_id"],
                "title": award["title"], "tier": award["tier"], "prize_fen": award["prize_fen"]}
        if award["fund_id"]:
            data["fund_id"] = award["fund_id"]
        events.append(Event(type="evaluation.award.granted", subject=award["project_id"], key=award["project_id"],
                            data=data))
    return awards, events


def _award_refusal(organization: dict | None, organization_id: str) -> str | None:
    """A prize goes nowhere the fund may not pay: a deregistered or seriously flagged organization."""
    if organization is None:
        return f"organization {organization_id} is unknown to this service"
    if organization.get("status") == DEREGISTERED:
        return f"organization {organization_id} is deregistered"
    if organization.get("risk") == SERIOUS:
        return f"organization {organization_id} is on the serious risk list"
    return None
