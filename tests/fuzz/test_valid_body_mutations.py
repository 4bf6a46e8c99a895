"""Mutation fuzzing from valid requests: every field of a request that would succeed is replaced, one at a
time, by hostile values (integers past 8 bytes, NaN, dates near year 1 and 9999, empty and huge strings,
MongoDB operators, wrong types), and so is the whole body.

schemathesis (test_openapi_fuzz.py) generates requests from the documents, so a field's hostile value rarely
travels with an otherwise valid body and reaches the rules and the database; this does, deterministically:
it found 8-byte overflows (registry funds, members and report figures, evaluation budgets and prizes) and
date overflows (sweeps, park residencies and occupancy, round deadlines) that answered 500.

Every answer must be below 500, every refusal problem+json without a stack trace, and a refused request
must publish no event (its service's outbox is unchanged).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlencode

import pytest

from tests.support.clock import service_today
from tests.security.world import World, seed, serial
from tests.support.data import application, council, foundation_application, social_group_application
from tests.support.stack import Stack

PROBLEM = "application/problem+json"
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
NAN, INFINITY = float("nan"), float("inf")  # Python's JSON reader accepts NaN and Infinity

INTEGERS = [2**63, 2**63 - 1, 2**70, -2**70, -1, 0, 10**15 + 1, 1.5, NAN, INFINITY, "12", True]
NUMBERS = [1e308, -1e308, NAN, INFINITY, -INFINITY, 0, "1.0", True]
STRINGS = ["", "   ", "x" * 5001, "\u0000", "\ud800", "😀" * 60, "<script>alert(1)</script>", "' OR 1=1 --",
           {"$gt": ""}, {"$where": "sleep(1000)"}, ["a"], 7]
DATES = ["0001-01-01", "9999-12-31", "1899-12-31", "3000-01-01", "2026-02-30", "2026-13-01", "yesterday",
         "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "2026-01-01T25:00:00"]
LISTS = [[], [None], "x", {}, [{}] * 300]
OBJECTS = [{}, [], "x", {"$set": {"status": "registered"}}]
ANY = [None]
WHOLE_BODIES = [None, [], "x", 7, {}, {"$where": "1"}]


def hostile_values(value: Any) -> list:
    if isinstance(value, bool):
        return ["true", 1] + ANY
    if isinstance(value, int):
        return INTEGERS + ANY
    if isinstance(value, float):
        return NUMBERS + ANY
    if isinstance(value, str):
        return (DATES if DATE.match(value) else []) + STRINGS + ANY
    if isinstance(value, list):
        return LISTS + ANY
    if isinstance(value, dict):
        return OBJECTS + ANY
    return ANY


def leaves(value: Any, path: tuple = ()):
    """Every position in a JSON value (objects' fields, lists' first items), with the value found there."""
    if path:
        yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, path + (key,))
    elif isinstance(value, list) and value:
        yield from leaves(value[0], path + (0,))


def replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = list(value) if isinstance(value, list) else dict(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


@dataclass
class Request:
    """One operation with a request that would succeed; `body` or `query` is what gets mutated."""

    service: str
    method: str
    path: Callable[[], str]  # built per request, so each may target a fresh resource
    client: Callable[[], Any]
    body: Callable[[], dict] | None = None
    query: Callable[[], dict] | None = None
    headers: Callable[[], dict] = dict

    @property
    def label(self) -> str:
        return f"{self.service} {self.method} {self.path.__doc__ or ''}"


def requests_of(stack: Stack, world: World, seeds) -> list[Request]:
    a, old = seeds.organizations["a"], seeds.organizations["old"]
    c, flag = seeds.organizations["c"], seeds.ids["flag_id"][0]
    open_round, closed_round = seeds.open_round, seeds.closed_round
    fund, grant = seeds.ids["fund_id"][0], seeds.ids["grant_id"][0]
    reviewer = open_round.reviewer_of[open_round.projects[0]]

    def officer(service):
        return lambda: stack.client(service, "officer", sub="officer-fuzz")

    def applicant(service, organization):
        return lambda: stack.client(service, "applicant", sub=organization.filer, org=organization.id)

    def at(path: str) -> Callable[[], str]:
        def build():
            return path
        build.__doc__ = path
        return build

    new_applicant = lambda: stack.client("registry", "applicant", sub=f"fuzz-applicant-{serial()}")  # noqa: E731
    reason = lambda: {"reason": "材料不齐全"}  # noqa: E731
    return [
        # registry
        Request("registry", "POST", at("/api/v1/organizations"), new_applicant, body=application),
        Request("registry", "POST", at("/api/v1/organizations"), new_applicant, body=social_group_application),
        Request("registry", "POST", at("/api/v1/organizations"), new_applicant, body=foundation_application),
        Request("registry", "POST", at(f"/api/v1/organizations/{old.id}/term-renewals"), applicant("registry", old),
                body=lambda: {"election_date": service_today().isoformat(), "council": council(3), "term_years": 3}),
        Request("registry", "POST", at(f"/api/v1/organizations/{old.id}/annual-reports"), applicant("registry", old),
                body=lambda: {"year": service_today().year - 1, "income_fen": 1_000_000, "expenditure_fen": 800_000,
                              "net_assets_fen": 200_000}),
        Request("registry", "POST", at(f"/api/v1/organizations/{a.id}/risk-flags"), officer("registry"),
                body=lambda: {"list": "abnormal", "reason": "抽查发现未按规定开展活动"}),
        Request("registry", "POST", at(f"/api/v1/organizations/{c.id}/risk-flags/{flag}/clear"), officer("registry"),
                body=reason),
        Request("registry", "POST", at("/api/v1/organizations/{submitted}/reject"), officer("registry"), body=reason),
        Request("registry", "POST", at("/api/v1/risk-sweeps"), officer("registry"),
                body=lambda: {"as_of": service_today().isoformat()}),
        Request("registry", "GET", at("/api/v1/organizations"), officer("registry"),
                query=lambda: {"q": "浦东", "status": "registered", "type": "social_service_agency", "risk": "none",
                               "page": 1, "per_page": 20}),
        Request("registry", "GET", at("/api/v1/public/organizations"), lambda: stack.client("registry"),
                query=lambda: {"q": "浦东", "type": "social_service_agency", "risk": "none", "page": 1}),
        # evaluation
        Request("evaluation", "POST", at("/api/v1/rounds"), officer("evaluation"), body=lambda: {
            "name": "品牌项目评选", "year": service_today().year, "aggregation": "trimmed_mean", "reviewers_per_project": 2,
            "criteria": [{"key": "quality", "label": "质量", "weight": 0.6, "max_score": 10},
                         {"key": "impact", "label": "影响", "weight": 0.4, "max_score": 5}],
            "closes_at": f"{service_today().year + 1}-01-15T18:00:00+08:00"}),
        Request("evaluation", "POST", at(f"/api/v1/rounds/{open_round.round_id}/projects"),
                applicant("evaluation", a), body=lambda: {"organization_id": a.id, "title": "社区长者助餐",
                                                          "summary": "为社区长者提供助餐服务", "budget_fen": 12_000_000}),
        Request("evaluation", "POST", at(f"/api/v1/rounds/{open_round.round_id}/reviewers"), officer("evaluation"),
                body=lambda: {"reviewer": f"fuzz-reviewer-{serial()}", "name": "专家", "affiliations": [a.id]}),
        Request("evaluation", "PUT", at(f"/api/v1/rounds/{open_round.round_id}/projects/{open_round.projects[0]}"
                                        "/scores"),
                lambda: stack.client("evaluation", "reviewer", sub=reviewer),
                body=lambda: {"scores": {"overall": 75.5}, "comment": "方案完整"}),
        Request("evaluation", "POST", at(f"/api/v1/rounds/{closed_round.round_id}/awards"), officer("evaluation"),
                body=lambda: {"awards": [{"project_id": closed_round.projects[1], "tier": "二等奖",
                                          "prize_fen": 300_000, "fund_id": fund}]}),
        Request("evaluation", "GET", at("/api/v1/rounds"), officer("evaluation"),
                query=lambda: {"status": "open", "year": service_today().year, "page": 1, "per_page": 10}),
        # fund and park
        Request("fund", "POST", at("/api/v1/funds"), officer("fund"),
                body=lambda: {"name": "专项基金", "year": service_today().year, "budget_fen": 5_000_000}),
        Request("fund", "POST", at(f"/api/v1/funds/{fund}/grants"), officer("fund"), body=lambda: {
            "organization_id": a.id, "title": "社区服务资助", "description": "助老", "amount_fen": 10_000,
            "tranches": [30, 70]}),
        Request("fund", "POST", at(f"/api/v1/grants/{grant}/disbursements"), officer("fund"), body=lambda: {},
                headers=lambda: {"Idempotency-Key": f"fuzz-{serial()}"}),
        Request("fund", "POST", at(f"/api/v1/grants/{grant}/clawbacks"), officer("fund"),
                body=lambda: {"amount_fen": 1, "reason": "项目结余退回"}),
        Request("fund", "POST", at("/api/v1/park/units"), officer("fund"),
                body=lambda: {"code": f"F{serial():05d}", "area_m2": 35.5}),
        Request("fund", "POST", at("/api/v1/park/residencies"), officer("fund"),
                body=lambda: {"organization_id": a.id, "unit": world.unit(), "start": service_today().isoformat(), "years": 3}),
        Request("fund", "GET", at("/api/v1/park/occupancy"), officer("fund"),
                query=lambda: {"as_of": service_today().isoformat()}),
        Request("fund", "GET", at(f"/api/v1/funds/{fund}/ledger"), officer("fund"),
                query=lambda: {"page": 1, "per_page": 50}),
    ]


@pytest.fixture(scope="module")
def seeded(servers):
    stack = Stack(servers)
    world, seeds = seed(stack)
    yield stack, world, seeds
    stack.close()


def send(world, request: Request, *, body=None, query=None):
    path = request.path()
    if "{submitted}" in path:  # a fresh application for every rejection, so a valid one can succeed
        path = path.replace("{submitted}", world.submitted().id)
    client = request.client()
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    if query is not None:
        encoded = urlencode(query, encoding="utf-8", errors="surrogatepass")  # percent-escaped bytes, as sent
        return client.raw.open(path, method=request.method, query_string=encoded, headers=headers)
    # surrogatepass: a lone surrogate travels as the invalid UTF-8 a hostile client would send
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return client.raw.open(path, method=request.method, data=raw,
                           headers={"Content-Type": "application/json", **headers, **request.headers()})


@pytest.mark.slow
def test_hostile_values_in_valid_requests_never_break_a_service(seeded):
    stack, world, seeds = seeded
    failures, statuses, sent = [], Counter(), 0
    for request in requests_of(stack, world, seeds):
        valid = request.body() if request.body else request.query()
        mutations = [(path, new) for path, value in leaves(valid) for new in hostile_values(value)]
        if request.body:
            mutations += [((), new) for new in WHOLE_BODIES]
        for path, new in mutations:
            template = request.body() if request.body else request.query()
            mutated = replaced(template, path, new)
            outbox = stack.db(request.service)["outbox"]
            events_before = outbox.count_documents({})
            if request.query:
                if not isinstance(mutated, dict) or any(isinstance(v, (dict, list)) for v in mutated.values()):
                    continue  # a query string carries only scalars
                response = send(world, request, query={k: v for k, v in mutated.items() if v is not None})
            else:
                response = send(world, request, body=mutated)
            sent += 1
            statuses[response.status_code] += 1
            where = f"{request.label} with {'.'.join(map(str, path)) or 'the body'} = {str(new)[:60]!r}"
            problem = problem_failure(response)
            if problem:
                failures.append(f"{where}: {problem}")
            elif response.status_code >= 400 and outbox.count_documents({}) != events_before:
                failures.append(f"{where}: refused ({response.status_code}) but an event was recorded")
    print(f"mutation fuzzing: {sent} requests, statuses {dict(sorted(statuses.items()))}")
    assert sent > 1500
    assert failures == [], "\n".join(failures[:50])


def problem_failure(response) -> str | None:
    """What is wrong with an answer, if anything."""
    status, text = response.status_code, response.get_data(as_text=True)
    if status >= 500:
        return f"answered {status}: {text[:300]}"
    if "Traceback (most recent call last)" in text:
        return "shows a stack trace"
    if status >= 400:
        if response.headers.get("Content-Type") != PROBLEM:
            return f"answered {status} as {response.headers.get('Content-Type')}, not problem+json"
        body = response.get_json(silent=True) or {}
        if body.get("status") != status or not body.get("detail"):
            return f"answered {status} with a malformed problem: {text[:200]}"
    return None
