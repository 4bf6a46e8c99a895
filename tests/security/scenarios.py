"""Requests that succeed for whoever may make them, per endpoint: the authorization matrix gives each allowed
cell one, and the audit test performs every officer action with them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from tests.support.clock import service_today
from tests.security.world import Organization, World, serial
from tests.support.data import application, council


@dataclass
class Target:
    """A request whose target belongs to `owner` (and, in evaluation, is reviewed by `reviewer`)."""

    path: str
    owner: Organization
    body: dict | None = None
    headers: dict = field(default_factory=dict)
    reviewer: str | None = None  # assigned to the target project
    other_reviewer: str | None = None  # assigned to another project of the round
    secret: str | None = None  # what a caller who does not own the target must not see (default: owner's id)


class Scenarios:
    """For each endpoint, how to build a request that succeeds for whoever the table allows. Endpoints not
    named in `special` need no fresh state: the seeded world's ids (a's organization, its project in the open
    round, the fund, the grant, the residency) are enough."""

    def __init__(self, world: World, seeds):
        self.world, self.seeds = world, seeds
        self.a = seeds.organizations["a"]
        self.open, self.closed = seeds.open_round, seeds.closed_round
        self.fund_id = seeds.ids["fund_id"][0]
        self.ids = {"organization_id": self.a.id, "uscc": self.a.uscc, "round_id": self.open.round_id,
                    "project_id": self.open.projects[0], "fund_id": self.fund_id,
                    "grant_id": seeds.ids["grant_id"][0], "residency_id": seeds.ids["residency_id"][0],
                    "filename": "swagger-ui.css"}  # a file of the docs page; the services ship no static ones

    def target(self, path: str, ids: dict | None = None, **kw) -> Target:
        """A target in a's part of the world: by default a's project in the open round, with its reviewer."""
        project = self.open.projects[0]
        kw.setdefault("reviewer", self.open.reviewer_of[project])
        kw.setdefault("other_reviewer", self.open.reviewer_of[self.open.projects[1]])
        return Target(fill(path, self.ids | (ids or {})), kw.pop("owner", self.a), **kw)

    def build(self, service: str, endpoint: str) -> Target:
        path = endpoint.split(" ", 1)[1]
        scenario = self.special().get(f"{service} {endpoint}")
        return scenario(path) if scenario else self.target(path)

    def special(self) -> dict[str, Callable[[str], Target]]:
        w, a, t = self.world, self.a, self.target
        reason = {"reason": "材料不齐全"}
        closed = {"round_id": self.closed.round_id}
        return {
            # registry: a fresh organization in the state each action needs
            "registry POST /api/v1/organizations": lambda p: t(p, body=application()),
            "registry POST /api/v1/organizations/{organization_id}/approve": lambda p: self.of(w.submitted(), p),
            "registry POST /api/v1/organizations/{organization_id}/reject":
                lambda p: self.of(w.submitted(), p, reason),
            "registry POST /api/v1/organizations/{organization_id}/deregister":
                lambda p: self.of(w.registered(), p, reason),
            "registry POST /api/v1/organizations/{organization_id}/term-renewals": lambda p: self.of(
                w.registered_long_ago(), p, {"election_date": service_today().isoformat(), "council": council(3),
                                             "term_years": 3}),
            "registry POST /api/v1/organizations/{organization_id}/term-renewals/{renewal_id}/approve": self.renewal,
            "registry POST /api/v1/organizations/{organization_id}/term-renewals/{renewal_id}/reject":
                lambda p: self.renewal(p, reason),
            "registry POST /api/v1/organizations/{organization_id}/annual-reports": lambda p: self.of(
                w.registered_long_ago(), p, {"year": service_today().year - 1, "income_fen": 100, "expenditure_fen": 50,
                                             "net_assets_fen": 50}),
            "registry POST /api/v1/organizations/{organization_id}/risk-flags": lambda p: self.of(
                w.registered(), p, {"list": "abnormal", "reason": "抽查发现未按规定开展活动"}),
            "registry POST /api/v1/organizations/{organization_id}/risk-flags/{flag_id}/clear": self.flag,
            "registry POST /api/v1/risk-sweeps": lambda p: t(p, body={"as_of": service_today().isoformat()}),
            # evaluation: new rounds, projects and reviewers where an action uses them up
            "evaluation POST /api/v1/rounds": lambda p: t(p, body={
                "name": "品牌项目评选", "year": service_today().year, "aggregation": "mean", "reviewers_per_project": 1,
                "criteria": [{"key": "overall", "label": "总体", "weight": 1, "max_score": 100}],
                "closes_at": f"{service_today().year + 1}-01-15"}),
            "evaluation POST /api/v1/rounds/{round_id}/projects": lambda p: t(p, body={
                "organization_id": a.id, "title": "社区长者助餐", "summary": "助餐服务", "budget_fen": 1_000_000}),
            "evaluation POST /api/v1/rounds/{round_id}/projects/{project_id}/disqualify":
                lambda p: t(p, {"project_id": w.project(self.open.round_id, a)}, body=reason),
            "evaluation POST /api/v1/rounds/{round_id}/reviewers": lambda p: t(p, body={
                "reviewer": f"matrix-reviewer-{serial()}", "name": "专家", "affiliations": []}),
            "evaluation POST /api/v1/rounds/{round_id}/assignments":
                lambda p: t(p, {"round_id": self.round_with_a_project()}),
            "evaluation PUT /api/v1/rounds/{round_id}/projects/{project_id}/scores":
                lambda p: t(p, body={"scores": {"overall": 66}, "comment": "再评"}),
            "evaluation GET /api/v1/rounds/{round_id}/assignments": lambda p: t(p, secret=self.open.projects[0]),
            "evaluation GET /api/v1/rounds/{round_id}/projects/{project_id}/reviews":
                lambda p: t(p, closed | {"project_id": self.closed.projects[0]}),
            "evaluation POST /api/v1/rounds/{round_id}/close": lambda p: t(p, {"round_id": w.round()}),
            "evaluation GET /api/v1/rounds/{round_id}/results": lambda p: t(p, closed),
            "evaluation GET /api/v1/rounds/{round_id}/verification": lambda p: t(p, closed),
            "evaluation POST /api/v1/rounds/{round_id}/awards": self.awards,
            "evaluation GET /api/v1/rounds/{round_id}/awards": lambda p: t(p, closed),
            # fund and park: new grants, units and residencies where an action uses them up
            "fund POST /api/v1/funds": lambda p: t(p, body={"name": "专项基金", "year": service_today().year,
                                                             "budget_fen": 1_000_000}),
            "fund POST /api/v1/funds/{fund_id}/grants": lambda p: t(p, body={
                "organization_id": a.id, "title": "社区服务资助", "amount_fen": 10_000, "tranches": [100]}),
            "fund POST /api/v1/grants/{grant_id}/disbursements": lambda p: t(
                p, {"grant_id": w.grant(self.fund_id, a, tranches=(100,))}, body={},
                headers={"Idempotency-Key": f"matrix-{serial()}"}),
            "fund POST /api/v1/grants/{grant_id}/clawbacks": self.clawback,
            "fund POST /api/v1/park/units": lambda p: t(p, body={"code": f"M{serial():05d}", "area_m2": 20}),
            "fund POST /api/v1/park/residencies": lambda p: t(p, body={
                "organization_id": a.id, "unit": w.unit(), "start": service_today().isoformat(), "years": 1}),
            "fund POST /api/v1/park/residencies/{residency_id}/graduate":
                lambda p: t(p, {"residency_id": w.residency(a)}),
        }

    def of(self, organization: Organization, path: str, body: dict | None = None) -> Target:
        return self.target(path, {"organization_id": organization.id}, owner=organization, body=body)

    def renewal(self, path: str, body: dict | None = None) -> Target:
        organization = self.world.registered_long_ago()
        renewal = self.world.renewal(organization)
        return self.target(path, {"organization_id": organization.id, "renewal_id": renewal}, owner=organization,
                           body=body)

    def flag(self, path: str) -> Target:
        organization = self.world.registered()
        flag = self.world.flag(organization)
        return self.target(path, {"organization_id": organization.id, "flag_id": flag}, owner=organization,
                           body={"reason": "已整改"})

    def round_with_a_project(self) -> str:
        round_id = self.world.round()
        self.world.project(round_id, self.a)
        self.world.reviewer(round_id)
        return round_id

    def awards(self, path: str) -> Target:
        scored = self.world.scored_round(self.a, close=True)
        return self.target(path, {"round_id": scored.round_id}, body={"awards": [
            {"project_id": scored.projects[0], "tier": "一等奖", "prize_fen": 100_000}]})

    def clawback(self, path: str) -> Target:
        grant = self.world.grant(self.fund_id, self.a, tranches=(100,))
        self.world.disburse(grant)
        return self.target(path, {"grant_id": grant}, body={"amount_fen": 100, "reason": "结余退回"})


def fill(path: str, ids: dict) -> str:
    return re.sub(r"{(\w+)}", lambda m: ids[m[1]], path)
