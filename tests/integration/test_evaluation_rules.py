"""The award rules through the real stack: eligibility from registry events, disqualification by a registry
event while a round is open, who may score what and when, conflicts of interest, automatic assignment.

Risk flags and deregistrations are registry-shaped events published to the registry topic (snapshot with a
higher version), the way the registry publishes them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.integration.test_evaluation_support import (add_reviewer, assignments_of, check_problem,  # noqa: F401
                                                       enter, evaluation_counts, open_round, outbox_events,
                                                       publish_registry_change, register, run_assignment, score,
                                                       submitted_only, world)
from tests.support.events import publish
from tests.support.stack import wait_until

GOOD = {"quality": 7, "impact": 3}


def project_body(organization_id: str) -> dict:
    return {"organization_id": organization_id, "title": "社区长者助餐", "summary": "助餐", "budget_fen": 1_000_000}


class TestEligibility:
    def test_only_registered_organizations_without_risk_flags_enter(self, world):
        stack = world
        round_ = open_round(stack)
        rid = round_["id"]
        pending = submitted_only(stack)
        flagged, fine = register(stack, 2)
        publish_registry_change(stack, flagged, "risk_flagged", risk="abnormal")
        before = evaluation_counts(stack)

        def refused(organization, sub=None, org_claim=None):
            applicant = stack.client("evaluation", "applicant", sub=sub or organization["filed_by"], org=org_claim)
            return applicant.post(f"/api/v1/rounds/{rid}/projects", project_body(organization["id"]))

        not_registered = refused(pending)
        check_problem(not_registered, 409)
        assert "submitted, not registered" in not_registered.body["detail"]
        on_list = refused(flagged)
        check_problem(on_list, 409)
        assert "abnormal risk list" in on_list.body["detail"]
        unknown = stack.client("evaluation", "applicant", sub="x", org="org_nobody").post(
            f"/api/v1/rounds/{rid}/projects", project_body("org_nobody"))
        check_problem(unknown, 409)
        assert "not registered" in unknown.body["detail"]
        # Acting for an organization: its token's org claim or having filed its application; nobody else.
        check_problem(refused(fine, sub="a-stranger"), 403)
        check_problem(stack.client("evaluation", "officer").post(f"/api/v1/rounds/{rid}/projects",
                                                                 project_body(fine["id"])), 403)
        assert evaluation_counts(stack) == before

        assert enter(stack, rid, fine)["status"] == "entered"
        assert stack.client("evaluation", "officer").get(f"/api/v1/rounds/{rid}").body["projects"] == 1
        # Clearing the flag makes the organization eligible again.
        publish_registry_change(stack, flagged, "risk_cleared", risk="none")
        assert enter(stack, rid, flagged)["status"] == "entered"

    def test_no_entries_once_the_closing_time_passed_or_the_round_closed(self, world):
        stack = world
        [organization] = register(stack)
        late = open_round(stack)
        stack.db("evaluation")["rounds"].update_one(
            {"_id": late["id"]}, {"$set": {"closes_at": datetime.now(timezone.utc) - timedelta(seconds=1)}})
        applicant = stack.client("evaluation", "applicant", sub=organization["filed_by"])
        check_problem(applicant.post(f"/api/v1/rounds/{late['id']}/projects", project_body(organization["id"])), 409)
        closed = open_round(stack)
        assert stack.client("evaluation", "officer").post(f"/api/v1/rounds/{closed['id']}/close").status == 200
        refused = applicant.post(f"/api/v1/rounds/{closed['id']}/projects", project_body(organization["id"]))
        check_problem(refused, 409)
        assert "closed" in refused.body["detail"]

    def test_applicants_see_only_their_own_projects(self, world):
        stack = world
        mine, theirs = register(stack, 2)
        rid = open_round(stack)["id"]
        own = enter(stack, rid, mine)
        other = enter(stack, rid, theirs)
        applicant = stack.client("evaluation", "applicant", sub=mine["filed_by"])
        listed = applicant.get(f"/api/v1/rounds/{rid}/projects")
        assert [p["id"] for p in listed.body["items"]] == [own["id"]] and listed.body["total"] == 1
        assert applicant.get(f"/api/v1/rounds/{rid}/projects/{own['id']}").status == 200
        check_problem(applicant.get(f"/api/v1/rounds/{rid}/projects/{other['id']}"), 404)
        assert stack.client("evaluation", "officer").get(f"/api/v1/rounds/{rid}/projects").body["total"] == 2


class TestDisqualification:
    def test_a_serious_flag_disqualifies_projects_in_open_rounds_only(self, world):
        stack = world
        bad, good = register(stack, 2)
        open_one = open_round(stack)
        closed_one = open_round(stack)
        in_open = enter(stack, open_one["id"], bad)
        in_closed = enter(stack, closed_one["id"], bad)
        unaffected = enter(stack, open_one["id"], good)
        for reviewer in ("r1", "r2"):
            add_reviewer(stack, open_one["id"], reviewer)
        run_assignment(stack, open_one["id"])
        assert stack.client("evaluation", "officer").post(f"/api/v1/rounds/{closed_one['id']}/close").status == 200

        cause = publish_registry_change(stack, bad, "risk_flagged", risk="serious")
        officer = stack.client("evaluation", "officer")
        project_path = f"/api/v1/rounds/{open_one['id']}/projects/{in_open['id']}"
        wait_until(lambda: officer.get(project_path).body["status"] == "disqualified", timeout=30,
                   message="the project to be disqualified")
        assert officer.get(project_path).body["disqualified_reason"] == "organization_on_serious_risk_list"
        [event] = outbox_events(stack, "evaluation.project.disqualified", project_id=in_open["id"])
        assert event["subject"] == in_open["id"]
        assert event["data"] == event["data"] | {"actor": "system", "round_id": open_one["id"],
                                                 "organization_id": bad["id"], "cause_event_id": cause.id}
        # The closed round's project and the other organization's project are untouched.
        assert officer.get(f"/api/v1/rounds/{closed_one['id']}/projects/{in_closed['id']}").body["status"] == "entered"
        assert officer.get(f"/api/v1/rounds/{open_one['id']}/projects/{unaffected['id']}").body["status"] == "entered"
        assert not outbox_events(stack, "evaluation.project.disqualified", project_id=in_closed["id"])
        # Its reviewers are freed, and nobody may score it any more.
        assert in_open["id"] not in assignments_of(stack, open_one["id"])
        check_problem(score(stack, open_one["id"], in_open["id"], "r1", GOOD), 403)
        # The same event delivered again changes nothing.
        publish(stack, "registry", cause)
        publish_registry_change(stack, bad, "annual_report_filed")  # a later event: applied after the replay
        assert len(outbox_events(stack, "evaluation.project.disqualified", project_id=in_open["id"])) == 1
        # The results list it as disqualified, unranked.
        assert officer.post(f"/api/v1/rounds/{open_one['id']}/close").status == 200
        results = {r["project_id"]: r for r in officer.get(f"/api/v1/rounds/{open_one['id']}/results").body["items"]}
        assert (results[in_open["id"]]["status"], results[in_open["id"]]["rank"]) == ("disqualified", None)

    def test_deregistration_disqualifies_and_an_abnormal_flag_does_not(self, world):
        stack = world
        leaving, watched = register(stack, 2)
        rid = open_round(stack)["id"]
        gone = enter(stack, rid, leaving)
        kept = enter(stack, rid, watched)
        publish_registry_change(stack, watched, "risk_flagged", risk="abnormal")
        publish_registry_change(stack, leaving, "deregistered", status="deregistered")
        officer = stack.client("evaluation", "officer")
        wait_until(lambda: officer.get(f"/api/v1/rounds/{rid}/projects/{gone['id']}").body["status"] == "disqualified",
                   timeout=30)
        assert officer.get(f"/api/v1/rounds/{rid}/projects/{gone['id']}").body["disqualified_reason"] == \
            "organization_deregistered"
        # The abnormal flag was applied (publish_registry_change waits for it) and disqualified nothing.
        assert officer.get(f"/api/v1/organizations/{watched['id']}").body["risk"] == "abnormal"
        assert officer.get(f"/api/v1/rounds/{rid}/projects/{kept['id']}").body["status"] == "entered"

    def test_officers_may_disqualify_by_hand_while_open(self, world):
        stack = world
        [organization] = register(stack)
        rid = open_round(stack)["id"]
        project = enter(stack, rid, organization)
        officer = stack.client("evaluation", "officer", sub="officer-zhao")
        path = f"/api/v1/rounds/{rid}/projects/{project['id']}/disqualify"
        check_problem(officer.post(path, {"reason": ""}), 422)
        check_problem(stack.client("evaluation", "reviewer").post(path, {"reason": "抄袭"}), 403)
        done = officer.post(path, {"reason": "申报材料抄袭"})
        assert done.status == 200 and done.body["status"] == "disqualified"
        assert outbox_events(stack, "evaluation.project.disqualified", project_id=project["id"])[0]["data"]["actor"] \
            == "officer-zhao"
        check_problem(officer.post(path, {"reason": "again"}), 409)


class TestScoring:
    def setup_round(self, stack, **overrides):
        [organization] = register(stack)
        rid = open_round(stack, reviewers_per_project=2, **overrides)["id"]
        project = enter(stack, rid, organization)
        for reviewer in ("r1", "r2", "r3"):
            add_reviewer(stack, rid, reviewer)
        run_assignment(stack, rid)
        assigned = assignments_of(stack, rid)[project["id"]]
        outsider = ({"r1", "r2", "r3"} - set(assigned)).pop()
        return rid, project, assigned, outsider

    def test_who_may_score_what(self, world):
        stack = world
        rid, project, (first, second), outsider = self.setup_round(stack)
        path = f"/api/v1/rounds/{rid}/projects/{project['id']}/scores"
        check_problem(score(stack, rid, project["id"], outsider, GOOD), 403)
        check_problem(stack.client("evaluation", "officer").put(path, {"scores": GOOD}), 403)
        check_problem(stack.client("evaluation", "applicant").put(path, {"scores": GOOD}), 403)
        check_problem(stack.client("evaluation").put(path, {"scores": GOOD}), 401)
        check_problem(score(stack, rid, "prj_missing", first, GOOD), 404)
        check_problem(score(stack, "rnd_missing", project["id"], first, GOOD), 404)
        assert stack.db("evaluation")["reviews"].count_documents({"round_id": rid}) == 0

    def test_every_criterion_within_its_range_or_422_and_nothing_changes(self, world):
        stack = world
        rid, project, (first, _), _ = self.setup_round(stack)
        assert score(stack, rid, project["id"], first, GOOD).status == 200
        stored = stack.db("evaluation")["reviews"].find_one({"round_id": rid})
        before = evaluation_counts(stack)
        path = f"/api/v1/rounds/{rid}/projects/{project['id']}/scores"
        reviewer = stack.client("evaluation", "reviewer", sub=first)
        cases = [
            ({"scores": {"quality": 7}}, "scores.impact"),
            ({"scores": {"quality": 11, "impact": 3}}, "scores.quality"),
            ({"scores": {"quality": -0.5, "impact": 3}}, "scores.quality"),
            ({"scores": {"quality": 7, "impact": 5.01}}, "scores.impact"),
            ({"scores": {"quality": 7, "impact": 3, "budget": 1}}, "scores.budget"),
            ({"scores": {"quality": "7", "impact": 3}}, "scores.quality"),
            ({"scores": {"quality": True, "impact": 3}}, "scores.quality"),
            ({"scores": {"quality": None, "impact": 3}}, "scores.quality"),
            ({"scores": GOOD, "conflict": True}, "conflict"),
            ({"comment": "no scores"}, "scores"),
            ({"scores": GOOD, "extra": 1}, "extra"),
            ({"scores": [7, 3]}, "scores"),
        ]
        for body, field in cases:
            response = reviewer.put(path, body)
            check_problem(response, 422)
            assert any(name.startswith(field) for name in response.body["errors"]), (body, response.body)
        check_problem(reviewer.put(path, raw=b'{"scores": {"quality": 7,'), 400)
        assert evaluation_counts(stack) == before
        assert stack.db("evaluation")["reviews"].find_one({"round_id": rid}) == stored

    def test_editable_until_close_and_private_until_then(self, world):
        stack = world
        rid, project, (first, second), _ = self.setup_round(stack)
        path = f"/api/v1/rounds/{rid}/projects/{project['id']}/scores"
        mine = stack.client("evaluation", "reviewer", sub=first)
        check_problem(mine.get(path), 404)  # nothing scored yet
        assert score(stack, rid, project["id"], first, {"quality": 7, "impact": 3}).body["weighted_score"] == 66.0
        edited = score(stack, rid, project["id"], first, {"quality": 7.5, "impact": 2})
        assert edited.status == 200 and (edited.body["weighted_score"], edited.body["revision"]) == (61.0, 2)
        assert mine.get(path).body["scores"] == {"quality": 7.5, "impact": 2}
        assert score(stack, rid, project["id"], second, {"quality": 1, "impact": 1}).status == 200
        # Before close: the other reviewer's scores are nowhere to be seen.
        check_problem(mine.get(f"/api/v1/rounds/{rid}/projects/{project['id']}/reviews"), 403)
        own = stack.client("evaluation", "reviewer", sub=second).get(path)
        assert own.body["reviewer"] == second and own.body["scores"] == {"quality": 1, "impact": 1}
        check_problem(stack.client("evaluation", "reviewer", sub=second).get(
            f"/api/v1/rounds/{rid}/results"), 409)
        officer_view = stack.client("evaluation", "officer").get(f"/api/v1/rounds/{rid}/projects/{project['id']}/reviews")
        assert officer_view.status == 200 and officer_view.body["total"] == 2

        assert stack.client("evaluation", "officer").post(f"/api/v1/rounds/{rid}/close").status == 200
        check_problem(score(stack, rid, project["id"], first, GOOD), 409)
        assert mine.get(path).body["scores"] == {"quality": 7.5, "impact": 2}
        check_problem(stack.client("evaluation", "officer").post(f"/api/v1/rounds/{rid}/close"), 409)

    def test_nothing_is_scored_after_the_closing_time_even_before_the_close(self, world):
        stack = world
        rid, project, (first, second), _ = self.setup_round(stack)
        assert score(stack, rid, project["id"], first, GOOD).status == 200
        stack.db("evaluation")["rounds"].update_one(
            {"_id": rid}, {"$set": {"closes_at": datetime.now(timezone.utc) - timedelta(seconds=1)}})
        late = score(stack, rid, project["id"], second, GOOD)
        check_problem(late, 409)
        assert "stopped accepting" in late.body["detail"]
        check_problem(stack.client("evaluation", "reviewer", sub=second).put(
            f"/api/v1/rounds/{rid}/projects/{project['id']}/scores", {"conflict": True}), 409)
        assert stack.db("evaluation")["reviews"].count_documents({"round_id": rid}) == 1


class TestConflicts:
    def test_a_declared_conflict_drops_the_review_and_a_free_reviewer_replaces_it(self, world):
        stack = world
        [organization] = register(stack)
        rid = open_round(stack, reviewers_per_project=2)["id"]
        project = enter(stack, rid, organization)
        for reviewer in ("r1", "r2", "r3"):
            add_reviewer(stack, rid, reviewer)
        add_reviewer(stack, rid, "insider", affiliations=[organization["id"]])
        run_assignment(stack, rid)
        first, second = assignments_of(stack, rid)[project["id"]]
        free = ({"r1", "r2", "r3"} - {first, second}).pop()
        path = f"/api/v1/rounds/{rid}/projects/{project['id']}/scores"
        assert score(stack, rid, project["id"], first, GOOD).status == 200

        declared = stack.client("evaluation", "reviewer", sub=first).put(path, {"conflict": True,
                                                                                 "comment": "曾任该机构顾问"})
        assert declared.status == 200, declared.body
        assert declared.body["conflict"] is True and declared.body["replacement"] == free
        assert stack.db("evaluation")["reviews"].count_documents({"project_id": project["id"]}) == 0
        assert assignments_of(stack, rid)[project["id"]] == sorted([second, free])
        conflicts = stack.client("evaluation", "officer").get(f"/api/v1/rounds/{rid}/assignments?status=conflict")
        assert [(a["reviewer"], a["project_id"]) for a in conflicts.body["items"]] == [(first, project["id"])]
        replaced = stack.client("evaluation", "reviewer", sub=free).get(f"/api/v1/rounds/{rid}/assignments")
        assert replaced.body["items"][0]["replaces"] == first
        check_problem(score(stack, rid, project["id"], first, GOOD), 403)
        assert score(stack, rid, project["id"], free, GOOD).status == 200

        # The next conflict finds nobody free: the insider is affiliated, the first reviewer conflicted.
        again = stack.client("evaluation", "reviewer", sub=second).put(path, {"conflict": True})
        assert again.status == 200 and again.body["replacement"] is None
        assert assignments_of(stack, rid)[project["id"]] == [free]
        check_problem(stack.client("evaluation", "reviewer", sub=second).put(path, {"conflict": True}), 403)


class TestAssignment:
    def test_impossible_assignments_are_409_saying_why_and_change_nothing(self, world):
        stack = world
        [organization] = register(stack)
        rid = open_round(stack, reviewers_per_project=3)["id"]
        enter(stack, rid, organization)
        add_reviewer(stack, rid, "r1")
        add_reviewer(stack, rid, "r2")
        before = evaluation_counts(stack)
        refused = stack.client("evaluation", "officer").post(f"/api/v1/rounds/{rid}/assignments")
        check_problem(refused, 409)
        assert "needs 3 reviewers but the round has 2" in refused.body["detail"]
        add_reviewer(stack, rid, "r3", affiliations=[organization["id"]])
        refused = stack.client("evaluation", "officer").post(f"/api/v1/rounds/{rid}/assignments")
        check_problem(refused, 409)
        assert "only 2 of the round's 3 reviewers are neither affiliated" in refused.body["detail"]
        after = evaluation_counts(stack)
        reviewers_before, events_before = before.pop("reviewers"), before.pop("outbox")
        added = [r for r in after.pop("reviewers") if r not in reviewers_before]
        assert [(r["round_id"], r["reviewer"]) for r in added] == [(rid, "r3")]  # the only change: r3 joined
        [joined] = outbox_events(stack, "evaluation.reviewer.added", round_id=rid, reviewer="r3")
        assert [e for e in after.pop("outbox") if e not in events_before] == [joined["id"]]  # and its event
        assert after == before
        check_problem(stack.client("evaluation", "reviewer").post(f"/api/v1/rounds/{rid}/assignments"), 403)
        check_problem(stack.client("evaluation", "officer").post("/api/v1/rounds/rnd_missing/assignments"), 404)

    def test_rerun_keeps_scored_assignments_and_rebalances_the_rest(self, world):
        stack = world
        organizations = register(stack, 3)
        rid = open_round(stack, reviewers_per_project=2)["id"]
        projects = [enter(stack, rid, org) for org in organizations]
        for reviewer in ("r1", "r2", "r3"):
            add_reviewer(stack, rid, reviewer)
        assert run_assignment(stack, rid)["added"] == 6
        first = assignments_of(stack, rid)
        again = run_assignment(stack, rid)  # nothing changed: the same assignments stay
        assert (again["added"], again["removed"], again["assignments"]) == (0, 0, 6)
        assert assignments_of(stack, rid) == first
        scored = [(p["id"], first[p["id"]][0]) for p in projects]
        for project_id, reviewer in scored:
            assert score(stack, rid, project_id, reviewer, GOOD).status == 200
        add_reviewer(stack, rid, "r4")  # six slots over four reviewers: loads 1..2
        ran = run_assignment(stack, rid)
        assert (ran["min_load"], ran["max_load"], ran["assignments"]) == (1, 2, 6)
        after = assignments_of(stack, rid)
        assert all(reviewer in after[project_id] for project_id, reviewer in scored)
        loads = {}
        for reviewers in after.values():
            for reviewer in reviewers:
                loads[reviewer] = loads.get(reviewer, 0) + 1
        assert set(loads) == {"r1", "r2", "r3", "r4"} and max(loads.values()) - min(loads.values()) <= 1
        listed = stack.client("evaluation", "officer").get(f"/api/v1/rounds/{rid}/reviewers")
        assert {r["reviewer"]: r["load"] for r in listed.body["items"]} == loads


class Recorded:
    """A collection that notes the filter of every read and update sent to it (then sends it on)."""

    def __init__(self, collection):
        self.collection = collection
        self.filters: list[dict] = []

    def __getattr__(self, name):
        method = getattr(self.collection, name)
        if name not in ("find", "find_one", "count_documents", "update_one", "update_many", "delete_one"):
            return method

        def recorded(filter=None, *args, **kwargs):
            self.filters.append(filter or {})
            return method(filter, *args, **kwargs)

        return recorded


class TestProjectReads:
    def test_a_projects_assignments_and_reviews_are_read_through_an_index(self, world):
        """On SecantusDB an `_id` range, or `$in` beside another condition, reads the whole collection (0.5 s at
        25,000 assignments): every query declaring a conflict, listing a project's reviews and disqualifying
        sends must be one the server answers from an index."""
        stack = world
        rid, project, (first, second), _ = TestScoring().setup_round(stack)
        store = stack.app("evaluation").extensions["socorg"].store
        store.assignments, store.reviews = Recorded(store.assignments), Recorded(store.reviews)
        try:
            path = f"/api/v1/rounds/{rid}/projects/{project['id']}"
            assert score(stack, rid, project["id"], second, GOOD).status == 200
            declared = stack.client("evaluation", "reviewer", sub=first).put(f"{path}/scores", {"conflict": True})
            assert declared.status == 200 and declared.body["replacement"] is not None
            officer = stack.client("evaluation", "officer")
            listed = officer.get(f"{path}/reviews")
            assert listed.status == 200 and [r["reviewer"] for r in listed.body["items"]] == [second]
            assert listed.body["total"] == 1
            assert officer.post(f"{path}/disqualify", {"reason": "申报材料抄袭"}).status == 200
            assert sorted(a["status"] for a in store.assignments.collection.find({"project_id": project["id"]})) \
                == ["conflict", "withdrawn", "withdrawn"]
        finally:
            recorded = {"assignments": store.assignments, "reviews": store.reviews}
            store.assignments, store.reviews = recorded["assignments"].collection, recorded["reviews"].collection
        checked = 0
        for name, proxy in recorded.items():
            for query in proxy.filters:
                if "round_id" in query:  # round-wide reads and updates: served by the round's compound indexes
                    continue
                plan = proxy.collection.find(query).explain()["queryPlanner"]["winningPlan"]
                assert plan["stage"] != "COLLSCAN", (name, query, plan)
                checked += 1
        assert checked >= 5
