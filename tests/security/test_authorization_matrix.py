"""The authorization matrix: every endpoint of every service x role (none, applicant, reviewer, officer) x
ownership (own organization, another one, none). Exactly the cells the contract allows succeed (2xx); every
other cell answers 401 (no token), 403 (a role not allowed) or 403/404 (not the caller's), and changes nothing.

EXPECTED below is the contract's table (../shared/CONTRACT.md, "Auth" and each endpoint's role), in one place;
the cells are generated from it, and the test fails if a service has an endpoint the table does not name (or
the table names one that does not exist).

Ownership, per role:
- applicant: `own` acts for the target's organization, checked both ways the contract allows (the token's
  `org` claim names it; the token's `sub` filed its application); `another` acts for a different
  organization; `none` acts for no organization yet.
- reviewer: `own` is assigned to the target project; `another` is assigned to another project of the round;
  `none` reviews nothing.
- officer: officers belong to no organization; `own` / `another` carry an `org` claim naming the target's /
  another organization (which must change nothing), `none` carries none.
A cell that must succeed gets a fresh target of its own (a new application to approve, a new grant to pay...).
"""

from __future__ import annotations

import re
import json
from dataclasses import dataclass, field
from typing import Callable

import pytest

from tests.security.world import TODAY, Organization, World, seed, serial
from tests.support.data import application, council
from tests.support.stack import SERVICES, Stack

ROLES = (None, "applicant", "reviewer", "officer")  # None: no token at all
OWNERSHIPS = ("own", "another", "none")
ALL, OWN = frozenset(OWNERSHIPS), frozenset({"own"})
EVERYONE = {role: ALL for role in ROLES}  # public: no token needed
NOBODY: dict = {}  # nothing is served there
ANY_TOKEN = {"applicant": ALL, "reviewer": ALL, "officer": ALL}
OFFICERS = {"officer": ALL}
OPERATIONAL = {"GET /healthz": EVERYONE, "GET /readyz": EVERYONE, "GET /metrics": EVERYONE,
               "GET /openapi.json": EVERYONE, "GET /docs": EVERYONE,
               "GET /static/{filename}": NOBODY}  # Flask's default static route: the services ship no files

EXPECTED: dict[str, dict[str, dict]] = {
    "registry": {
        "POST /api/v1/organizations": {"applicant": ALL},  # any applicant may apply for a new organization
        "GET /api/v1/organizations": {"applicant": ALL, "officer": ALL},  # applicants: their own only
        "GET /api/v1/organizations/{organization_id}": {"applicant": OWN, "officer": ALL},
        "POST /api/v1/organizations/{organization_id}/approve": OFFICERS,
        "POST /api/v1/organizations/{organization_id}/reject": OFFICERS,
        "POST /api/v1/organizations/{organization_id}/deregister": OFFICERS,
        "GET /api/v1/organizations/{organization_id}/term-renewals": {"applicant": OWN, "officer": ALL},
        "POST /api/v1/organizations/{organization_id}/term-renewals": {"applicant": OWN},
        "POST /api/v1/organizations/{organization_id}/term-renewals/{renewal_id}/approve": OFFICERS,
        "POST /api/v1/organizations/{organization_id}/term-renewals/{renewal_id}/reject": OFFICERS,
        "GET /api/v1/organizations/{organization_id}/annual-reports": {"applicant": OWN, "officer": ALL},
        "POST /api/v1/organizations/{organization_id}/annual-reports": {"applicant": OWN},
        "GET /api/v1/organizations/{organization_id}/risk-flags": {"applicant": OWN, "officer": ALL},
        "POST /api/v1/organizations/{organization_id}/risk-flags": OFFICERS,
        "POST /api/v1/organizations/{organization_id}/risk-flags/{flag_id}/clear": OFFICERS,
        "POST /api/v1/risk-sweeps": OFFICERS,
        "GET /api/v1/public/organizations": EVERYONE,  # the public register
        "GET /api/v1/public/organizations/{uscc}": EVERYONE,
        "GET /api/v1/audit": OFFICERS,
        **OPERATIONAL,
    },
    "evaluation": {
        "GET /api/v1/organizations/{organization_id}": OFFICERS,  # the read model
        "POST /api/v1/rounds": OFFICERS,
        "GET /api/v1/rounds": ANY_TOKEN,
        "GET /api/v1/rounds/{round_id}": ANY_TOKEN,
        "POST /api/v1/rounds/{round_id}/projects": {"applicant": OWN},  # only for an organization it acts for
        "GET /api/v1/rounds/{round_id}/projects": {"applicant": ALL, "officer": ALL},  # applicants: their own
        "GET /api/v1/rounds/{round_id}/projects/{project_id}": {"applicant": OWN, "reviewer": OWN, "officer": ALL},
        "POST /api/v1/rounds/{round_id}/projects/{project_id}/disqualify": OFFICERS,
        "POST /api/v1/rounds/{round_id}/reviewers": OFFICERS,
        "GET /api/v1/rounds/{round_id}/reviewers": OFFICERS,
        "POST /api/v1/rounds/{round_id}/assignments": OFFICERS,
        "GET /api/v1/rounds/{round_id}/assignments": {"reviewer": ALL, "officer": ALL},  # reviewers: their own
        "PUT /api/v1/rounds/{round_id}/projects/{project_id}/scores": {"reviewer": OWN},  # assigned reviewer
        "GET /api/v1/rounds/{round_id}/projects/{project_id}/scores": {"reviewer": OWN},  # its own review
        # Other reviewers' scores once the round has closed (the matrix reads a closed round's reviews).
        "GET /api/v1/rounds/{round_id}/projects/{project_id}/reviews": {"reviewer": ALL, "officer": ALL},
        "POST /api/v1/rounds/{round_id}/close": OFFICERS,
        "GET /api/v1/rounds/{round_id}/results": ANY_TOKEN,  # applicants: their own projects
        "GET /api/v1/rounds/{round_id}/verification": OFFICERS,
        "POST /api/v1/rounds/{round_id}/awards": OFFICERS,
        "GET /api/v1/rounds/{round_id}/awards": ANY_TOKEN,
        "GET /api/v1/audit": OFFICERS,
        **OPERATIONAL,
    },
    "fund": {
        "GET /api/v1/organizations/{organization_id}": OFFICERS,
        "POST /api/v1/funds": OFFICERS,
        "GET /api/v1/funds": OFFICERS,
        "GET /api/v1/funds/{fund_id}": OFFICERS,
        "POST /api/v1/funds/{fund_id}/grants": OFFICERS,
        "GET /api/v1/funds/{fund_id}/grants": OFFICERS,
        "GET /api/v1/funds/{fund_id}/ledger": OFFICERS,
        "GET /api/v1/funds/{fund_id}/accounts": OFFICERS,
        "GET /api/v1/funds/{fund_id}/export.json": EVERYONE,  # open data (360Giving)
        "GET /api/v1/grants/{grant_id}": OFFICERS,
        "POST /api/v1/grants/{grant_id}/disbursements": OFFICERS,
        "GET /api/v1/grants/{grant_id}/disbursements": OFFICERS,
        "POST /api/v1/grants/{grant_id}/clawbacks": OFFICERS,
        "POST /api/v1/park/units": OFFICERS,
        "GET /api/v1/park/units": OFFICERS,
        "POST /api/v1/park/residencies": OFFICERS,
        "GET /api/v1/park/residencies": OFFICERS,
        "GET /api/v1/park/residencies/{residency_id}": OFFICERS,
        "POST /api/v1/park/residencies/{residency_id}/graduate": OFFICERS,
        "GET /api/v1/park/occupancy": OFFICERS,
        "GET /api/v1/audit": OFFICERS,
        **OPERATIONAL,
    },
}
# Lists that show some roles only their own: a caller of that role who does not own the target must not see it.
SCOPED = {("registry", "GET /api/v1/organizations"): "applicant",
          ("evaluation", "GET /api/v1/rounds/{round_id}/projects"): "applicant",
          ("evaluation", "GET /api/v1/rounds/{round_id}/results"): "applicant",
          ("evaluation", "GET /api/v1/rounds/{round_id}/assignments"): "reviewer"}


# -- the endpoints that exist ----------------------------------------------------------------------------------
def served_endpoints(stack, service: str) -> set[str]:
    """Every method and route of the service's Flask app (not only the documented ones)."""
    found = set()
    for rule in stack.app(service).url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add(f"{method} {path}")
    return found


def test_the_table_names_every_endpoint_and_only_those(stack):
    for service in SERVICES:
        served = served_endpoints(stack, service)
        assert served - set(EXPECTED[service]) == set(), f"{service} serves endpoints the table does not cover"
        assert set(EXPECTED[service]) - served == set(), f"the table names endpoints {service} does not serve"


# -- targets -------------------------------------------------------------------------------------------------
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
                    "filename": "app.js"}

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
                w.registered_long_ago(), p, {"election_date": TODAY.isoformat(), "council": council(3),
                                             "term_years": 3}),
            "registry POST /api/v1/organizations/{organization_id}/term-renewals/{renewal_id}/approve": self.renewal,
            "registry POST /api/v1/organizations/{organization_id}/term-renewals/{renewal_id}/reject":
                lambda p: self.renewal(p, reason),
            "registry POST /api/v1/organizations/{organization_id}/annual-reports": lambda p: self.of(
                w.registered_long_ago(), p, {"year": TODAY.year - 1, "income_fen": 100, "expenditure_fen": 50,
                                             "net_assets_fen": 50}),
            "registry POST /api/v1/organizations/{organization_id}/risk-flags": lambda p: self.of(
                w.registered(), p, {"list": "abnormal", "reason": "抽查发现未按规定开展活动"}),
            "registry POST /api/v1/organizations/{organization_id}/risk-flags/{flag_id}/clear": self.flag,
            "registry POST /api/v1/risk-sweeps": lambda p: t(p, body={"as_of": TODAY.isoformat()}),
            # evaluation: new rounds, projects and reviewers where an action uses them up
            "evaluation POST /api/v1/rounds": lambda p: t(p, body={
                "name": "品牌项目评选", "year": TODAY.year, "aggregation": "mean", "reviewers_per_project": 1,
                "criteria": [{"key": "overall", "label": "总体", "weight": 1, "max_score": 100}],
                "closes_at": f"{TODAY.year + 1}-01-15"}),
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
            "fund POST /api/v1/funds": lambda p: t(p, body={"name": "专项基金", "year": TODAY.year,
                                                             "budget_fen": 1_000_000}),
            "fund POST /api/v1/funds/{fund_id}/grants": lambda p: t(p, body={
                "organization_id": a.id, "title": "社区服务资助", "amount_fen": 10_000, "tranches": [100]}),
            "fund POST /api/v1/grants/{grant_id}/disbursements": lambda p: t(
                p, {"grant_id": w.grant(self.fund_id, a, tranches=(100,))}, body={},
                headers={"Idempotency-Key": f"matrix-{serial()}"}),
            "fund POST /api/v1/grants/{grant_id}/clawbacks": self.clawback,
            "fund POST /api/v1/park/units": lambda p: t(p, body={"code": f"M{serial():05d}", "area_m2": 20}),
            "fund POST /api/v1/park/residencies": lambda p: t(p, body={
                "organization_id": a.id, "unit": w.unit(), "start": TODAY.isoformat(), "years": 1}),
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


# -- the cells --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Caller:
    role: str | None
    ownership: str
    way: str = ""  # for an applicant's own organization: "by its org claim" or "by having filed it"

    def __str__(self) -> str:
        return f"{self.role or 'no token'} / {self.ownership}{' ' + self.way if self.way else ''}"


def callers() -> list[Caller]:
    found = []
    for role in ROLES:
        for ownership in OWNERSHIPS:
            if role == "applicant" and ownership == "own":
                found += [Caller(role, ownership, "by its org claim"), Caller(role, ownership, "by having filed it")]
            else:
                found.append(Caller(role, ownership))
    return found


def token_of(stack, caller: Caller, target: Target, another: Organization) -> str | None:
    role, ownership, owner = caller.role, caller.ownership, target.owner
    if role is None:
        return None
    if role == "applicant":
        if ownership == "own":
            if caller.way == "by having filed it":
                return stack.token("applicant", sub=owner.filer)
            return stack.token("applicant", sub=f"staff-of-{owner.id}", org=owner.id)
        if ownership == "another":
            return stack.token("applicant", sub=another.filer, org=another.id)
        return stack.token("applicant", sub="applicant-newcomer")
    if role == "reviewer":
        sub = {"own": target.reviewer, "another": target.other_reviewer, "none": "reviewer-outsider"}[ownership]
        return stack.token("reviewer", sub=sub)
    org = {"own": owner.id, "another": another.id, "none": None}[ownership]
    return stack.token("officer", sub="officer-matrix", org=org)


def send(stack, service: str, method: str, target: Target, token: str | None):
    headers = {"Content-Type": "application/json", **target.headers}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(target.body, ensure_ascii=False) if target.body is not None else None
    return stack.app(service).test_client().open(target.path, method=method, data=data, headers=headers)


def refusal_statuses(allowed: dict, caller: Caller) -> set[int]:
    if not allowed:
        return {404}  # nothing is served there, to anyone
    if caller.role is None:
        return {401}
    if caller.role not in allowed:
        return {403}
    return {403, 404}  # the role may, but not on what is not its own


def events(stack) -> dict[str, int]:
    return {service: stack.db(service)["outbox"].count_documents({}) for service in SERVICES}


@pytest.fixture(scope="module")
def scenarios(servers):
    stack = Stack(servers)
    world, seeds = seed(stack)
    yield Scenarios(world, seeds)
    stack.close()


@pytest.mark.parametrize("service", SERVICES)
def test_exactly_the_cells_the_contract_allows_succeed(scenarios, service):
    stack, another = scenarios.world.stack, scenarios.seeds.organizations["b"]
    failures, cells = [], 0
    for endpoint, allowed in EXPECTED[service].items():
        method = endpoint.split(" ", 1)[0]
        refused = [c for c in callers() if c.ownership not in allowed.get(c.role, ())]
        permitted = [c for c in callers() if c.ownership in allowed.get(c.role, ())]

        shared, before = scenarios.build(service, endpoint), events(stack)
        for caller in refused:  # all against one target: none of them may change it
            response = send(stack, service, method, shared, token_of(stack, caller, shared, another))
            cells += 1
            expected = refusal_statuses(allowed, caller)
            if response.status_code not in expected or response.mimetype != "application/problem+json":
                failures.append(f"{service} {endpoint} as {caller}: {response.status_code} "
                                f"{response.get_data(as_text=True)[:160]} (expected {sorted(expected)})")
        if events(stack) != before:
            failures.append(f"{service} {endpoint}: refused requests recorded events")

        for caller in permitted:  # each on a target of its own
            target = scenarios.build(service, endpoint)
            response = send(stack, service, method, target, token_of(stack, caller, target, another))
            cells += 1
            if not 200 <= response.status_code < 300:
                failures.append(f"{service} {endpoint} as {caller}: {response.status_code} "
                                f"{response.get_data(as_text=True)[:160]} (expected success)")
            elif SCOPED.get((service, endpoint)) == caller.role and caller.ownership != "own" \
                    and (target.secret or target.owner.id) in response.get_data(as_text=True):
                failures.append(f"{service} {endpoint} as {caller}: shows what is not the caller's")
    print(f"{service}: {len(EXPECTED[service])} endpoints, {cells} cells")
    assert failures == [], "\n".join(failures)
    assert cells == len(EXPECTED[service]) * len(callers())
