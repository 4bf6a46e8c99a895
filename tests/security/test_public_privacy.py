"""The public register never leaks personal data (CONTRACT.md: never ID numbers, phones, e-mails; the public
schema also promises no names of people).

Organizations in every state are filed with distinctive personal data (legal representatives' names and
resident ID numbers, phones, e-mails, council members' names, a renewal's new council); evaluation and fund
learn them from events, and the fund grants to them. Then every response anyone can get without a token is
searched for those values: the public register (every filter, every page, a search for each personal value),
each public organization, the fund's open-data export, the operational endpoints and documents, and the
refusals of every protected endpoint. Events are checked too: they travel to other services and to the
officers' audit trail, and carry only the organization's public snapshot.
"""

from __future__ import annotations

import json
import re

import pytest

from services.registry.identifiers import ID_CHECK, ID_WEIGHTS
from tests.security.openapi import operations
from tests.support.clock import service_today
from tests.security.world import Organization, World
from tests.support.data import application, unique_suffix
from tests.support.stack import SERVICES, Stack, wait_until

PUBLIC_REGISTER = "/api/v1/public/organizations"


def resident_id(first17: str) -> str:
    """A valid GB 11643 resident ID number (the check character computed as the registry checks it)."""
    return first17 + ID_CHECK[sum(w * int(d) for w, d in zip(ID_WEIGHTS, first17)) % 11]


class People:
    """Distinctive personal data, one set per organization, and every value to search for."""

    def __init__(self):
        self.values: list[str] = []

    def application(self, n: int, **overrides) -> dict:
        representative = f"欧阳明{'甲乙丙丁戊己'[n]}珠"
        id_number = resident_id(f"3101151985{n + 1:02d}17{n:02d}7")
        phone, email = f"1398765{n:04d}", f"ouyang.mingzhu.{n}.7731@private-mail.cn"
        members = [f"司马相{'一二三四五六'[n]}如", f"诸葛孔{'一二三四五六'[n]}明", f"上官婉{'一二三四五六'[n]}儿"]
        self.values += [representative, id_number, phone, email, *members]
        council = [{"name": members[0], "role": "chair"}, {"name": members[1], "role": "member"},
                   {"name": members[2], "role": "member"}]
        return application(legal_representative={"name": representative, "id_number": id_number},
                           contact={"phone": phone, "email": email}, council=council, **overrides)

    def renewal_council(self) -> list[dict]:
        names = ["慕容复生", "端木蓉蓉", "皇甫嵩山"]
        self.values += names
        return [{"name": names[0], "role": "chair"}, {"name": names[1], "role": "member"},
                {"name": names[2], "role": "member"}]

    def found_in(self, text: str) -> list[str]:
        """The personal values in `text`, also when JSON escaped them or a phone/ID lost its separators."""
        digits = re.sub(r"\D", "", text)
        unescaped = text
        try:
            unescaped = json.dumps(json.loads(text), ensure_ascii=False)
        except ValueError:
            pass
        return [value for value in self.values if value in text or value in unescaped
                or (value[:17].isdigit() and value[:17] in digits)]


@pytest.fixture(scope="module")
def world(servers):
    """Organizations in every state, with personal data, known to evaluation and fund, granted money."""
    stack = Stack(servers).start_workers()
    people, world = People(), World(stack)
    officer = world.officer("registry")

    def file(n: int) -> Organization:
        filer = f"private-applicant-{n}"
        body = people.application(n, name=f"上海市浦东新区{unique_suffix()}邻里互助服务中心")
        created = stack.client("registry", "applicant", sub=filer).post("/api/v1/organizations", body)
        assert created.status == 201, created.body
        return Organization(created.body["id"], filer, body)

    registered, flagged, renewed, deregistered, submitted, rejected = (file(n) for n in range(6))
    for organization in (registered, flagged, renewed, deregistered):
        approved = officer.post(f"/api/v1/organizations/{organization.id}/approve")
        assert approved.status == 200, approved.body
        organization.uscc = approved.body["uscc"]
    world.flag(flagged)
    assert officer.post(f"/api/v1/organizations/{deregistered.id}/deregister", {"reason": "自行解散"}).status == 200
    assert officer.post(f"/api/v1/organizations/{rejected.id}/reject", {"reason": "材料不齐全"}).status == 200
    # A renewal with a new council (its term ended long ago, as world.registered_long_ago arranges).
    old = world.registered_long_ago()
    renewal = stack.client("registry", "applicant", sub=old.filer).post(
        f"/api/v1/organizations/{old.id}/term-renewals",
        {"election_date": service_today().isoformat(), "council": people.renewal_council(), "term_years": 3})
    assert renewal.status == 201, renewal.body
    assert officer.post(f"/api/v1/organizations/{old.id}/term-renewals/{renewal.body['id']}/approve").status == 200
    for organization in (registered, renewed):
        world.known_to(organization)
    fund = world.fund()
    for organization in (registered, renewed):
        world.disburse(world.grant(fund, organization, tranches=(100,)))
        world.project(world.round(), organization)  # evaluation records events about them too
    publics = [registered, flagged, renewed, deregistered, old]
    wait_until(lambda: stack.db("fund")["outbox"].count_documents({}) and stack.db("registry")["outbox"]
               .count_documents({"event.type": {"$regex": "deregistered$"}}), timeout=30)
    stack.stop_workers()
    yield stack, people, publics, [submitted, rejected], fund
    stack.close()


def public_responses(stack, publics, fund):
    """(label, text) of everything the public register and the fund's open data answer without a token."""
    anyone = stack.app("registry").test_client()
    queries = [{}, {"type": "social_service_agency"}, {"risk": "abnormal"}, {"risk": "none"},
               {"status": "deregistered"}, {"status": "registered"}, {"q": "浦东新区"}, {"q": "邻里互助"}]
    queries += [{"q": organization.uscc} for organization in publics if organization.uscc]
    for query in queries:
        page = 1
        while True:
            response = anyone.get(PUBLIC_REGISTER, query_string={**query, "page": page, "per_page": 100})
            assert response.status_code == 200, (query, response.get_data(as_text=True))
            yield f"GET {PUBLIC_REGISTER} {query} page {page}", response.get_data(as_text=True)
            if page * 100 >= response.get_json()["total"]:
                break
            page += 1
    for organization in publics:
        response = anyone.get(f"{PUBLIC_REGISTER}/{organization.uscc}")
        assert response.status_code == 200
        yield f"GET {PUBLIC_REGISTER}/{organization.uscc}", response.get_data(as_text=True)
    export = stack.app("fund").test_client().get(f"/api/v1/funds/{fund}/export.json")
    assert export.status_code == 200
    yield "the fund's export.json", export.get_data(as_text=True)


def test_the_public_register_shows_public_organizations_and_no_personal_data(world):
    stack, people, publics, hidden, fund = world
    texts = dict(public_responses(stack, publics, fund))
    everything = "\n".join(texts.values())
    for organization in publics:  # the register is not empty: it shows the public organizations...
        assert organization.id in everything or organization.uscc in everything
    for organization in hidden:  # ...and never a submitted or rejected application
        assert organization.body["name"] not in everything
    assert "recipientOrganization" in texts["the fund's export.json"]
    leaks = {label: people.found_in(text) for label, text in texts.items() if people.found_in(text)}
    assert leaks == {}
    # The search does find personal data where it belongs: an officer's view of an application.
    private = stack.client("registry", "officer").get(f"/api/v1/organizations/{publics[0].id}")
    assert {publics[0].body["contact"]["phone"], publics[0].body["contact"]["email"]} <= set(
        people.found_in(json.dumps(private.body, ensure_ascii=False)))


def test_searching_the_register_for_personal_data_finds_nothing(world):
    """A search by a person's ID number, phone, e-mail or name must not reveal which organization they are in."""
    stack, people, _, _, _ = world
    anyone = stack.app("registry").test_client()
    assert len(people.values) >= 40
    for value in people.values:
        response = anyone.get(PUBLIC_REGISTER, query_string={"q": value})
        assert response.status_code == 200
        assert response.get_json()["total"] == 0, f"searching for {value!r} found {response.get_json()['items']}"


def test_nothing_reachable_without_a_token_carries_personal_data(world):
    stack, people, publics, hidden, fund = world
    ids = {"organization_id": publics[0].id, "uscc": publics[0].uscc, "fund_id": fund}
    leaks, reached = {}, 0
    for service in SERVICES:
        anyone = stack.app(service).test_client()
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
            text = anyone.get(path).get_data(as_text=True)
            reached += 1
            if people.found_in(text):
                leaks[f"{service} GET {path}"] = people.found_in(text)
        for op in operations(stack, [service]):  # every operation, public or refused, with real and hostile ids
            for organization in (*publics, *hidden):
                url = op.url(**ids | {"organization_id": organization.id})
                response = anyone.open(url, method=op.method, json={})
                reached += 1
                assert response.status_code < 500
                if people.found_in(response.get_data(as_text=True)):
                    leaks[f"{service} {op.method} {url}"] = people.found_in(response.get_data(as_text=True))
    assert reached > 300
    assert leaks == {}


def test_events_carry_no_personal_data(world):
    """Events travel to the other services and into the officers' audit trail: only the public snapshot."""
    stack, people, _, _, _ = world
    for service in SERVICES:
        records = list(stack.db(service)["outbox"].find({}, {"event": 1}))
        assert records, service
        for record in records:
            found = people.found_in(json.dumps(record["event"], ensure_ascii=False, default=str))
            assert found == [], (service, record["event"]["type"], found)
