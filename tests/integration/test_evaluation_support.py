"""Helpers (no tests) for the evaluation integration tests: one stack (registry + evaluation workers) per test
module, organizations registered through the registry API, registry-shaped events for risk changes."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from shared.events import Event
from tests.support.data import application
from tests.support.events import publish
from tests.support.stack import Stack, wait_until

PROBLEM = "application/problem+json"
_subs = itertools.count(1)

# quality: weight 0.6 out of 10, impact: weight 0.4 out of 5: weighted = 6 x quality + 8 x impact.
CRITERIA = [{"key": "quality", "label": "项目质量", "weight": 0.6, "max_score": 10},
            {"key": "impact", "label": "社会影响", "weight": 0.4, "max_score": 5}]
# One criterion of weight 1 out of 100: a review's weighted score is the score itself.
PLAIN = [{"key": "overall", "label": "总体", "weight": 1, "max_score": 100}]


@pytest.fixture(scope="module")
def world(servers):
    """A stack whose registry and evaluation workers run for the whole module (joining takes seconds);
    every test works in rounds of its own."""
    stack = Stack(servers).start_workers("registry", "evaluation")
    yield stack
    stack.close()


def evaluation_view(stack, organization_id: str) -> dict:
    return stack.db("evaluation")["organizations"].find_one({"_id": organization_id}) or {}


def register(stack, count: int = 1) -> list[dict]:
    """Register organizations through the registry API; wait until evaluation knows them as registered.
    Each has its own filing applicant, whose sub is in `filed_by`."""
    officer = stack.client("registry", "officer", sub="officer-li")
    organizations = []
    for _ in range(count):
        sub = f"applicant-{next(_subs)}"
        created = stack.client("registry", "applicant", sub=sub).post("/api/v1/organizations", application())
        assert created.status == 201, created.body
        approved = officer.post(f"/api/v1/organizations/{created.body['id']}/approve")
        assert approved.status == 200, approved.body
        organizations.append(approved.body | {"filed_by": sub})
    for organization in organizations:
        wait_until(lambda: evaluation_view(stack, organization["id"]).get("status") == "registered", timeout=30,
                   message=f"evaluation to learn that {organization['id']} is registered")
    return organizations


def submitted_only(stack) -> dict:
    sub = f"applicant-{next(_subs)}"
    created = stack.client("registry", "applicant", sub=sub).post("/api/v1/organizations", application())
    assert created.status == 201
    wait_until(lambda: evaluation_view(stack, created.body["id"]).get("status") == "submitted", timeout=30)
    return created.body | {"filed_by": sub}


def publish_registry_change(stack, organization: dict, kind: str, **changes) -> Event:
    """A registry event as the registry publishes it: the organization's snapshot with a higher version."""
    current = evaluation_view(stack, organization["id"])
    snapshot = {"id": organization["id"], "name": organization["name"], "uscc": organization.get("uscc"),
                "type": organization["type"], "status": current["status"], "risk": current["risk"],
                "version": current["version"] + 1} | changes
    event = Event(type=f"registry.organization.{kind}", subject=organization["id"],
                  data={"actor": "officer-li", "organization": snapshot})
    publish(stack, "registry", event)
    wait_until(lambda: evaluation_view(stack, organization["id"]).get("version") == snapshot["version"], timeout=30,
               message=f"evaluation to apply {kind}")
    return event


def round_body(**overrides) -> dict:
    body = {"name": "2026年度浦东新区社会组织品牌项目评选", "year": 2026, "criteria": CRITERIA,
            "aggregation": "mean", "reviewers_per_project": 2,
            "closes_at": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()}
    return body | overrides


def open_round(stack, **overrides) -> dict:
    created = stack.client("evaluation", "officer", sub="officer-wang").post("/api/v1/rounds", round_body(**overrides))
    assert created.status == 201, created.body
    return created.body


def enter(stack, round_id: str, organization: dict, title: str = "社区长者助餐", **overrides) -> dict:
    applicant = stack.client("evaluation", "applicant", sub=organization["filed_by"])
    body = {"organization_id": organization["id"], "title": title, "summary": "为社区长者提供助餐服务",
            "budget_fen": 12_000_000} | overrides
    created = applicant.post(f"/api/v1/rounds/{round_id}/projects", body)
    assert created.status == 201, created.body
    return created.body


def add_reviewer(stack, round_id: str, reviewer: str, affiliations=()) -> dict:
    added = stack.client("evaluation", "officer").post(f"/api/v1/rounds/{round_id}/reviewers", {
        "reviewer": reviewer, "name": f"专家{reviewer}", "affiliations": list(affiliations)})
    assert added.status == 201, added.body
    return added.body


def run_assignment(stack, round_id: str) -> dict:
    ran = stack.client("evaluation", "officer").post(f"/api/v1/rounds/{round_id}/assignments")
    assert ran.status == 200, ran.body
    return ran.body


def all_pages(client, path: str, per_page: int = 100) -> list[dict]:
    items, page = [], 1
    while True:
        separator = "&" if "?" in path else "?"
        listed = client.get(f"{path}{separator}page={page}&per_page={per_page}")
        assert listed.status == 200, listed.body
        items += listed.body["items"]
        if page * per_page >= listed.body["total"]:
            return items
        page += 1


def assignments_of(stack, round_id: str) -> dict[str, list[str]]:
    """project id -> its actively assigned reviewers, as the officer sees them."""
    plan: dict[str, list[str]] = {}
    for item in all_pages(stack.client("evaluation", "officer"), f"/api/v1/rounds/{round_id}/assignments"):
        plan.setdefault(item["project_id"], []).append(item["reviewer"])
    return {project: sorted(reviewers) for project, reviewers in plan.items()}


def score(stack, round_id: str, project_id: str, reviewer: str, scores: dict, comment: str = "好"):
    return stack.client("evaluation", "reviewer", sub=reviewer).put(
        f"/api/v1/rounds/{round_id}/projects/{project_id}/scores", {"scores": scores, "comment": comment})


def outbox_events(stack, event_type: str, **match) -> list[dict]:
    query = {"event.type": "org.socorg." + event_type} | {f"event.data.{k}": v for k, v in match.items()}
    return [record["event"] for record in stack.db("evaluation")["outbox"].find(query).sort("order", 1)]


def check_problem(response, status: int) -> None:
    assert response.status == status, (response.status, response.body)
    assert response.headers["Content-Type"] == PROBLEM
    assert {"type", "title", "status", "detail"} <= set(response.body)
    assert response.body["status"] == status
    assert "Traceback" not in str(response.body)


def evaluation_counts(stack) -> dict[str, list]:
    """Everything the evaluation service stores (outbox records by id only: the relay marks them sent as it
    goes), to compare before and after a refused request."""
    db = stack.db("evaluation")
    names = ("rounds", "projects", "reviewers", "assignments", "reviews", "results", "awards", "idempotency_keys")
    state = {name: list(db[name].find().sort("_id", 1)) for name in names}
    state["outbox"] = [doc["_id"] for doc in db["outbox"].find({}, {"_id": 1}).sort("_id", 1)]
    return state
