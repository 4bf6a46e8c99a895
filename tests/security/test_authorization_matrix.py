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

import json
import re
from dataclasses import dataclass

import pytest

from tests.security.scenarios import Scenarios, Target
from tests.security.world import Organization, seed
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
               "GET /docs/assets/{filename}": EVERYONE,  # Swagger UI's files, for the docs page
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
        "GET /api/v1/term-renewals": OFFICERS,  # the queue of renewals to decide, across organizations
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
