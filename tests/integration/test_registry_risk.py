"""Terms, annual reports and risk lists through the real stack: renewals, reports, officers' flags, sweeps
(endpoint and daily scheduler), and the events each one publishes.

An organization registered years ago is made by registering it today and moving its registration date
back in its document (`registered_long_ago`), recomputing the sweep markers with the registry's own domain
code, as a migration of old records would.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from services.registry import domain
from services.registry.handlers import store_for_worker
from tests.integration.test_registry_api import ORGS, apply, approve, check_problem, counts, outbox_events
from tests.support.clock import service_today
from tests.support.data import application, council
from tests.support.registry import rewrite_organization
from tests.support.stack import Stack, wait_until

TODAY = service_today()  # the registry's today; see below
REPORT = {"income_fen": 1_000_000, "expenditure_fen": 800_000, "net_assets_fen": 200_000}


@pytest.fixture(autouse=True)
def today_when_the_test_starts():
    """TODAY as each test starts: a suite that runs across midnight in Shanghai (16:00 UTC) must not compare the
    registry's dates with the day the module was imported (seen: raised_on 2026-11-30 against 2026-11-29)."""
    global TODAY
    TODAY = service_today()


def registered_long_ago(stack, registered_on: date, *, term_years: int = 5, reported=(), sub="zhang") -> dict:
    organization = approve(stack, apply(stack, application(term_years=term_years), sub=sub)["id"])
    return rewrite_organization(stack.db("registry"), organization["id"], lambda document: document.update(
        registered_on=registered_on.isoformat(),
        registered_at=datetime(registered_on.year, registered_on.month, registered_on.day, 2, tzinfo=timezone.utc),
        term=domain.term_from(registered_on, term_years), reports_checked_through=registered_on.year,
        reported_years=sorted(reported)))


def years_ago(years: int, month: int = 1, day: int = 15) -> date:
    return date(TODAY.year - years, month, day)


def sweep(stack, as_of: date, **kw):
    response = stack.client("registry", "officer", sub="li").post("/api/v1/risk-sweeps", {"as_of": as_of.isoformat()},
                                                                  **kw)
    assert response.status == 201, response.body
    return response.body


def flagged_for(result: dict, organization_id: str) -> list[str]:
    return sorted(item["reason"] for item in result["flagged"] if item["organization_id"] == organization_id)


def event_types(stack, organization_id) -> list[str]:
    return [e["type"].removeprefix("org.socorg.registry.organization.") for e in outbox_events(stack, organization_id)]


# -- term renewals -------------------------------------------------------------------------------------
def test_a_renewal_cannot_be_filed_long_before_the_term_ends(stack):
    organization = approve(stack, apply(stack)["id"])
    before = counts(stack)
    body = {"election_date": TODAY.isoformat(), "council": council(3), "term_years": 5}
    detail = check_problem(stack.client("registry", "applicant", sub="zhang").post(
        f"{ORGS}/{organization['id']}/term-renewals", body), 409)["detail"]
    assert "6 months" in detail
    assert counts(stack) == before


def test_renewal_filed_approved_starts_the_new_term_and_clears_term_overdue(stack):
    old = registered_long_ago(stack, years_ago(6), term_years=5, reported=range(TODAY.year - 6, TODAY.year))
    result = sweep(stack, TODAY)
    assert flagged_for(result, old["_id"]) == ["term_overdue"]
    applicant = stack.client("registry", "applicant", sub="zhang")
    election = years_ago(0, 1, 2) if TODAY > date(TODAY.year, 1, 2) else TODAY
    body = {"election_date": election.isoformat(), "council": council(5), "term_years": 3}
    filed = applicant.post(f"{ORGS}/{old['_id']}/term-renewals", body, headers={"Idempotency-Key": "renew-1"})
    assert filed.status == 201 and filed.body["status"] == "submitted", filed.body
    again = applicant.post(f"{ORGS}/{old['_id']}/term-renewals", body, headers={"Idempotency-Key": "renew-1"})
    assert again.body == filed.body
    check_problem(applicant.post(f"{ORGS}/{old['_id']}/term-renewals", body), 409)  # one pending at a time
    # the officers' queue across organizations: waiting ones, oldest first, with the organization's name
    officer = stack.client("registry", "officer", sub="li")
    waiting = officer.get("/api/v1/term-renewals").body
    assert [(r["id"], r["organization_name"]) for r in waiting["items"]] == [(filed.body["id"], old["name"])]
    assert waiting["total"] == 1 and officer.get("/api/v1/term-renewals?status=approved").body["total"] == 0
    check_problem(officer.get("/api/v1/term-renewals?status=pending"), 422)
    check_problem(applicant.get("/api/v1/term-renewals"), 403)

    approved = stack.client("registry", "officer", sub="li").post(
        f"{ORGS}/{old['_id']}/term-renewals/{filed.body['id']}/approve")
    assert approved.status == 200 and approved.body["status"] == "approved"
    organization = stack.client("registry", "officer").get(f"{ORGS}/{old['_id']}").body
    assert organization["term"] == domain.term_from(election, 3) and organization["term_years"] == 3
    assert len(organization["council"]) == 5 and organization["risk"] == "none"
    assert event_types(stack, old["_id"])[-2:] == ["term_renewed", "risk_cleared"]
    renewed = outbox_events(stack, old["_id"])[-2]["data"]
    assert renewed["actor"] == "li" and renewed["renewal"]["id"] == filed.body["id"]
    check_problem(stack.client("registry", "officer").post(
        f"{ORGS}/{old['_id']}/term-renewals/{filed.body['id']}/approve"), 409)
    listed = applicant.get(f"{ORGS}/{old['_id']}/term-renewals")
    assert listed.body["total"] == 1 and listed.body["items"][0]["status"] == "approved"
    assert officer.get("/api/v1/term-renewals").body["total"] == 0  # decided: out of the queue
    assert officer.get("/api/v1/term-renewals?status=approved").body["items"][0]["id"] == filed.body["id"]


def test_renewal_rejected_and_bad_renewals(stack):
    old = registered_long_ago(stack, years_ago(6), reported=range(TODAY.year - 6, TODAY.year))
    applicant, officer = stack.client("registry", "applicant", sub="zhang"), stack.client("registry", "officer")
    before = counts(stack)
    for body, field in [({"election_date": "2999-01-01", "council": council(3), "term_years": 5}, "election_date"),
                        ({"election_date": TODAY.isoformat(), "council": council(2), "term_years": 5}, "council"),
                        ({"election_date": TODAY.isoformat(), "council": council(3), "term_years": 9}, "term_years"),
                        ({"election_date": "not a date", "council": council(3), "term_years": 5}, "election_date")]:
        assert field in check_problem(applicant.post(f"{ORGS}/{old['_id']}/term-renewals", body), 422)["errors"]
    check_problem(officer.post(f"{ORGS}/{old['_id']}/term-renewals/ren_nope/approve"), 404)
    assert counts(stack) == before
    filed = applicant.post(f"{ORGS}/{old['_id']}/term-renewals",
                           {"election_date": TODAY.isoformat(), "council": council(3), "term_years": 5}).body
    rejected = officer.post(f"{ORGS}/{old['_id']}/term-renewals/{filed['id']}/reject", {"reason": "选举程序不合规"})
    assert rejected.status == 200 and rejected.body["status"] == "rejected"
    assert applicant.post(f"{ORGS}/{old['_id']}/term-renewals",
                          {"election_date": TODAY.isoformat(), "council": council(3), "term_years": 5}).status == 201


# -- annual reports ------------------------------------------------------------------------------------
def test_missing_report_flag_is_cleared_by_filing_it(stack):
    old = registered_long_ago(stack, years_ago(3), reported=[TODAY.year - 3, TODAY.year - 1])
    missing_year = TODAY.year - 2
    result = sweep(stack, TODAY)
    assert flagged_for(result, old["_id"]) == [f"annual_report_missing:{missing_year}"]
    organization = stack.client("registry", "officer").get(f"{ORGS}/{old['_id']}").body
    assert organization["risk"] == "abnormal"
    assert [f["reason"] for f in organization["active_flags"]] == [f"annual_report_missing:{missing_year}"]

    applicant = stack.client("registry", "applicant", sub="zhang")
    filed = applicant.post(f"{ORGS}/{old['_id']}/annual-reports", {"year": missing_year, **REPORT})
    assert filed.status == 201 and filed.body["year"] == missing_year, filed.body
    assert stack.client("registry", "officer").get(f"{ORGS}/{old['_id']}").body["risk"] == "none"
    assert event_types(stack, old["_id"])[-3:] == ["risk_flagged", "annual_report_filed", "risk_cleared"]
    report_event = outbox_events(stack, old["_id"])[-2]["data"]
    assert report_event["report"] == {"year": missing_year, **REPORT} and report_event["actor"] == "zhang"
    before = counts(stack)
    check_problem(applicant.post(f"{ORGS}/{old['_id']}/annual-reports", {"year": missing_year, **REPORT}), 409)
    assert counts(stack) == before
    listed = applicant.get(f"{ORGS}/{old['_id']}/annual-reports")
    assert [item["year"] for item in listed.body["items"]] == [missing_year]


def test_bad_reports_are_refused(stack):
    old = registered_long_ago(stack, years_ago(2))
    fresh = apply(stack, sub="zhang")  # not registered: nothing to report for
    applicant = stack.client("registry", "applicant", sub="zhang")
    before = counts(stack)
    for body, field in [({"year": TODAY.year, **REPORT}, "year"), ({"year": TODAY.year - 3, **REPORT}, "year"),
                        ({"year": TODAY.year - 1, **REPORT, "income_fen": -1}, "income_fen"),
                        ({"year": TODAY.year - 1, **REPORT, "expenditure_fen": 1.5}, "expenditure_fen"),
                        ({"year": TODAY.year - 1}, "income_fen")]:
        assert field in check_problem(applicant.post(f"{ORGS}/{old['_id']}/annual-reports", body), 422)["errors"]
    check_problem(applicant.post(f"{ORGS}/{fresh['id']}/annual-reports", {"year": TODAY.year - 1, **REPORT}), 409)
    assert counts(stack) == before


# -- officers' flags -----------------------------------------------------------------------------------
def test_flag_raise_history_and_clear(stack):
    organization = approve(stack, apply(stack)["id"])
    officer = stack.client("registry", "officer", sub="li")
    raised = officer.post(f"{ORGS}/{organization['id']}/risk-flags", {"list": "abnormal", "reason": "未按规定活动"},
                          headers={"Idempotency-Key": "flag-1"})
    assert raised.status == 201
    assert raised.body == raised.body | {"list": "abnormal", "reason": "未按规定活动", "raised_on": TODAY.isoformat(),
                                         "active": True, "origin": "officer"}
    again = officer.post(f"{ORGS}/{organization['id']}/risk-flags", {"list": "abnormal", "reason": "未按规定活动"},
                         headers={"Idempotency-Key": "flag-1"})
    assert again.body == raised.body
    serious = officer.post(f"{ORGS}/{organization['id']}/risk-flags", {"list": "serious", "reason": "严重违法"}).body
    assert officer.get(f"{ORGS}/{organization['id']}").body["risk"] == "serious"

    before = counts(stack)
    detail = check_problem(officer.post(f"{ORGS}/{organization['id']}/risk-flags/{serious['id']}/clear",
                                        {"reason": "太早"}), 409)["detail"]
    assert "2 years" in detail
    assert counts(stack) == before
    cleared = officer.post(f"{ORGS}/{organization['id']}/risk-flags/{raised.body['id']}/clear", {"reason": "已整改"})
    assert cleared.status == 200 and cleared.body["active"] is False and cleared.body["clear_reason"] == "已整改"
    check_problem(officer.post(f"{ORGS}/{organization['id']}/risk-flags/{raised.body['id']}/clear", {"reason": "x"}),
                  409)
    check_problem(officer.post(f"{ORGS}/{organization['id']}/risk-flags/flag_nope/clear", {"reason": "x"}), 404)

    history = stack.client("registry", "applicant", sub="zhang").get(f"{ORGS}/{organization['id']}/risk-flags")
    assert history.status == 200 and history.body["total"] == 2
    assert {item["id"]: item["active"] for item in history.body["items"]} == {raised.body["id"]: False,
                                                                               serious["id"]: True}
    events = [e for e in outbox_events(stack, organization["id"]) if "risk" in e["type"]]
    assert [e["type"].rsplit(".", 1)[1] for e in events] == ["risk_flagged", "risk_flagged", "risk_cleared"]
    assert [e["data"]["organization"]["risk"] for e in events] == ["abnormal", "serious", "serious"]
    assert events[0]["data"]["flag"] == {"id": raised.body["id"], "list": "abnormal", "reason": "未按规定活动",
                                         "raised_on": TODAY.isoformat(), "active": True, "origin": "officer"}


def test_bad_flags_are_refused(stack):
    officer = stack.client("registry", "officer")
    submitted = apply(stack)
    before = counts(stack)
    check_problem(officer.post(f"{ORGS}/{submitted['id']}/risk-flags", {"list": "abnormal", "reason": "x"}), 409)
    registered = approve(stack, apply(stack)["id"])
    before = counts(stack)
    for body in ({"list": "grey", "reason": "x"}, {"list": "abnormal"}, {"list": "abnormal", "reason": ""}):
        check_problem(officer.post(f"{ORGS}/{registered['id']}/risk-flags", body), 422)
    check_problem(officer.post(f"{ORGS}/org_nope/risk-flags", {"list": "abnormal", "reason": "x"}), 404)
    assert counts(stack) == before


# -- sweeps --------------------------------------------------------------------------------------------
def test_sweep_applies_every_rule_once_and_answers_what_it_did(stack):
    overdue = registered_long_ago(stack, years_ago(6), reported=range(TODAY.year - 6, TODAY.year))
    no_reports = registered_long_ago(stack, years_ago(3), reported=[TODAY.year - 3])
    fine = registered_long_ago(stack, years_ago(2), reported=[TODAY.year - 2, TODAY.year - 1])
    new = approve(stack, apply(stack)["id"])
    officer_flagged = approve(stack, apply(stack)["id"])
    old_flag = stack.client("registry", "officer").post(f"{ORGS}/{officer_flagged['id']}/risk-flags",
                                                        {"list": "abnormal", "reason": "未按规定活动"}).body
    # An officer's abnormal flag raised seven months ago expires (rule 4).
    rewrite_organization(stack.db("registry"), officer_flagged["id"], lambda document: document["flags"][0].update(
        raised_on=domain.add_months(TODAY, -7).isoformat()))

    result = sweep(stack, TODAY)
    assert flagged_for(result, overdue["_id"]) == ["term_overdue"]
    missing = [f"annual_report_missing:{year}" for year in range(TODAY.year - 2, domain.last_report_year_due(
        TODAY, domain.Rules()) + 1)]
    assert flagged_for(result, no_reports["_id"]) == missing
    assert flagged_for(result, fine["_id"]) == [] and flagged_for(result, new["id"]) == []
    assert [(item["organization_id"], item["id"], item["clear_reason"]) for item in result["cleared"]] == [
        (officer_flagged["id"], old_flag["id"], "expired")]
    item = next(i for i in result["flagged"] if i["organization_id"] == overdue["_id"])
    assert item == item | {"organization_name": overdue["name"], "list": "abnormal", "raised_on": TODAY.isoformat()}
    flagged_event = outbox_events(stack, overdue["_id"])[-1]
    assert flagged_event["type"].endswith("risk_flagged") and flagged_event["data"]["actor"] == "system"
    assert flagged_event["data"]["flag"]["reason"] == "term_overdue"

    before = counts(stack)
    second = sweep(stack, TODAY)
    assert second["flagged"] == [] and second["cleared"] == []
    assert counts(stack) == before


def test_escalation_to_serious_after_two_years(stack):
    old = registered_long_ago(stack, years_ago(5), reported=[TODAY.year - 5])
    first_missing = TODAY.year - 4
    two_years_ago = domain.add_years(TODAY, -2)
    first = sweep(stack, two_years_ago)  # raised two years ago
    assert f"annual_report_missing:{first_missing}" in flagged_for(first, old["_id"])
    result = sweep(stack, TODAY)
    serious = [i for i in result["flagged"] if i["organization_id"] == old["_id"] and i["list"] == "serious"]
    assert [i["reason"] for i in serious] == ["abnormal_two_years"] * len(serious) and serious
    organization = stack.client("registry", "officer").get(f"{ORGS}/{old['_id']}").body
    assert organization["risk"] == "serious"
    # The serious flag is new today, so it cannot be cleared yet.
    check_problem(stack.client("registry", "officer").post(
        f"{ORGS}/{old['_id']}/risk-flags/{serious[0]['id']}/clear", {"reason": "x"}), 409)


def test_sweep_arguments(stack):
    officer = stack.client("registry", "officer", sub="li")
    before = counts(stack)
    body = check_problem(officer.post("/api/v1/risk-sweeps", {"as_of": "2999-01-01"}), 422)
    assert "as_of" in body["errors"]
    check_problem(officer.post("/api/v1/risk-sweeps", {}), 422)
    check_problem(officer.post("/api/v1/risk-sweeps", {"as_of": "yesterday"}), 422)
    assert counts(stack) == before
    first = sweep(stack, TODAY, headers={"Idempotency-Key": "sweep-1"})
    assert sweep(stack, TODAY, headers={"Idempotency-Key": "sweep-1"}) == first
    check_problem(officer.post("/api/v1/risk-sweeps", {"as_of": "2020-01-01"}, headers={"Idempotency-Key": "sweep-1"}),
                  422)


@pytest.fixture
def scheduled_stack(servers):
    stack = Stack(servers, registry_sweep_check_seconds=0.2, registry_sweep_time="00:00")
    yield stack
    stack.close()


def test_daily_scheduler_sweeps_today_once(scheduled_stack):
    stack = scheduled_stack
    old = registered_long_ago(stack, years_ago(6), reported=range(TODAY.year - 6, TODAY.year))
    stack.start_workers("registry")
    sweeps = stack.db("registry")["risk_sweeps"]
    wait_until(lambda: (sweeps.find_one({"_id": f"daily:{TODAY.isoformat()}"}) or {}).get("state") == "done",
               timeout=30, message="the daily sweep")
    organization = stack.client("registry", "officer").get(f"{ORGS}/{old['_id']}").body
    assert [f["reason"] for f in organization["active_flags"]] == ["term_overdue"]
    assert outbox_events(stack, old["_id"])[-1]["data"]["actor"] == "system"
    # Today's sweep is done: asking again (as the job does every 0.2 s, in every replica) runs nothing.
    assert store_for_worker(stack.db("registry"), stack.settings).daily_sweep("00:00") is None
    assert sweeps.count_documents({"as_of": TODAY.isoformat(), "actor": "system"}) == 1


# -- every registry event type of the contract ---------------------------------------------------------
def test_every_contract_event_type_is_emitted_with_a_snapshot_and_an_actor(stack):
    old = registered_long_ago(stack, years_ago(3), reported=[TODAY.year - 3, TODAY.year - 1])
    sweep(stack, TODAY)
    stack.client("registry", "applicant", sub="zhang").post(f"{ORGS}/{old['_id']}/annual-reports",
                                                           {"year": TODAY.year - 2, **REPORT})
    overdue = registered_long_ago(stack, years_ago(6), reported=range(TODAY.year - 6, TODAY.year))
    sweep(stack, TODAY)
    renewal = stack.client("registry", "applicant", sub="zhang").post(
        f"{ORGS}/{overdue['_id']}/term-renewals", {"election_date": TODAY.isoformat(), "council": council(3),
                                                   "term_years": 5}).body
    stack.client("registry", "officer").post(f"{ORGS}/{overdue['_id']}/term-renewals/{renewal['id']}/approve")
    stack.client("registry", "officer").post(f"{ORGS}/{overdue['_id']}/deregister", {"reason": "解散"})
    rejected = apply(stack)
    stack.client("registry", "officer").post(f"{ORGS}/{rejected['id']}/reject", {"reason": "x"})

    records = list(stack.db("registry")["outbox"].find())
    types = {r["event"]["type"].removeprefix("org.socorg.registry.organization.") for r in records}
    assert types == {"submitted", "registered", "rejected", "term_renewed", "annual_report_filed", "risk_flagged",
                     "risk_cleared", "deregistered"}
    for record in records:
        data = record["event"]["data"]
        assert data["actor"] and {"id", "name", "uscc", "type", "status", "risk", "version"} == set(
            data["organization"])
        assert data["organization"]["risk"] in ("none", "abnormal", "serious")
        if "risk_" in record["event"]["type"]:
            assert {"list", "reason", "raised_on"} <= set(data["flag"])


def test_entries_an_earlier_version_left_behind_are_healed_and_removed(stack):
    """During a rolling upgrade a process of an earlier version changes organizations without writing their
    sweep entries: the follower adds what a changed organization lacks, and a sweep removes an entry that no
    longer matches its organization's markers (it selects the organization, which the sweep leaves alone)."""
    stack.start_workers("registry")
    entries = stack.db("registry")["sweep_due"]
    registered = approve(stack, apply(stack)["id"])
    mine = {e["_id"] for e in entries.find({"organization_id": registered["id"]})}
    assert {entry.split("|")[0] for entry in mine} == {"due_term_end", "reports_checked_through"}
    entries.delete_many({"_id": {"$in": sorted(mine)}})  # as if an earlier version had approved it
    stack.client("registry", "officer", sub="li").post(f"{ORGS}/{registered['id']}/risk-flags",
                                                       {"list": "abnormal", "reason": "未按规定活动"})
    wait_until(lambda: mine <= {e["_id"] for e in entries.find({"organization_id": registered["id"]})},
               timeout=20, message="the follower to add the entries the organization lacks")

    stale = f"due_term_end|2000-01-01|{registered['id']}"
    entries.insert_one({"_id": stale, "organization_id": registered["id"]})
    result = sweep(stack, TODAY)
    assert flagged_for(result, registered["id"]) == []
    assert entries.find_one({"_id": stale}) is None
    assert mine <= {e["_id"] for e in entries.find({"organization_id": registered["id"]})}
