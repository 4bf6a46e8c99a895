"""The portal's only way to the services: their public HTTP APIs, called with the signed-in user's token.

Two outcomes besides success, so pages can show them well:
- `ServiceDown`: the service did not answer (refused, timed out, or answered 502/503/504);
  the portal shows a clear page naming the service instead of an error.
- `ApiError`: the service answered with a problem+json document (4xx, or a 500 it reported); it keeps
  `status`, `detail` and the `errors` member ({"legal_representative.id_number": [messages]}) so forms can
  put each message beside its field.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

SERVICES = ("registry", "evaluation", "fund")
UNAVAILABLE_STATUSES = {502, 503, 504}
# Keys come from hidden form fields the portal wrote; anything else (tampered, not ASCII) is not sent.
SAFE_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


class ServiceDown(Exception):
    def __init__(self, service: str, reason: str):
        super().__init__(f"{service} is not answering: {reason}")
        self.service = service
        self.reason = reason


@dataclass
class ApiError(Exception):
    service: str
    status: int
    detail: str
    errors: dict[str, list[str]] = field(default_factory=dict)
    title: str = ""

    def __str__(self) -> str:
        return f"{self.service} answered {self.status}: {self.detail}"

    @classmethod
    def from_response(cls, service: str, response: requests.Response) -> "ApiError":
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        errors = body.get("errors") if isinstance(body.get("errors"), dict) else {}
        errors = {str(k): [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in errors.items()}
        return cls(service=service, status=response.status_code,
                   detail=str(body.get("detail") or response.reason or response.status_code),
                   errors=errors, title=str(body.get("title") or ""))


class ServiceClient:
    """JSON calls to one service; every call carries the user's bearer token and a timeout, and the portal
    request's id, so the service's log lines of a page carry the id the page shows."""

    def __init__(self, service: str, base_url: str, token: str | None, *, timeout: float,
                 http: requests.Session | None = None, request_id: str | None = None):
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.http = http or requests.Session()
        self.request_id = request_id

    def request(self, method: str, path: str, *, json: Any = None, params: dict | None = None,
                idempotency_key: str | None = None) -> Any:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if idempotency_key and SAFE_KEY.fullmatch(idempotency_key):
            headers["Idempotency-Key"] = idempotency_key
        if self.request_id:
            headers["X-Request-ID"] = self.request_id
        params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        # Paths carry ids from the page's own address: a "?" or "#" in one must stay in its segment, not start a
        # query of the call (parameters go in `params`).
        url = self.base_url + quote(path, safe="/")
        try:
            response = self.http.request(method, url, json=json, params=params, headers=headers,
                                         timeout=self.timeout)
        except requests.Timeout:
            raise ServiceDown(self.service, "timed out") from None
        except requests.RequestException as exc:
            raise ServiceDown(self.service, type(exc).__name__) from None
        if response.status_code in UNAVAILABLE_STATUSES:
            raise ServiceDown(self.service, f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise ApiError.from_response(self.service, response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ServiceDown(self.service, "answered something that is not JSON") from None

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {}, idempotency_key=idempotency_key)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)


class Backend:
    """The three services as one user sees them."""

    def __init__(self, urls: dict[str, str], token: str | None, *, timeout: float, http: requests.Session,
                 request_id: str | None = None):
        self.clients = {service: ServiceClient(service, urls[service], token, timeout=timeout, http=http,
                                               request_id=request_id)
                        for service in SERVICES}

    @property
    def registry(self) -> ServiceClient:
        return self.clients["registry"]

    @property
    def evaluation(self) -> ServiceClient:
        return self.clients["evaluation"]

    @property
    def fund(self) -> ServiceClient:
        return self.clients["fund"]


def new_idempotency_key() -> str:
    """A key put in a form when it is rendered, so submitting the same form twice has one effect."""
    return "portal-" + uuid.uuid4().hex
