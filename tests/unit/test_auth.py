import time

import jwt
import pytest

from shared.auth import decode_token, issue_token
from shared.errors import Unauthorized

SECRET = "unit-test-secret-0123456789abcdef0123"


def test_round_trip_with_and_without_org():
    principal = decode_token(SECRET, issue_token(SECRET, sub="zhang", role="applicant", org="org_1"))
    assert (principal.sub, principal.role, principal.org) == ("zhang", "applicant", "org_1")
    officer = decode_token(SECRET, issue_token(SECRET, sub="li", role="officer"))
    assert officer.org is None and officer.is_officer


def test_unknown_role_cannot_be_issued():
    with pytest.raises(ValueError):
        issue_token(SECRET, sub="x", role="admin")


@pytest.mark.parametrize("token, reason", [
    (issue_token("another-secret-entirely-0123456789abc", sub="x", role="officer"), "not valid"),
    (issue_token(SECRET, sub="x", role="officer", now=time.time() - 10_000, ttl_seconds=60), "expired"),
    (jwt.encode({"sub": "x", "role": "officer", "exp": int(time.time()) + 60}, None, algorithm="none"), "not valid"),
    (jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"), "role"),
    (jwt.encode({"role": "officer", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"), "sub"),
    (jwt.encode({"sub": "x", "role": "officer"}, SECRET, algorithm="HS256"), "exp"),
    (jwt.encode({"sub": "x", "role": "root", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"), "role"),
    ("garbage", "not valid"),
])
def test_bad_tokens_are_refused_with_a_reason(token, reason):
    with pytest.raises(Unauthorized, match=reason):
        decode_token(SECRET, token)
