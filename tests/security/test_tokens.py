"""Bad bearer tokens are refused (401 problem+json, with WWW-Authenticate) by every protected operation of
every service, through HTTP, and a refused request changes nothing.

tests/unit/test_auth.py checks shared.auth.decode_token itself; this checks that no endpoint skips it.
"""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from shared.auth import issue_token
from shared.outbox import PENDING
from tests.security.openapi import operations
from tests.support.stack import SERVICES, TEST_SECRET

PROBLEM = "application/problem+json"
OTHER_SECRET = "a-different-secret-than-the-services-use-0123456789"


def claims(**overrides) -> dict:
    """Valid claims of an officer, expiring a minute after the test runs, with `overrides` (None drops one)."""
    values = {"sub": "li", "role": "officer", "exp": int(time.time()) + 60} | overrides
    return {name: value for name, value in values.items() if value is not None}


def unsigned(header: dict, payload: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(payload)}."


# Built when the test runs (a token built at collection could expire during a long suite).
BAD_TOKENS = {
    "wrong signature": lambda: issue_token(OTHER_SECRET, sub="li", role="officer"),
    "expired": lambda: issue_token(TEST_SECRET, sub="li", role="officer", now=time.time() - 3600, ttl_seconds=60),
    "alg none": lambda: jwt.encode(claims(), None, algorithm="none"),
    "alg none, hand-made": lambda: unsigned({"alg": "none", "typ": "JWT"}, claims()),
    "HS256 header, signature stripped": lambda: issue_token(TEST_SECRET, sub="li", role="officer").rsplit(".", 1)[0]
    + ".",
    "another HMAC algorithm": lambda: jwt.encode(claims(), TEST_SECRET, algorithm="HS512"),
    "no sub": lambda: jwt.encode(claims(sub=None), TEST_SECRET, algorithm="HS256"),
    "empty sub": lambda: jwt.encode(claims(sub=""), TEST_SECRET, algorithm="HS256"),
    "no role": lambda: jwt.encode(claims(role=None), TEST_SECRET, algorithm="HS256"),
    "unknown role": lambda: jwt.encode(claims(role="admin"), TEST_SECRET, algorithm="HS256"),
    "no exp": lambda: jwt.encode(claims(exp=None), TEST_SECRET, algorithm="HS256"),
    "not yet valid": lambda: jwt.encode(claims(nbf=int(time.time()) + 3600), TEST_SECRET, algorithm="HS256"),
    "org not a string": lambda: jwt.encode(claims(role="applicant", org=["org_1"]), TEST_SECRET, algorithm="HS256"),
    "garbage": lambda: "not-a-jwt",
}
BAD_HEADERS = {  # the Authorization header, given a valid token
    "no header": lambda token: None,
    "empty bearer": lambda token: "Bearer ",
    "basic scheme": lambda token: "Basic bGk6cGFzc3dvcmQ=",
    "valid token without its scheme": lambda token: token,
}
# The HS512 token is signed with the suite's (HS256-sized) secret on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def state(stack) -> dict:
    """What a refused request must not change: every collection's documents, per service (the relay's queue
    of unsent events drains on its own)."""
    return {service: {name: stack.db(service)[name].count_documents({})
                      for name in stack.db(service).list_collection_names() if name != PENDING} for service in SERVICES}


def assert_unauthorized(response, label: str) -> None:
    assert response.status == 401, (label, response.status, response.body)
    assert response.headers["Content-Type"] == PROBLEM, label
    assert response.body["status"] == 401 and response.body["detail"], label
    assert response.headers["WWW-Authenticate"].startswith("Bearer"), label


def test_every_protected_operation_refuses_every_bad_token(stack):
    protected = [op for op in operations(stack) if op.protected]
    assert len(protected) >= 55  # registry, evaluation and fund together
    before = state(stack)
    valid = stack.token("officer", sub="li")
    checked = 0
    for op in protected:
        client = stack.client(op.service).raw
        for name, make in BAD_TOKENS.items():
            response = stack.client(op.service).request(op.method, op.url(), {}, headers={
                "Authorization": f"Bearer {make()}"})
            assert_unauthorized(response, f"{op.label} with {name}")
            checked += 1
        for name, header_of in BAD_HEADERS.items():
            headers = {"Content-Type": "application/json"}
            if header_of(valid) is not None:
                headers["Authorization"] = header_of(valid)
            raw = client.open(op.url(), method=op.method, data="{}", headers=headers)
            assert raw.status_code == 401, (op.label, name, raw.status_code)
            assert raw.headers["Content-Type"] == PROBLEM
            checked += 1
    assert checked == len(protected) * (len(BAD_TOKENS) + len(BAD_HEADERS))
    assert state(stack) == before


@pytest.mark.parametrize("service", SERVICES)
def test_the_reason_is_told_without_echoing_the_token(stack, service):
    token = jwt.encode(claims(exp=int(time.time()) - 10), TEST_SECRET, algorithm="HS256")
    response = stack.client(service).get("/api/v1/audit", headers={"Authorization": f"Bearer {token}"})
    assert_unauthorized(response, service)
    assert "expired" in response.body["detail"]
    assert token not in json.dumps(response.body)
