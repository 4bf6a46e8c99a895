"""A small real world built through the services' APIs, for the fuzzing, authorization and privacy tests.

Organizations are filed by their own applicants and approved by an officer; evaluation and fund learn them
from the registry's events (the workers run while the world is built). Each helper makes one fresh resource
and returns it, so a test can give every cell that must succeed a target of its own.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from services.registry import domain as registry_domain
from tests.support.clock import service_today
from tests.support.data import application, council
from tests.support.registry import rewrite_organization
from tests.support.stack import Stack, wait_until

OFFICER = "officer-li"
PLAIN = [{"key": "overall", "label": "总体", "weight": 1, "max_score": 100}]
_serial = itertools.count(1)


def serial() -> int:
    return next(_serial)


@dataclass
class Organization:
    id: str
    filer: str  # the applicant sub that filed it
    body: dict  # the application as filed
    uscc: str | None = None


def ok(response, status: int = 200):
    assert response.status == status, (response.status, response.body)
    return response.body


class World:
    """Fresh resources on a stack, made through the APIs as their owners would."""

    def __init__(self, stack: Stack):
        self.stack = stack

    def officer(self, service: str):
        return self.stack.client(service, "officer", sub=OFFICER)

    # -- registry ------------------------------------------------------------------------------------------
    def submitted(self, **overrides) -> Organization:
        filer = f"applicant-{serial()}"
        body = application(**overrides)
        created = ok(self.stack.client("registry", "applicant", sub=filer).post("/api/v1/organizations", body), 201)
        return Organization(created["id"], filer, body)

    def registered(self, **overrides) -> Organization:
        organization = self.submitted(**overrides)
        approved = ok(self.officer("registry").post(f"/api/v1/organizations/{organization.id}/approve"))
        organization.uscc = approved["uscc"]
        return organization

    def registered_long_ago(self, years: int = 3, term_years: int = 1) -> Organization:
        """Registered `years` ago (its document moved back, as a migration of old records would) with a term
        that has ended: it may file renewals and the reports of the years since."""
        organization = self.registered(term_years=term_years)
        since = date(service_today().year - years, 3, 1)
        rewrite_organization(self.stack.db("registry"), organization.id, lambda document: document.update(
            registered_on=since.isoformat(), reports_checked_through=since.year,
            registered_at=datetime(since.year, since.month, since.day, 2, tzinfo=timezone.utc),
            term=registry_domain.term_from(since, term_years)))
        return organization

    def renewal(self, organization: Organization) -> str:
        body = {"election_date": service_today().isoformat(), "council": council(3), "term_years": 3}
        client = self.stack.client("registry", "applicant", sub=organization.filer)
        return ok(client.post(f"/api/v1/organizations/{organization.id}/term-renewals", body), 201)["id"]

    def flag(self, organization: Organization, list_: str = "abnormal") -> str:
        body = {"list": list_, "reason": "抽查发现未按规定开展活动"}
        return ok(self.officer("registry").post(f"/api/v1/organizations/{organization.id}/risk-flags", body), 201)["id"]

    def known_to(self, organization: Organization, *services: str, status: str = "registered") -> None:
        """Wait until evaluation and fund (or `services`) know the organization in `status`."""
        for service in services or ("evaluation", "fund"):
            wait_until(lambda: (self.stack.db(service)["organizations"].find_one({"_id": organization.id}) or {})
                       .get("status") == status, timeout=30, message=f"{service} to learn {organization.id}")

    # -- evaluation ----------------------------------------------------------------------------------------
    def round(self, reviewers_per_project: int = 1, year: int | None = None) -> str:
        year = year or service_today().year
        body = {"name": f"{year}年度品牌项目评选第{serial()}轮", "year": year, "criteria": PLAIN,
                "aggregation": "mean", "reviewers_per_project": reviewers_per_project,
                "closes_at": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()}
        return ok(self.officer("evaluation").post("/api/v1/rounds", body), 201)["id"]

    def project(self, round_id: str, organization: Organization) -> str:
        body = {"organization_id": organization.id, "title": f"社区助老项目{serial()}",
                "summary": "为社区长者提供助餐服务", "budget_fen": 12_000_000}
        client = self.stack.client("evaluation", "applicant", sub=organization.filer)
        return ok(client.post(f"/api/v1/rounds/{round_id}/projects", body), 201)["id"]

    def reviewer(self, round_id: str, sub: str | None = None) -> str:
        sub = sub or f"reviewer-{serial()}"
        body = {"reviewer": sub, "name": f"专家{sub}", "affiliations": []}
        ok(self.officer("evaluation").post(f"/api/v1/rounds/{round_id}/reviewers", body), 201)
        return sub

    def assign(self, round_id: str) -> dict[str, str]:
        """Run the assignment; answer project id -> its reviewer (rounds of one reviewer per project)."""
        ok(self.officer("evaluation").post(f"/api/v1/rounds/{round_id}/assignments"))
        listed = ok(self.officer("evaluation").get(f"/api/v1/rounds/{round_id}/assignments?per_page=100"))
        return {item["project_id"]: item["reviewer"] for item in listed["items"]}

    def score(self, round_id: str, project_id: str, reviewer: str, value: int = 80) -> None:
        client = self.stack.client("evaluation", "reviewer", sub=reviewer)
        ok(client.put(f"/api/v1/rounds/{round_id}/projects/{project_id}/scores",
                      {"scores": {"overall": value}, "comment": "方案完整"}))

    def close(self, round_id: str) -> None:
        ok(self.officer("evaluation").post(f"/api/v1/rounds/{round_id}/close"))

    def scored_round(self, *organizations: Organization, close: bool = False) -> "ScoredRound":
        """A round where each organization entered one project, each project has its own reviewer who scored it."""
        round_id = self.round()
        projects = [self.project(round_id, organization) for organization in organizations]
        for _ in projects:
            self.reviewer(round_id)
        reviewer_of = self.assign(round_id)
        for project_id in projects:
            self.score(round_id, project_id, reviewer_of[project_id])
        if close:
            self.close(round_id)
        return ScoredRound(round_id, projects, reviewer_of)

    def award(self, scored: "ScoredRound", fund_id: str | None = None) -> dict:
        award = {"project_id": scored.projects[0], "tier": "一等奖", "prize_fen": 500_000}
        if fund_id:
            award["fund_id"] = fund_id
        return ok(self.officer("evaluation").post(f"/api/v1/rounds/{scored.round_id}/awards", {"awards": [award]}),
                  201)

    # -- fund and park ---------------------------------------------------------------------------------------
    def fund(self, budget_fen: int = 100_000_000, year: int | None = None) -> str:
        year = year or service_today().year
        body = {"name": f"社会组织发展专项基金{serial()}", "year": year, "budget_fen": budget_fen}
        return ok(self.officer("fund").post("/api/v1/funds", body), 201)["id"]

    def grant(self, fund_id: str, organization: Organization, tranches=(50, 50)) -> str:
        body = {"organization_id": organization.id, "title": f"社区服务资助{serial()}", "amount_fen": 1_000_000,
                "tranches": list(tranches)}
        return ok(self.officer("fund").post(f"/api/v1/funds/{fund_id}/grants", body), 201)["id"]

    def disburse(self, grant_id: str) -> dict:
        return ok(self.officer("fund").post(f"/api/v1/grants/{grant_id}/disbursements", {},
                                            headers={"Idempotency-Key": f"pay-{serial()}"}), 201)

    def unit(self) -> str:
        code = f"U{serial():04d}"
        ok(self.officer("fund").post("/api/v1/park/units", {"code": code, "area_m2": 48.5}), 201)
        return code

    def residency(self, organization: Organization) -> str:
        body = {"organization_id": organization.id, "unit": self.unit(), "start": service_today().isoformat(), "years": 2}
        return ok(self.officer("fund").post("/api/v1/park/residencies", body), 201)["id"]


@dataclass
class ScoredRound:
    round_id: str
    projects: list[str]
    reviewer_of: dict[str, str]  # project id -> reviewer sub


@dataclass
class Seeds:
    """One of each resource, for tests that need real ids rather than fresh targets."""

    organizations: dict[str, Organization] = field(default_factory=dict)  # registered a, b; flagged c; submitted d
    ids: dict[str, list[str]] = field(default_factory=dict)  # path parameter name -> real ids
    open_round: ScoredRound | None = None  # a, b entered; each project scored by its own reviewer
    closed_round: ScoredRound | None = None  # the same, closed and awarded


def seed(stack: Stack) -> tuple[World, Seeds]:
    """Workers run while the world is built (the read models need the registry's events); they are stopped
    before returning, so the test that follows runs without background load unless it starts them again."""
    world, seeds = World(stack), Seeds()
    stack.start_workers()
    a, b, c = world.registered(), world.registered(), world.registered()
    d, old = world.submitted(), world.registered_long_ago()
    renewal = world.renewal(old)
    flag = world.flag(c)
    for organization in (a, b):
        world.known_to(organization)
    world.known_to(c, "evaluation", "fund")
    fund = world.fund()
    open_round = world.scored_round(a, b)
    closed_round = world.scored_round(a, b, close=True)
    world.award(closed_round, fund_id=fund)
    grant = world.grant(fund, a)
    world.disburse(grant)
    residency = world.residency(a)
    wait_until(lambda: stack.db("fund")["grants"].count_documents({}) >= 2, timeout=30,
               message="the fund to grant the award")
    stack.stop_workers()
    seeds.organizations = {"a": a, "b": b, "c": c, "d": d, "old": old}
    seeds.ids = {
        "organization_id": [o.id for o in (a, b, c, d, old)],
        "uscc": [o.uscc for o in (a, b, c, old)],
        "renewal_id": [renewal],
        "flag_id": [flag],
        "round_id": [open_round.round_id, closed_round.round_id],
        "project_id": open_round.projects + closed_round.projects,
        "fund_id": [fund],
        "grant_id": [g["_id"] for g in stack.db("fund")["grants"].find({}, {"_id": 1})],
        "residency_id": [residency],
    }
    seeds.open_round, seeds.closed_round = open_round, closed_round
    return world, seeds
