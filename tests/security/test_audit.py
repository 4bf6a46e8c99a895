"""The audit trail of officer actions, built from the events' `actor`, readable by officers at
GET /api/v1/audit?subject=&actor= on each service.

Every officer action any service offers (every POST/PUT the authorization table allows officers) is
performed by an officer of its own, and must then appear in that service's trail under that officer, with
its subject; the filters, the order (newest first), paging and the roles are checked on real actions:
registry approvals, evaluation rounds opened and closed, fund grants and disbursements.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.security.scenarios import Scenarios
from tests.security.test_authorization_matrix import EXPECTED
from tests.security.world import World, seed, serial
from tests.support.stack import SERVICES, Stack

AUDIT = "/api/v1/audit"
PROBLEM = "application/problem+json"
# Actions whose events carry `system`, as the contract says ("system for sweeps, schedulers and consumers").
SYSTEM_ACTIONS = {("registry", "POST /api/v1/risk-sweeps")}
OFFICER_ACTIONS = [(service, endpoint) for service, table in EXPECTED.items() for endpoint, allowed in table.items()
                   if endpoint.split(" ")[0] in ("POST", "PUT") and "officer" in allowed]


@pytest.fixture(scope="module")
def scenarios(servers):
    stack = Stack(servers)
    world, seeds = seed(stack)
    yield Scenarios(world, seeds)
    stack.close()


def trail(stack, service: str, **query) -> dict:
    officer = {"Authorization": f"Bearer {stack.token('officer', sub='auditor')}"}
    response = stack.app(service).test_client().get(AUDIT, query_string=query, headers=officer)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize("service, endpoint", OFFICER_ACTIONS, ids=[f"{s} {e}" for s, e in OFFICER_ACTIONS])
def test_every_officer_action_is_in_the_trail_under_its_officer(scenarios, service, endpoint):
    stack = scenarios.world.stack
    method = endpoint.split(" ")[0]
    target = scenarios.build(service, endpoint)
    officer = f"officer-{serial()}"
    actor = "system" if (service, endpoint) in SYSTEM_ACTIONS else officer
    before = trail(stack, service, actor=actor)["total"]
    headers = {"Content-Type": "application/json", **target.headers,
               "Authorization": f"Bearer {stack.token('officer', sub=officer)}"}
    data = json.dumps(target.body, ensure_ascii=False) if target.body is not None else None
    done = stack.app(service).test_client().open(target.path, method=method, data=data, headers=headers)
    assert 200 <= done.status_code < 300, done.get_data(as_text=True)

    after = trail(stack, service, actor=actor, per_page=100)
    new = after["items"][:after["total"] - before]  # newest first
    assert new, f"{service} {endpoint} by {officer} left no trace in the audit trail"
    for entry in new:  # each is this service's event, under the actor, and is found again by its subject
        assert entry["actor"] == entry["data"]["actor"] == actor
        assert entry["type"].startswith(f"org.socorg.{service}.")
        by_subject = trail(stack, service, subject=entry["subject"], actor=actor, per_page=100)["items"]
        assert entry["id"] in {e["id"] for e in by_subject}


def test_the_trail_filters_orders_and_pages_real_officer_actions(servers):
    stack = Stack(servers).start_workers("registry", "evaluation", "fund")
    try:
        world = World(stack)
        organization = world.submitted()
        applicant_sub = organization.filer
        li = stack.client("registry", "officer", sub="officer-li")
        assert li.post(f"/api/v1/organizations/{organization.id}/approve").status == 200
        world.known_to(organization)
        # registry: the application (its applicant) and the approval (the officer), newest first
        entries = trail(stack, "registry", subject=organization.id)["items"]
        assert [(e["type"].rsplit(".", 1)[1], e["actor"]) for e in entries] == [
            ("registered", "officer-li"), ("submitted", applicant_sub)]
        assert trail(stack, "registry", subject=organization.id, actor="officer-li")["total"] == 1
        assert trail(stack, "registry", actor="officer-li", type="org.socorg.registry.organization.registered")[
            "items"][0]["subject"] == organization.id

        # evaluation: a round opened and closed by officer-wang
        wang = stack.client("evaluation", "officer", sub="officer-wang")
        round_id = world.round()  # by the world's officer
        wang_round = wang.post("/api/v1/rounds", {
            "name": "审计轮", "year": 2026, "aggregation": "mean", "reviewers_per_project": 1,
            "criteria": [{"key": "overall", "label": "总体", "weight": 1, "max_score": 100}],
            "closes_at": "2099-01-01"}).body["id"]
        assert wang.post(f"/api/v1/rounds/{wang_round}/close").status == 200
        mine = trail(stack, "evaluation", actor="officer-wang")
        assert [(e["subject"], e["type"].removeprefix("org.socorg.evaluation.")) for e in mine["items"]] == [
            (wang_round, "round.closed"), (wang_round, "round.opened")]
        assert all(e["subject"] != round_id for e in mine["items"])

        # fund: a grant and its disbursement by officer-zhao
        zhao = stack.client("fund", "officer", sub="officer-zhao")
        fund = world.fund()
        grant = zhao.post(f"/api/v1/funds/{fund}/grants", {"organization_id": organization.id, "title": "资助",
                                                            "amount_fen": 100_000, "tranches": [40, 60]}).body["id"]
        for key in ("d-1", "d-2"):
            paid = zhao.post(f"/api/v1/grants/{grant}/disbursements", {}, headers={"Idempotency-Key": key})
            assert paid.status == 201 and paid.body["status"] == "paid", paid.body
        entries = trail(stack, "fund", subject=grant, actor="officer-zhao")
        assert entries["total"] == 3
        assert [e["type"].removeprefix("org.socorg.fund.") for e in entries["items"]] == [
            "disbursement.paid", "disbursement.paid", "grant.created"]
        assert [e["data"]["disbursement"]["tranche"] for e in entries["items"][:2]] == [2, 1]
        times = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in entries["items"]]
        assert times == sorted(times, reverse=True)
        first_page = trail(stack, "fund", subject=grant, per_page=2, page=1)
        second_page = trail(stack, "fund", subject=grant, per_page=2, page=2)
        assert (first_page["total"], len(first_page["items"]), len(second_page["items"])) == (3, 2, 1)
        assert [e["id"] for e in first_page["items"] + second_page["items"]] == [e["id"] for e in entries["items"]]
        assert trail(stack, "fund", subject=grant, actor="officer-li")["total"] == 0
    finally:
        stack.close()


@pytest.mark.parametrize("service", SERVICES)
def test_only_officers_read_the_trail(stack, service):
    anyone = stack.app(service).test_client()
    refused = {None: 401, "applicant": 403, "reviewer": 403}
    for role, status in refused.items():
        headers = {"Authorization": f"Bearer {stack.token(role, sub='x', org='org_x' if role == 'applicant' else None)}"} \
            if role else {}
        response = anyone.get(AUDIT, headers=headers)
        assert response.status_code == status and response.mimetype == PROBLEM, (role, response.status_code)
    officer = {"Authorization": f"Bearer {stack.token('officer', sub='li')}"}
    assert anyone.get(AUDIT, headers=officer).status_code == 200
    assert anyone.get(AUDIT, query_string={"per_page": 101}, headers=officer).status_code == 422
