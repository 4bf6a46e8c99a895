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


def claims(**kw):
    """Claims expiring a minute after the test runs (built when the test runs, not at collection)."""
    return {"exp": int(time.time()) + 60, **kw}


@pytest.mark.parametrize("make_token, reason", [
    (lambda: issue_token("another-secret-entirely-0123456789abc", sub="x", role="officer"), "not valid"),
    (lambda: issue_token(SECRET, sub="x", role="officer", now=time.time() - 10_000, ttl_seconds=60), "expired"),
    (lambda: jwt.encode(claims(sub="x", role="officer"), None, algorithm="none"), "not valid"),
    (lambda: jwt.encode(claims(sub="x"), SECRET, algorithm="HS256"), "role"),
    (lambda: jwt.encode(claims(role="officer"), SECRET, algorithm="HS256"), "sub"),
    (lambda: jwt.encode({"sub": "x", "role": "officer"}, SECRET, algorithm="HS256"), "exp"),
    (lambda: jwt.encode(claims(sub="x", role="root"), SECRET, algorithm="HS256"), "role"),
    (lambda: "garbage", "not valid"),
], ids=["wrong-signature", "expired", "alg-none", "no-role", "no-sub", "no-exp", "unknown-role", "garbage"])
def test_bad_tokens_are_refused_with_a_reason(make_token, reason):
    with pytest.raises(Unauthorized, match=reason):
        decode_token(SECRET, make_token())


def test_a_token_accepted_once_is_refused_after_it_expires(monkeypatch):
    """Verified tokens are remembered per process; their expiry is still checked on every use."""
    issued = time.time()
    token = issue_token(SECRET, sub="li", role="officer", now=issued, ttl_seconds=60)
    assert decode_token(SECRET, token).sub == "li"
    assert decode_token(SECRET, token).sub == "li"  # the remembered verification
    monkeypatch.setattr(time, "time", lambda: issued + 61)
    with pytest.raises(Unauthorized, match="expired"):
        decode_token(SECRET, token)


def test_a_remembered_token_is_not_valid_under_another_secret():
    token = issue_token(SECRET, sub="li", role="officer")
    assert decode_token(SECRET, token).sub == "li"
    with pytest.raises(Unauthorized, match="not valid"):
        decode_token("another-secret-entirely-0123456789abc", token)
