"""Bearer tokens (HS256 JWT) and the one role check every endpoint uses.

Claims: `sub`, `role` (applicant | reviewer | officer), `org` (applicants only, optional), `exp`.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import jwt
from flask import current_app, g, request
from flask_smorest import Blueprint

from shared.errors import Forbidden, Unauthorized

ROLES = ("applicant", "reviewer", "officer")
ALGORITHM = "HS256"
BEARER_SECURITY = [{"bearerAuth": []}]


@dataclass(frozen=True)
class Principal:
    sub: str
    role: str
    org: str | None = None

    @property
    def is_officer(self) -> bool:
        return self.role == "officer"


def issue_token(secret: str, *, sub: str, role: str, org: str | None = None, ttl_seconds: int = 8 * 3600,
                now: float | None = None) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not sub:
        raise ValueError("sub must not be empty")
    issued = int(now if now is not None else time.time())
    claims = {"sub": sub, "role": role, "iat": issued, "exp": issued + ttl_seconds}
    if org:
        claims["org"] = org
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str) -> Principal:
    """Verify signature, expiry and claims; raise Unauthorized saying what is wrong."""
    principal, expires = _verified(secret, token)
    if time.time() >= expires:  # a token verified earlier may have expired since
        raise Unauthorized("the token has expired")
    return principal


@functools.lru_cache(maxsize=4096)
def _verified(secret: str, token: str) -> tuple[Principal, float]:
    """The token's principal and expiry, verified once per process: a client sends the same token with each
    request, and checking its signature and claims again cost as much as a small request's own work. Only
    valid tokens are kept (a failure raises, which the cache does not remember); the expiry is checked on
    every use by decode_token."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "role", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"the token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("the token is not valid") from None
    role, sub, org = claims.get("role"), claims.get("sub"), claims.get("org")
    if role not in ROLES:
        raise Unauthorized("the token's role is not one of " + ", ".join(ROLES))
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("the token's sub is empty")
    if org is not None and not isinstance(org, str):
        raise Unauthorized("the token's org must be a string")
    return Principal(sub=sub, role=role, org=org), float(claims["exp"])


def principal_from_request() -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a bearer token is required")
    return decode_token(current_app.config["SOCORG_SETTINGS"].jwt_secret, token.strip())


def requires(*roles: str):
    """Decorator for a view: the caller must present a valid token with one of `roles`.

    The principal is in `flask.g.principal`, and the view is documented as bearer-protected.
    """
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            principal = principal_from_request()
            if principal.role not in roles:
                raise Forbidden(f"this action needs the role {' or '.join(roles)}, not {principal.role}")
            g.principal = principal
            return view(*args, **kwargs)

        # Document the operation as bearer-protected in the generated OpenAPI, with the two answers it may give
        # before the view runs.
        return Blueprint.doc(security=BEARER_SECURITY,
                             responses={"401": "UNAUTHORIZED", "403": "FORBIDDEN"})(wrapper)

    return decorate


def current_principal() -> Principal:
    return g.principal
