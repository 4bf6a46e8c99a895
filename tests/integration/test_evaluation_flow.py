"""A whole award round through the real stack: organizations registered in the registry, projects entered,
reviewers assigned and scoring, close, results to the cent, awards published to the evaluation topic."""

from __future__ import annotations

import json
from decimal import Decimal

from kafka import KafkaConsumer, TopicPartition

from tests.integration.test_evaluation_support import (PLAIN, add_reviewer, all_pages, assignments_of,  # noqa: F401
                                                       check_problem, enter, open_round, outbox_events, register,
                                                       run_assignment, score, world)
from tests.support.stack import wait_until

# Per project, the scores its first and second reviewer (in id order) give; weighted = 6 x quality + 8 x impact.
SCORES = {
    "A": [{"quality": 7, "impact": 3}, {"quality": 8, "impact": 4}],  # 66, 80 -> 73.00, sd 7
    "B": [{"quality": 5, "impact": 2.5}, {"quality": 9, "impact": 5}],  # 50, 94 -> 72.00, sd 22
    "C": [{"quality": 10, "impact": 5}, {"quality": 6, "impact": 2}],  # 100, 52 -> 76.00, sd 24
}


def published_on_evaluation_topic(stack) -> list:
    consumer = KafkaConsumer(bootstrap_servers=stack.settings.kafka_bootstrap_servers, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=1000)
    topic = stack.settings.topic("evaluation")
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        return [message for message in consumer]
    finally:
        consumer.close()


def test_a_round_from_entry_to_awards(world):
    stack = world
    org_a, org_b, org_c = register(stack, 3)
    round_ = open_round(stack, aggregation="mean", reviewers_per_project=2)
    rid = round_["id"]
    assert round_["status"] == "open" and round_["projects"] == 0

    # The filer of A's application acts for A; B's staff carry B's id in their token.
    project_a = enter(stack, rid, org_a, title="长者助餐")
    staff_b = stack.client("evaluation", "applicant", sub="someone-at-b", org=org_b["id"])
    entered_b = staff_b.post(f"/api/v1/rounds/{rid}/projects", {"organization_id": org_b["id"], "title": "青少年托管",
                                                                 "summary": "课后托管", "budget_fen": 8_000_000})
    assert entered_b.status == 201, entered_b.body
    project_b = entered_b.body
    project_c = enter(stack, rid, org_c, title="社区调解")
    projects = {"A": project_a, "B": project_b, "C": project_c}
    assert [e["data"]["actor"] for e in outbox_events(stack, "evaluation.project.entered", round_id=rid)] == \
        [org_a["filed_by"], "someone-at-b", org_c["filed_by"]]

    add_reviewer(stack, rid, "expert-1", affiliations=[org_a["id"]])
    add_reviewer(stack, rid, "expert-2", affiliations=[org_b["id"]])
    add_reviewer(stack, rid, "expert-3")
    add_reviewer(stack, rid, "expert-4")
    ran = run_assignment(stack, rid)
    assert (ran["assignments"], ran["min_load"], ran["max_load"]) == (6, 1, 2)
    plan = assignments_of(stack, rid)
    assert all(len(plan[p["id"]]) == 2 for p in projects.values())
    assert "expert-1" not in plan[project_a["id"]] and "expert-2" not in plan[project_b["id"]]

    # A reviewer sees only its own assignments, and may not ask for another's.
    mine = stack.client("evaluation", "reviewer", sub="expert-3").get(f"/api/v1/rounds/{rid}/assignments")
    assert mine.status == 200 and {item["reviewer"] for item in mine.body["items"]} <= {"expert-3"}
    check_problem(stack.client("evaluation", "reviewer", sub="expert-3").get(
        f"/api/v1/rounds/{rid}/assignments?reviewer=expert-4"), 403)

    for name, project in projects.items():
        for reviewer, scores in zip(plan[project["id"]], SCORES[name]):
            scored = score(stack, rid, project["id"], reviewer, scores)
            assert scored.status == 200, scored.body

    check_problem(stack.client("evaluation", "officer").get(f"/api/v1/rounds/{rid}/results"), 409)
    first_reviewer = plan[project_a["id"]][0]
    check_problem(stack.client("evaluation", "reviewer", sub=first_reviewer).get(
        f"/api/v1/rounds/{rid}/projects/{project_a['id']}/reviews"), 403)

    closed = stack.client("evaluation", "officer", sub="officer-wang").post(f"/api/v1/rounds/{rid}/close")
    assert closed.status == 200, closed.body
    assert closed.body["status"] == "closed" and closed.body["inputs_digest"].startswith("sha256:")
    assert closed.body["summary"] == closed.body["summary"] | {"ranked": 3, "reviews": 6, "disagreements": 2}
    [closed_event] = outbox_events(stack, "evaluation.round.closed", round_id=rid)
    assert closed_event["data"]["actor"] == "officer-wang"
    assert closed_event["data"]["inputs_digest"] == closed.body["inputs_digest"]

    results = {r["project_id"]: r for r in all_pages(stack.client("evaluation", "officer"),
                                                     f"/api/v1/rounds/{rid}/results")}
    expected = {"C": ("76.00", 1, "24.00", "52.00", "100.00", True),
                "A": ("73.00", 2, "7.00", "66.00", "80.00", False),
                "B": ("72.00", 3, "22.00", "50.00", "94.00", True)}
    for name, (value, rank, sd, low, high, disagreement) in expected.items():
        result = results[projects[name]["id"]]
        assert Decimal(str(result["score"])) == Decimal(value), (name, result)
        assert (result["rank"], result["reviews"], result["status"]) == (rank, 2, "ranked")
        assert {k: Decimal(str(v)) for k, v in result["spread"].items()} == \
            {"sd": Decimal(sd), "min": Decimal(low), "max": Decimal(high)}
        assert result["disagreement"] is disagreement
        assert result["organization_id"] == projects[name]["organization_id"]

    # After close: no more scores; reviewers may now read every review.
    check_problem(score(stack, rid, project_a["id"], first_reviewer, SCORES["A"][0]), 409)
    reviews = stack.client("evaluation", "reviewer", sub=first_reviewer).get(
        f"/api/v1/rounds/{rid}/projects/{project_a['id']}/reviews")
    assert reviews.status == 200 and reviews.body["total"] == 2
    # An applicant sees its own organization's results only.
    own = stack.client("evaluation", "applicant", sub=org_a["filed_by"]).get(f"/api/v1/rounds/{rid}/results")
    assert own.status == 200 and [r["project_id"] for r in own.body["items"]] == [project_a["id"]]

    officer = stack.client("evaluation", "officer", sub="officer-wang")
    granted = officer.post(f"/api/v1/rounds/{rid}/awards", {"awards": [
        {"project_id": project_c["id"], "tier": "一等奖", "prize_fen": 5_000_000, "fund_id": "fund_2026"},
        {"project_id": project_a["id"], "tier": "二等奖", "prize_fen": 3_000_000},
    ]})
    assert granted.status == 201, granted.body
    assert granted.body["status"] == "awarded" and all(a["id"] for a in granted.body["awards"])
    check_problem(officer.post(f"/api/v1/rounds/{rid}/awards", {"awards": [
        {"project_id": project_b["id"], "tier": "三等奖", "prize_fen": 1_000_000}]}), 409)
    assert stack.client("evaluation", "officer").get(f"/api/v1/rounds/{rid}").body["status"] == "awarded"

    awards = outbox_events(stack, "evaluation.award.granted", round_id=rid)
    assert [(e["subject"], e["data"]["tier"], e["data"]["prize_fen"]) for e in awards] == \
        [(project_c["id"], "一等奖", 5_000_000), (project_a["id"], "二等奖", 3_000_000)]
    first = awards[0]["data"]
    assert first == first | {"actor": "officer-wang", "organization_id": org_c["id"], "project_id": project_c["id"],
                             "year": 2026, "round_id": rid, "fund_id": "fund_2026"}
    assert "fund_id" not in awards[1]["data"]

    # The relay publishes them to the evaluation topic, keyed by project id.
    def award_messages():
        found = [m for m in published_on_evaluation_topic(stack)
                 if json.loads(m.value)["type"] == "org.socorg.evaluation.award.granted"
                 and json.loads(m.value)["data"]["round_id"] == rid]
        return found if len(found) == 2 else None

    messages = wait_until(award_messages, timeout=30, message="awards on the evaluation topic")
    assert sorted(m.key.decode() for m in messages) == sorted([project_a["id"], project_c["id"]])


def test_results_are_exact_for_each_aggregation(world):
    stack = world
    orgs = register(stack, 2)
    # z-score: the hand-worked example of tests/unit/test_evaluation_scoring.py, through the whole stack.
    zscore = open_round(stack, criteria=PLAIN, aggregation="zscore", reviewers_per_project=3)
    p1, p2 = (enter(stack, zscore["id"], org) for org in orgs)
    for reviewer in ("r1", "r2", "r3"):
        add_reviewer(stack, zscore["id"], reviewer)
    run_assignment(stack, zscore["id"])
    table = {p1["id"]: {"r1": 90, "r2": 60, "r3": 100}, p2["id"]: {"r1": 70, "r2": 60, "r3": 60}}
    for project_id, by_reviewer in table.items():
        for reviewer, value in by_reviewer.items():
            assert score(stack, zscore["id"], project_id, reviewer, {"overall": value}).status == 200
    assert stack.client("evaluation", "officer").post(f"/api/v1/rounds/{zscore['id']}/close").status == 200
    results = {r["project_id"]: r for r in stack.client("evaluation", "officer").get(
        f"/api/v1/rounds/{zscore['id']}/results").body["items"]}
    assert (results[p1["id"]]["score"], results[p1["id"]]["rank"]) == (83.99, 1)
    assert (results[p2["id"]]["score"], results[p2["id"]]["rank"]) == (62.68, 2)

    # trimmed mean: five reviews drop the highest and the lowest; a project with 2 of 5 reviews is unranked.
    trimmed = open_round(stack, criteria=PLAIN, aggregation="trimmed_mean", reviewers_per_project=5)
    full, thin = (enter(stack, trimmed["id"], org) for org in orgs)
    for reviewer in ("r1", "r2", "r3", "r4", "r5"):
        add_reviewer(stack, trimmed["id"], reviewer)
    run_assignment(stack, trimmed["id"])
    for reviewer, value in zip(("r1", "r2", "r3", "r4", "r5"), (10, 50, 60, 70, 100)):
        assert score(stack, trimmed["id"], full["id"], reviewer, {"overall": value}).status == 200
    for reviewer in ("r1", "r2"):
        assert score(stack, trimmed["id"], thin["id"], reviewer, {"overall": 99.5}).status == 200
    assert stack.client("evaluation", "officer").post(f"/api/v1/rounds/{trimmed['id']}/close").status == 200
    listed = stack.client("evaluation", "officer").get(f"/api/v1/rounds/{trimmed['id']}/results").body["items"]
    assert [(r["project_id"], r["score"], r["rank"], r["status"]) for r in listed] == [
        (full["id"], 60.0, 1, "ranked"), (thin["id"], 99.5, None, "insufficient_reviews")]
    # An unranked project cannot be awarded.
    refused = stack.client("evaluation", "officer").post(f"/api/v1/rounds/{trimmed['id']}/awards", {"awards": [
        {"project_id": thin["id"], "tier": "一等奖", "prize_fen": 100}]})
    check_problem(refused, 409)
    assert "insufficient_reviews" in refused.body["detail"]


def test_a_closed_round_can_be_audited_and_tampering_shows(world):
    """The close records a digest of every input; recomputing from the stored scores reproduces the results,
    and a score changed behind the service's back shows up as changed inputs."""
    stack = world
    orgs = register(stack, 3)
    round_ = open_round(stack, criteria=PLAIN, reviewers_per_project=1)
    rid = round_["id"]
    entered = [enter(stack, rid, org) for org in orgs]
    add_reviewer(stack, rid, "solo")
    run_assignment(stack, rid)
    for project, value in zip(entered, (80, 80.0, 40)):
        assert score(stack, rid, project["id"], "solo", {"overall": value}).status == 200
    officer = stack.client("evaluation", "officer")
    check_problem(officer.get(f"/api/v1/rounds/{rid}/verification"), 409)
    closed = officer.post(f"/api/v1/rounds/{rid}/close").body
    listed = officer.get(f"/api/v1/rounds/{rid}/results").body["items"]
    assert [(r["score"], r["rank"]) for r in listed] == [(80.0, 1), (80.0, 1), (40.0, 3)]
    assert [r["project_id"] for r in listed[:2]] == sorted(p["id"] for p in entered[:2])  # ties: by project id

    audit = officer.get(f"/api/v1/rounds/{rid}/verification")
    assert audit.status == 200
    assert audit.body["recorded_inputs_digest"] == audit.body["inputs_digest"] == closed["inputs_digest"]
    assert audit.body["inputs_unchanged"] is True and audit.body["results_reproduced"] is True

    stack.db("evaluation")["reviews"].update_one({"project_id": entered[2]["id"]}, {"$set": {"scores.overall": 95}})
    tampered = officer.get(f"/api/v1/rounds/{rid}/verification").body
    assert tampered["inputs_unchanged"] is False and tampered["results_reproduced"] is False
    assert tampered["recorded_inputs_digest"] == closed["inputs_digest"] != tampered["inputs_digest"]
    check_problem(stack.client("evaluation", "reviewer").get(f"/api/v1/rounds/{rid}/verification"), 403)
