"""Errors as RFC 9457 problem documents: one exception family, one handler for every service.

Domain and store code raise `Problem` subclasses (they carry no Flask); the web layer turns them, and
every other error path (Werkzeug HTTP errors, webargs validation, unavailable database, crashes) into
`application/problem+json` without a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://socorg.example/problems/"

log = logging.getLogger("socorg.errors")


class Problem(Exception):
    status = 500
    title = "Internal Server Error"
    slug = "internal"

    def __init__(self, detail: str | None = None, *, errors: dict[str, list[str]] | None = None,
                 headers: dict[str, str] | None = None, **extensions: Any):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}
        self.extensions = extensions

    def to_dict(self) -> dict[str, Any]:
        return problem_body(self.status, self.detail, title=self.title, slug=self.slug,
                            errors=self.errors, **self.extensions)


class BadRequest(Problem):
    status, title, slug = 400, "Bad Request", "bad-request"


class Unauthorized(Problem):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str | None = None, **kw):
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="socorg"'})
        super().__init__(detail, **kw)


class Forbidden(Problem):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, slug = 404, "Not Found", "not-found"


class Conflict(Problem):
    status, title, slug = 409, "Conflict", "conflict"


class PreconditionFailed(Problem):
    status, title, slug = 412, "Precondition Failed", "precondition-failed"


class ValidationFailed(Problem):
    status, title, slug = 422, "Unprocessable Content", "validation"

    @classmethod
    def field(cls, field_name: str, message: str) -> "ValidationFailed":
        return cls.of({field_name: [message]})

    @classmethod
    def of(cls, problems: dict[str, list[str]]) -> "ValidationFailed":
        """Every problem at once, by field; the detail lists them all."""
        return cls(problems_in_words(problems), errors=problems)


def problems_in_words(problems: dict[str, list[str]]) -> str:
    """{"name": ["a", "b"], "council": ["c"]} as "name: a b; council: c" (a 422's detail)."""
    return "; ".join(f"{name}: {' '.join(messages)}" for name, messages in problems.items())


class TooManyRequests(Problem):
    status, title, slug = 429, "Too Many Requests", "rate-limited"

    def __init__(self, detail: str | None = None, *, retry_after: int = 60, **kw):
        kw.setdefault("headers", {"Retry-After": str(retry_after)})
        super().__init__(detail, **kw)


class Unavailable(Problem):
    status, title, slug = 503, "Service Unavailable", "unavailable"

    def __init__(self, detail: str | None = None, **kw):
        kw.setdefault("headers", {"Retry-After": "1"})
        super().__init__(detail, **kw)


def problem_body(status: int, detail: str, *, title: str, slug: str | None = None,
                 errors: dict[str, list[str]] | None = None, **extensions: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or str(status)),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body.update(extensions)
    return body


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn marshmallow's nested error dict into {"a.b": [messages]} (list indexes become path parts)."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, (dict,)):
                flat.update(flatten_errors(value, name))
            elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                flat.setdefault(name, []).extend(value)
            else:
                flat.update(flatten_errors(value, name))
    elif isinstance(messages, list):
        if all(isinstance(v, str) for v in messages):
            flat.setdefault(prefix or "_schema", []).extend(messages)
        else:
            for item in messages:
                flat.update(flatten_errors(item, prefix))
    elif messages is not None:
        flat.setdefault(prefix or "_schema", []).append(str(messages))
    return flat
