"""The people who use the system, over HTTP to gunicorn: applicants, an officer and reviewers.

Each helper prepares one command as a `Call` (its body fixed once, so a retry sends exactly the same
request with the same Idempotency-Key); `call.send()` returns the response without judging it, so a
scenario can run commands while a server is down and look at every answer.
"""

from __future__ import annotations

import itertools
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from tests.faults.system import FaultSystem, HttpApi
from tests.support.clock import service_today
from tests.support.data import application, unique_suffix
from tests.support.stack import SERVICES, Response, wait_until

PROBLEM_JSON = "application/problem+json"
# One criterion of weight 1 out of 100: a review's weighted score is the score itself.
CRITERIA = [{"key": "overall", "label": "总体", "weight": 1, "max_score": 100}]


def expect(response: Response, *statuses: int) -> Response:
    assert response.status in statuses, (response.status, response.body)
    return response


def is_clean_failure(response: Response, status: int = 503) -> bool:
    """A refusal as the contract promises it: problem+json with its members, no stack trace."""
    body = response.body if isinstance(response.body, dict) else {}
    return (response.status == status and response.headers.get("Content-Type", "").startswith(PROBLEM_JSON)
            and {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
            and "Traceback" not in str(body))


def new_key() -> str:
    return uuid.uuid4().hex


@dataclass
class Call:
    """One prepared command: the same method, path, body and headers every time it is sent."""

    api: HttpApi
    method: str
    path: str
    body: dict | None = None
    headers: dict = field(default_factory=dict)
    actor: str | None = None  # who sends it, when the scenario needs to know (an application's filer)

    def send(self) -> Response:
        return self.api.request(self.method, self.path, self.body, headers=self.headers)

    @property
    def key(self) -> str | None:
        return self.headers.get("Idempotency-Key")


class Bureau:
    def __init__(self, system: FaultSystem):
        self.system = system
        self.officer = {service: system.api(service, "officer", sub="officer-li") for service in SERVICES}
        self._subs = itertools.count(1)

    # -- registry -------------------------------------------------------------------------------------------
    def _officer(self, service: str, method: str, path: str, body: dict | None = None,
                 key: str | None = None) -> Call:
        return Call(self.officer[service], method, path, body, idempotent(key))

    def apply(self, *, key: str | None = None, sub: str | None = None) -> Call:
        """A new applicant files a new application (applicants are rate limited each: one sub per filing)."""
        sub = sub or f"{self.system.name}-applicant-{next(self._subs)}"
        return Call(self.system.api("registry", "applicant", sub=sub), "POST", "/api/v1/organizations",
                    application(), idempotent(key), actor=sub)

    def approve(self, organization_id: str) -> Call:
        return self._officer("registry", "POST", f"/api/v1/organizations/{organization_id}/approve")

    def reject(self, organization_id: str) -> Call:
        return self._officer("registry", "POST", f"/api/v1/organizations/{organization_id}/reject",
                             {"reason": "材料不全"})

    def flag(self, organization_id: str, risk_list: str = "abnormal", *, key: str | None = None) -> Call:
        return self._officer("registry", "POST", f"/api/v1/organizations/{organization_id}/risk-flags",
                             {"list": risk_list, "reason": "未按规定报送材料"}, key)

    def clear(self, organization_id: str, flag_id: str) -> Call:
        return self._officer("registry", "POST", f"/api/v1/organizations/{organization_id}/risk-flags/{flag_id}/clear",
                             {"reason": "已整改"})

    def deregister(self, organization_id: str) -> Call:
        return self._officer("registry", "POST", f"/api/v1/organizations/{organization_id}/deregister",
                             {"reason": "自行解散"})

    def renew(self, organization: dict) -> Response:
        """File and approve a term renewal (needs a renewal window covering the whole term)."""
        applicant = self.system.api("registry", "applicant", sub=organization["sub"])
        filed = expect(applicant.post(f"/api/v1/organizations/{organization['id']}/term-renewals", {
            "election_date": service_today().isoformat(), "term_years": 3,
            "council": [{"name": "赵六", "role": "chair"}, {"name": "钱七", "role": "member"},
                        {"name": "孙八", "role": "member"}]}), 201)
        return self._officer("registry", "POST", f"/api/v1/organizations/{organization['id']}/term-renewals/"
                                                 f"{filed.body['id']}/approve").send()

    def register(self, count: int, *, threads: int = 6) -> list[dict]:
        """Apply and approve `count` organizations; each is {id, sub (its filer), name}."""
        def one(_):
            call = self.apply()
            applied = expect(call.send(), 201)
            expect(self.approve(applied.body["id"]).send(), 200)
            return {"id": applied.body["id"], "sub": call.actor, "name": applied.body["name"]}

        # The first approval creates the registry's USCC counter (an upsert). It goes alone: SecantusDB answers
        # concurrent upserts of a missing document with None, which the working tree's registry turns into a 500.
        first = [one(0)] if count else []
        with ThreadPoolExecutor(threads) as pool:
            return first + list(pool.map(one, range(count - 1)))

    def wait_known(self, organization_ids, *, status: str = "registered", services=("evaluation", "fund"),
                   timeout: float = 60) -> None:
        """Wait until the consumers' read models know these organizations with this status."""
        ids = list(organization_ids)
        for service in services:
            collection = self.system.db(service)["organizations"]
            wait_until(lambda: collection.count_documents({"_id": {"$in": ids}, "status": status}) == len(ids),
                       timeout=timeout, interval=0.2, message=f"{service} to know {len(ids)} organizations {status}")

    # -- evaluation -----------------------------------------------------------------------------------------
    def open_round(self, *, key: str | None = None, **overrides) -> Call:
        body = {"name": f"品牌项目评选{unique_suffix()}", "year": service_today().year, "criteria": CRITERIA,
                "aggregation": "mean", "reviewers_per_project": 2,
                "closes_at": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()} | overrides
        return self._officer("evaluation", "POST", "/api/v1/rounds", body, key)

    def enter(self, round_id: str, organization: dict, *, key: str | None = None) -> Call:
        staff = self.system.api("evaluation", "applicant", sub=organization["sub"], org=organization["id"])
        return Call(staff, "POST", f"/api/v1/rounds/{round_id}/projects", {
            "organization_id": organization["id"], "title": f"社区项目{unique_suffix()}",
            "summary": "为社区居民提供服务", "budget_fen": 5_000_000}, idempotent(key))

    def add_reviewer(self, round_id: str, reviewer: str, *, key: str | None = None) -> Call:
        return self._officer("evaluation", "POST", f"/api/v1/rounds/{round_id}/reviewers", {
            "reviewer": reviewer, "name": f"专家{reviewer}", "affiliations": []}, key)

    def assign(self, round_id: str) -> Call:
        return self._officer("evaluation", "POST", f"/api/v1/rounds/{round_id}/assignments")

    def assignments(self, round_id: str) -> list[tuple[str, str]]:
        """(reviewer, project id) of every active assignment of the round."""
        listed = expect(self.officer["evaluation"].get(f"/api/v1/rounds/{round_id}/assignments?per_page=100"), 200)
        assert listed.body["total"] <= 100, "more assignments than one page"
        return [(item["reviewer"], item["project_id"]) for item in listed.body["items"]]

    def score(self, round_id: str, project_id: str, reviewer: str, value: float) -> Call:
        return Call(self.system.api("evaluation", "reviewer", sub=reviewer), "PUT",
                    f"/api/v1/rounds/{round_id}/projects/{project_id}/scores",
                    {"scores": {"overall": value}, "comment": "好"})

    def close(self, round_id: str) -> Call:
        return self._officer("evaluation", "POST", f"/api/v1/rounds/{round_id}/close")

    def award(self, round_id: str, awards: list[dict]) -> Call:
        return self._officer("evaluation", "POST", f"/api/v1/rounds/{round_id}/awards", {"awards": awards})

    # -- fund and park --------------------------------------------------------------------------------------
    def open_fund(self, budget_fen: int = 1_000_000_000, *, key: str | None = None, year: int | None = None) -> Call:
        body = {"name": f"专项基金{unique_suffix()}", "year": year or service_today().year, "budget_fen": budget_fen}
        return self._officer("fund", "POST", "/api/v1/funds", body, key)

    def grant(self, fund_id: str, organization_id: str, amount_fen: int = 300_001, tranches=(30, 30, 40), *,
              key: str | None = None) -> Call:
        return self._officer("fund", "POST", f"/api/v1/funds/{fund_id}/grants", {
            "organization_id": organization_id, "title": f"资助项目{unique_suffix()}", "amount_fen": amount_fen,
            "tranches": list(tranches)}, key)

    def disburse(self, grant_id: str, *, key: str | None = None) -> Call:
        """Pay the grant's next tranche (the contract requires an Idempotency-Key here)."""
        return self._officer("fund", "POST", f"/api/v1/grants/{grant_id}/disbursements", {}, key or new_key())

    def claw_back(self, grant_id: str, amount_fen: int) -> Call:
        return self._officer("fund", "POST", f"/api/v1/grants/{grant_id}/clawbacks",
                             {"amount_fen": amount_fen, "reason": "项目未完成"})

    def add_unit(self, *, key: str | None = None) -> Call:
        return self._officer("fund", "POST", "/api/v1/park/units", {"code": f"A-{uuid.uuid4().hex[:8]}", "area_m2": 80},
                             key)

    def reside(self, organization_id: str, unit_code: str, *, key: str | None = None) -> Call:
        return self._officer("fund", "POST", "/api/v1/park/residencies", {
            "organization_id": organization_id, "unit": unit_code, "start": service_today().isoformat(), "years": 2}, key)

    def graduate(self, residency_id: str) -> Call:
        return self._officer("fund", "POST", f"/api/v1/park/residencies/{residency_id}/graduate")


def idempotent(key: str | None) -> dict:
    return {"Idempotency-Key": key} if key else {}
