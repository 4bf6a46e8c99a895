"""Every bad input answers problem+json and changes nothing; retries with an Idempotency-Key have one effect;
scores racing the close are either counted in the results or refused, never lost."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from tests.integration.test_evaluation_support import (CRITERIA, add_reviewer, assignments_of,  # noqa: F401
                                                       check_problem, enter, evaluation_counts, open_round,
                                                       register, round_body, run_assignment, world)


def names(response, field: str) -> bool:
    """The problem's `errors` name `field` (list indexes left out: criteria.0.weight names criteria.weight)."""
    return any(".".join(part for part in name.split(".") if not part.isdigit()).startswith(field)
               for name in response.body["errors"])


def test_bad_round_definitions(world):
    stack = world
    officer = stack.client("evaluation", "officer")
    before = evaluation_counts(stack)
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    cases = [
        (round_body(criteria=[CRITERIA[0] | {"weight": 0.5}, CRITERIA[1]]), "criteria", "sum to 1"),
        (round_body(criteria=[CRITERIA[0], CRITERIA[0] | {"weight": 0.4}]), "criteria", "unique"),
        (round_body(criteria=[]), "criteria", None),
        (round_body(criteria=[CRITERIA[0] | {"weight": 0}, CRITERIA[1] | {"weight": 1}]), "criteria.weight", None),
        (round_body(criteria=[CRITERIA[0] | {"max_score": 0}, CRITERIA[1]]), "criteria.max_score", None),
        (round_body(criteria=[CRITERIA[0] | {"weight": "0.6"}, CRITERIA[1]]), "criteria.weight", None),
        (round_body(criteria=[CRITERIA[0] | {"key": "Bad Key"}, CRITERIA[1]]), "criteria.key", None),
        (round_body(criteria=[CRITERIA[0] | {"key": "quality\n"}, CRITERIA[1]]), "criteria.key", None),
        (round_body(aggregation="median"), "aggregation", None),
        (round_body(reviewers_per_project=0), "reviewers_per_project", None),
        (round_body(year="2026"), "year", None),
        (round_body(closes_at=past), "closes_at", "future"),
        (round_body(closes_at="next friday"), "closes_at", None),
        (round_body(surprise=1), "surprise", None),
        ({k: v for k, v in round_body().items() if k != "name"}, "name", None),
    ]
    for body, field, words in cases:
        response = officer.post("/api/v1/rounds", body)
        check_problem(response, 422)
        assert names(response, field), (field, response.body)
        if words:
            assert words in response.body["detail"], response.body
    check_problem(officer.post("/api/v1/rounds", raw=b"{not json"), 400)
    check_problem(officer.post("/api/v1/rounds", [1, 2]), 422)
    check_problem(stack.client("evaluation").post("/api/v1/rounds", round_body()), 401)
    check_problem(stack.client("evaluation", "reviewer").post("/api/v1/rounds", round_body()), 403)
    check_problem(stack.client("evaluation", "applicant").post("/api/v1/rounds", round_body()), 403)
    check_problem(officer.get("/api/v1/rounds?per_page=101"), 422)
    check_problem(officer.get("/api/v1/rounds?status=pending"), 422)
    check_problem(officer.get("/api/v1/rounds/rnd_missing"), 404)
    check_problem(officer.request("DELETE", "/api/v1/rounds"), 405)
    assert evaluation_counts(stack) == before


def test_bad_requests_on_a_round(world):
    stack = world
    [organization] = register(stack)
    rid = open_round(stack, reviewers_per_project=1)["id"]
    project = enter(stack, rid, organization)
    add_reviewer(stack, rid, "r1")
    officer = stack.client("evaluation", "officer")
    applicant = stack.client("evaluation", "applicant", sub=organization["filed_by"])
    before = evaluation_counts(stack)
    good_project = {"organization_id": organization["id"], "title": "t", "summary": "s", "budget_fen": 1}
    for body, field in [
        (good_project | {"budget_fen": -1}, "budget_fen"),
        (good_project | {"budget_fen": 1.5}, "budget_fen"),
        ({k: v for k, v in good_project.items() if k != "title"}, "title"),
    ]:
        response = applicant.post(f"/api/v1/rounds/{rid}/projects", body)
        check_problem(response, 422)
        assert names(response, field), response.body
    check_problem(applicant.post("/api/v1/rounds/rnd_missing/projects", good_project), 404)
    check_problem(officer.post(f"/api/v1/rounds/{rid}/reviewers", {"reviewer": "r1", "name": "again"}), 409)
    check_problem(officer.post(f"/api/v1/rounds/{rid}/reviewers", {"reviewer": "r9", "name": "x",
                                                                    "affiliations": "org"}), 422)
    check_problem(officer.post(f"/api/v1/rounds/{rid}/reviewers", {"name": "x"}), 422)
    check_problem(officer.post("/api/v1/rounds/rnd_missing/reviewers", {"reviewer": "r9", "name": "x"}), 404)
    check_problem(stack.client("evaluation", "reviewer").get(f"/api/v1/rounds/{rid}/reviewers"), 403)
    check_problem(officer.get(f"/api/v1/rounds/{rid}/projects/prj_missing"), 404)
    check_problem(officer.get(f"/api/v1/rounds/{rid}/assignments?status=lost"), 422)
    # Results and awards exist only after the close.
    check_problem(officer.get(f"/api/v1/rounds/{rid}/results"), 409)
    check_problem(officer.get("/api/v1/rounds/rnd_missing/results"), 404)
    early = officer.post(f"/api/v1/rounds/{rid}/awards", {"awards": [
        {"project_id": project["id"], "tier": "一等奖", "prize_fen": 100}]})
    check_problem(early, 409)
    check_problem(officer.post("/api/v1/rounds/rnd_missing/close"), 404)
    check_problem(stack.client("evaluation", "reviewer").post(f"/api/v1/rounds/{rid}/close"), 403)
    assert evaluation_counts(stack) == before

    run_assignment(stack, rid)
    assert stack.client("evaluation", "reviewer", sub="r1").put(
        f"/api/v1/rounds/{rid}/projects/{project['id']}/scores", {"scores": {"quality": 9, "impact": 4}}).status == 200
    assert officer.post(f"/api/v1/rounds/{rid}/close").status == 200
    before = evaluation_counts(stack)
    award = {"project_id": project["id"], "tier": "一等奖", "prize_fen": 100}
    for body, field in [
        ({"awards": []}, "awards"),
        ({"awards": [award | {"prize_fen": 0}]}, "awards.prize_fen"),
        ({"awards": [award | {"prize_fen": "100"}]}, "awards.prize_fen"),
        ({"awards": [award | {"tier": ""}]}, "awards.tier"),
        ({"awards": [award, award]}, "awards"),
    ]:
        response = officer.post(f"/api/v1/rounds/{rid}/awards", body)
        check_problem(response, 422)
        assert names(response, field), response.body
    unknown = officer.post(f"/api/v1/rounds/{rid}/awards", {"awards": [award | {"project_id": "prj_other"}]})
    check_problem(unknown, 409)
    assert "not in this round's results" in unknown.body["detail"]
    check_problem(stack.client("evaluation", "reviewer").post(f"/api/v1/rounds/{rid}/awards", {"awards": [award]}), 403)
    assert evaluation_counts(stack) == before


def test_retried_creates_with_an_idempotency_key_have_one_effect(world):
    stack = world
    officer = stack.client("evaluation", "officer", sub="officer-retry")
    body = round_body(name="重试的评选")
    first = officer.post("/api/v1/rounds", body, headers={"Idempotency-Key": "round-1"})
    second = officer.post("/api/v1/rounds", body, headers={"Idempotency-Key": "round-1"})
    assert first.status == second.status == 201 and first.body == second.body
    assert stack.db("evaluation")["rounds"].count_documents({"name": "重试的评选"}) == 1
    other = officer.post("/api/v1/rounds", round_body(name="另一个"), headers={"Idempotency-Key": "round-1"})
    check_problem(other, 422)

    [organization] = register(stack)
    applicant = stack.client("evaluation", "applicant", sub=organization["filed_by"])
    entry = {"organization_id": organization["id"], "title": "重试项目", "summary": "s", "budget_fen": 5}
    path = f"/api/v1/rounds/{first.body['id']}/projects"
    created = [applicant.post(path, entry, headers={"Idempotency-Key": "p-1"}) for _ in range(2)]
    assert created[0].body == created[1].body
    assert stack.db("evaluation")["projects"].count_documents({"round_id": first.body["id"]}) == 1
    assert stack.db("evaluation")["outbox"].count_documents({"key": created[0].body["id"]}) == 1


def test_scores_racing_the_close_are_counted_or_refused(world):
    """Reviewers keep scoring while the officer closes: every review stored ends up in the results (none
    commits unseen after the close), and every refused score was refused because the round had closed."""
    stack = world
    organizations = register(stack, 4)
    rid = open_round(stack, reviewers_per_project=2)["id"]
    projects = [enter(stack, rid, org) for org in organizations]
    reviewers = [f"r{i}" for i in range(4)]
    for reviewer in reviewers:
        add_reviewer(stack, rid, reviewer)
    run_assignment(stack, rid)
    plan = assignments_of(stack, rid)
    outcomes: list[tuple[int, str]] = []
    started = threading.Barrier(len(reviewers) + 1)

    def keep_scoring(reviewer):
        client = stack.client("evaluation", "reviewer", sub=reviewer)
        mine = [p["id"] for p in projects if reviewer in plan[p["id"]]]
        started.wait()
        for attempt in range(15):
            for project_id in mine:
                response = client.put(f"/api/v1/rounds/{rid}/projects/{project_id}/scores",
                                      {"scores": {"quality": attempt % 11, "impact": 3}})
                if response.status == 503:  # contention outlasted the retries: the client tries again later
                    continue
                outcomes.append((response.status, (response.body or {}).get("detail", "")))
                if response.status == 409:
                    return

    threads = [threading.Thread(target=keep_scoring, args=(r,)) for r in reviewers]
    for thread in threads:
        thread.start()
    started.wait()
    officer = stack.client("evaluation", "officer")
    # The close contends with every score written meanwhile; on a busy machine it may answer 503 (retry), as the
    # contract allows, and the officer tries again.
    for _ in range(10):
        closed = officer.post(f"/api/v1/rounds/{rid}/close")
        if closed.status != 503:
            break
    for thread in threads:
        thread.join(60)
    assert closed.status == 200, closed.body
    assert {status for status, _ in outcomes} <= {200, 409}
    assert all("closed" in detail for status, detail in outcomes if status == 409)
    results = stack.client("evaluation", "officer").get(f"/api/v1/rounds/{rid}/results").body["items"]
    stored = stack.db("evaluation")["reviews"].count_documents({"round_id": rid})
    assert sum(r["reviews"] for r in results) == stored == closed.body["summary"]["reviews"]
    # And the stored reviews are exactly those the digest covers.
    audit = stack.client("evaluation", "officer").get(f"/api/v1/rounds/{rid}/verification").body
    assert audit["inputs_unchanged"] is True and audit["results_reproduced"] is True


def test_openapi_documents_every_contract_endpoint(world):
    spec = world.client("evaluation").get("/openapi.json").body
    paths = spec["paths"]
    for path, method in [("/api/v1/rounds", "post"), ("/api/v1/rounds/{round_id}/projects", "post"),
                         ("/api/v1/rounds/{round_id}/reviewers", "post"),
                         ("/api/v1/rounds/{round_id}/assignments", "post"),
                         ("/api/v1/rounds/{round_id}/assignments", "get"),
                         ("/api/v1/rounds/{round_id}/projects/{project_id}/scores", "put"),
                         ("/api/v1/rounds/{round_id}/close", "post"), ("/api/v1/rounds/{round_id}/results", "get"),
                         ("/api/v1/rounds/{round_id}/awards", "post"),
                         ("/api/v1/organizations/{organization_id}", "get")]:
        assert method in paths[path], (path, method)
        assert paths[path][method]["security"] == [{"bearerAuth": []}]
