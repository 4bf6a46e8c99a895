"""The fund service's reactions to other services' events, through the real broker and worker:
holds released by registry events, residencies ended by deregistration, awards turned into grants once.

The organization is registered through the registry's API; its risk changes are registry-shaped events
(snapshot with a higher `version`) published to the registry topic, the way the registry publishes them.
"""

from __future__ import annotations

from datetime import timedelta

from shared.events import Event
from tests.integration.fund_invariants import (fund_stack, known_organization, make_grant,  # noqa: F401
                                               open_fund)
from tests.support.clock import service_today
from tests.support.data import application
from tests.support.events import publish
from tests.support.stack import wait_until


def register(stack) -> dict:
    created = stack.client("registry", "applicant", sub="zhang").post("/api/v1/organizations", application())
    assert created.status == 201, created.body
    approved = stack.client("registry", "officer", sub="li").post(f"/api/v1/organizations/{created.body['id']}/approve")
    assert approved.status == 200, approved.body
    return approved.body


def fund_view_of(stack, organization_id) -> dict:
    return stack.db("fund")["organizations"].find_one({"_id": organization_id}) or {}


def publish_registry_change(stack, organization: dict, kind: str, **changes) -> dict:
    snapshot = {"id": organization["id"], "name": organization["name"], "uscc": organization["uscc"],
                "type": organization["type"], "status": organization["status"], "risk": organization["risk"],
                "version": organization["version"] + 1} | changes
    publish(stack, "registry", Event(type=f"registry.organization.{kind}", subject=organization["id"],
                                     data={"actor": "officer-li", "organization": snapshot}))
    return snapshot | {"version": snapshot["version"]}


def outbox_count(stack, event_type, **match) -> int:
    query = {"event.type": "org.socorg." + event_type} | {f"event.data.{k}": v for k, v in match.items()}
    return stack.db("fund")["outbox"].count_documents(query)


def test_hold_and_release_through_registry_events(fund_stack):
    stack = fund_stack.start_workers("registry", "fund")
    organization = register(stack)
    wait_until(lambda: fund_view_of(stack, organization["id"]).get("status") == "registered", timeout=20,
               message="fund read model sees the registration")
    fund = open_fund(stack)
    grant = make_grant(stack, fund["id"], organization["id"])
    officer = stack.client("fund", "officer", sub="li")
    unit = officer.post("/api/v1/park/units", {"code": "E-1", "area_m2": 80}).body
    today = service_today()
    residency = officer.post("/api/v1/park/residencies", {"organization_id": organization["id"], "unit": "E-1",
                                                         "start": (today - timedelta(days=5)).isoformat(),
                                                         "years": 3}).body

    flagged = publish_registry_change(stack, organization, "risk_flagged", risk="abnormal")
    wait_until(lambda: fund_view_of(stack, organization["id"]).get("risk") == "abnormal", timeout=20,
               message="abnormal flag reaches the fund")
    held = officer.post(f"/api/v1/grants/{grant['id']}/disbursements", {}, headers={"Idempotency-Key": "h"})
    assert held.status == 201 and held.body["status"] == "held", held.body
    assert officer.get(f"/api/v1/funds/{fund['id']}").body["disbursed_fen"] == 0

    cleared = publish_registry_change(stack, flagged, "risk_cleared", risk="none")
    wait_until(lambda: stack.db("fund")["grants"].find_one({"_id": grant["id"]})["held_fen"] == 0, timeout=20,
               message="the held tranche is released")
    released = officer.get(f"/api/v1/grants/{grant['id']}").body
    assert released["disbursed_fen"] == 330_000 and released["disbursements"][0]["status"] == "paid"
    assert outbox_count(stack, "fund.disbursement.released", grant_id=grant["id"]) == 1
    assert officer.get(f"/api/v1/funds/{fund['id']}").body["disbursed_fen"] == 330_000

    publish_registry_change(stack, cleared, "deregistered", status="deregistered")
    wait_until(lambda: officer.get(f"/api/v1/park/residencies/{residency['id']}").body["status"] == "ended",
               timeout=20, message="deregistration ends the residency")
    assert outbox_count(stack, "fund.park.residency_ended") == 1
    refused = officer.post(f"/api/v1/grants/{grant['id']}/disbursements", {}, headers={"Idempotency-Key": "d"})
    assert refused.status == 409 and "deregistered" in refused.body["detail"]
    assert unit["id"] == residency["unit_id"]


def award_event(project_id, organization_id, prize_fen, year=2026, **extra) -> Event:
    return Event(type="evaluation.award.granted", subject=project_id, data={
        "actor": "officer-li", "organization_id": organization_id, "project_id": project_id, "tier": "一等奖",
        "prize_fen": prize_fen, "year": year, **extra})


def processed(stack, event_id) -> bool:
    return stack.db("fund")["processed_events"].find_one({"_id": event_id}) is not None


def test_awards_become_grants_once_or_are_rejected_with_the_reason(fund_stack):
    stack = fund_stack.start_workers("fund")
    known_organization(stack, "org_award")
    older = open_fund(stack, budget_fen=1_000_000, name="2026年度专项基金（一期）")
    newest = open_fund(stack, budget_fen=1_000_000, name="2026年度专项基金（二期）")

    award = award_event("proj_1", "org_award", 300_000)
    publish(stack, "evaluation", award)
    publish(stack, "evaluation", award)  # delivered twice
    replay = Event(type=award.type, subject=award.subject, data=award.data)  # the same award under a new event id
    publish(stack, "evaluation", replay)
    wait_until(lambda: processed(stack, replay.id), timeout=20, message="all three deliveries consumed")
    grants = list(stack.db("fund")["grants"].find({"award_key": "proj_1"}))
    assert len(grants) == 1
    assert grants[0]["fund_id"] == newest["id"] and grants[0]["amount_fen"] == 300_000
    assert grants[0]["status"] == "active" and grants[0]["source"] == "award"
    assert outbox_count(stack, "fund.grant.created", **{"grant.award.key": "proj_1"}) == 1
    officer = stack.client("fund", "officer")
    assert officer.get(f"/api/v1/funds/{newest['id']}").body["committed_fen"] == 300_000

    named = award_event("proj_2", "org_award", 200_000, fund_id=older["id"])
    too_big = award_event("proj_3", "org_award", 800_000)
    no_fund = award_event("proj_4", "org_award", 1_000, year=2031)
    unknown = award_event("proj_5", "org_nobody", 1_000)
    for event in (named, too_big, no_fund, unknown):
        publish(stack, "evaluation", event)
    wait_until(lambda: all(processed(stack, e.id) for e in (named, too_big, no_fund, unknown)), timeout=20,
               message="awards consumed")
    by_project = {g["award"]["project_id"]: g for g in stack.db("fund")["grants"].find({"source": "award"})}
    assert by_project["proj_2"]["fund_id"] == older["id"] and by_project["proj_2"]["status"] == "active"
    assert by_project["proj_3"]["status"] == "rejected"
    assert "700000 fen available" in by_project["proj_3"]["rejection_reason"]
    assert "no fund for the award's year 2031" in by_project["proj_4"]["rejection_reason"]
    assert "not known" in by_project["proj_5"]["rejection_reason"]
    assert outbox_count(stack, "fund.grant.rejected") == 3
    rejected_event = stack.db("fund")["outbox"].find_one({"event.type": "org.socorg.fund.grant.rejected",
                                                          "event.data.grant.id": by_project["proj_3"]["_id"]})
    assert rejected_event["event"]["data"]["actor"] == "system" and rejected_event["key"] == by_project["proj_3"]["_id"]
    assert officer.get(f"/api/v1/funds/{newest['id']}").body["available_fen"] == 700_000
