"""Open data: a fund's grants exported in the 360Giving shape, validated against the published schemas
vendored in tests/data (see tests/data/360giving-README.md)."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from jsonschema import Draft4Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from services.registry.identifiers import is_valid_uscc, make_uscc, org_body_from_number
from shared.events import Event
from tests.integration.fund_invariants import (deliver, fund_stack, known_organization, make_grant,  # noqa: F401
                                               open_fund)

DATA = Path(__file__).resolve().parent.parent / "data"
GRANT_SCHEMA_URL = "https://raw.githubusercontent.com/ThreeSixtyGiving/standard/master/schema/360-giving-schema.json"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def is_date_time(value) -> bool:
    """RFC 3339 date-time (jsonschema checks this format only with an optional package, so it is done here:
    the schema's `oneOf` of date-time or YYYY-MM-DD needs it checked to tell the two apart)."""
    if not isinstance(value, str) or not RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def package_validator():
    grant_schema = json.loads((DATA / "360giving-schema.json").read_text())
    package_schema = json.loads((DATA / "360giving-package-schema.json").read_text())
    registry = Registry().with_resource(GRANT_SCHEMA_URL, Resource(contents=grant_schema, specification=DRAFT4))
    checker = FormatChecker(formats=())
    checker.checks("date-time")(is_date_time)
    Draft4Validator.check_schema(package_schema)
    Draft4Validator.check_schema(grant_schema)
    return Draft4Validator(package_schema, registry=registry, format_checker=checker)


def uscc(number: int) -> str:
    return make_uscc("social_service_agency", "310115", org_body_from_number(number))


def test_export_validates_against_the_360giving_schema(fund_stack, package_validator):
    known_organization(fund_stack, "org_x1", name="上海市浦东新区阳光社区服务中心", uscc=uscc(7001))
    known_organization(fund_stack, "org_x2", name="上海市浦东新区青少年发展促进会", uscc=uscc(7002))
    fund = open_fund(fund_stack, budget_fen=5_000_000)
    first = make_grant(fund_stack, fund["id"], "org_x1", amount_fen=1_000_003)
    second = make_grant(fund_stack, fund["id"], "org_x2", amount_fen=250_050, tranches=[100])
    officer = fund_stack.client("fund", "officer")
    officer.post(f"/api/v1/grants/{first['id']}/disbursements", {}, headers={"Idempotency-Key": "x1"})
    officer.post(f"/api/v1/grants/{first['id']}/clawbacks", {"amount_fen": 10_001, "reason": "结余退回"})
    # An award the fund cannot cover is recorded as rejected and never exported.
    deliver(fund_stack, Event(type="evaluation.award.granted", subject="proj_big", data={
        "actor": "officer-li", "organization_id": "org_x2", "project_id": "proj_big", "tier": "一等奖",
        "prize_fen": 99_000_000, "year": 2026}), service="evaluation")

    response = fund_stack.client("fund").get(f"/api/v1/funds/{fund['id']}/export.json")  # public: no token
    assert response.status == 200, response.body
    package = response.body
    errors = sorted(package_validator.iter_errors(package), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)

    by_id = {g["id"]: g for g in package["grants"]}
    assert set(by_id) == {f"360G-socorg-pudong-{first['id']}", f"360G-socorg-pudong-{second['id']}"}
    record = by_id[f"360G-socorg-pudong-{first['id']}"]
    assert record["amountAwarded"] == 10000.03 and record["amountDisbursed"] == 3199.99 and record["currency"] == "CNY"
    assert record["recipientOrganization"] == [{"id": f"CN-USCI-{uscc(7001)}", "name": "上海市浦东新区阳光社区服务中心"}]
    assert is_valid_uscc(record["recipientOrganization"][0]["id"].removeprefix("CN-USCI-"))
    assert record["fundingOrganization"][0]["name"] == "上海市浦东新区民政局"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", record["awardDate"])
    assert by_id[f"360G-socorg-pudong-{second['id']}"]["amountAwarded"] == 2500.5


def test_the_schema_check_can_fail(package_validator):
    """The validator is not a rubber stamp: each of these breaks the 360Giving rules."""
    good = {"grants": [{
        "id": "360G-x-1", "title": "t", "description": "d", "currency": "CNY", "amountAwarded": 1.5,
        "awardDate": "2026-03-01", "recipientOrganization": [{"id": "CN-USCI-x", "name": "n"}],
        "fundingOrganization": [{"id": "f", "name": "f"}]}]}
    assert not list(package_validator.iter_errors(good))
    breakages = [
        lambda g: g.pop("recipientOrganization"),
        lambda g: g.update(currency="RMB"),
        lambda g: g.update(amountAwarded="1.50"),
        lambda g: g.update(awardDate="01/03/2026"),
        lambda g: g["recipientOrganization"][0].pop("id"),
        lambda g: g.update(fundingOrganization=[]),
    ]
    for breakage in breakages:
        broken = copy.deepcopy(good)
        breakage(broken["grants"][0])
        assert list(package_validator.iter_errors(broken)), broken
