"""The operations each service documents in its OpenAPI document, for tests that walk all of them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.support.stack import SERVICES

METHODS = ("get", "post", "put", "patch", "delete")
PATH_PARAMETER = re.compile(r"{(\w+)}")


@dataclass(frozen=True)
class Operation:
    service: str
    method: str  # upper case
    path: str  # as documented: /api/v1/organizations/{organization_id}
    protected: bool  # documented as needing a bearer token

    @property
    def label(self) -> str:
        return f"{self.service} {self.method} {self.path}"

    def url(self, **ids: str) -> str:
        """The path with its parameters filled from `ids` (a parameter not given becomes `x`)."""
        return PATH_PARAMETER.sub(lambda m: ids.get(m[1], "x"), self.path)


def operations(stack, services=SERVICES) -> list[Operation]:
    found = []
    for service in services:
        document = stack.client(service).get("/openapi.json").body
        for path, item in document["paths"].items():
            for method in METHODS:
                if method in item:
                    found.append(Operation(service, method.upper(), path, bool(item[method].get("security"))))
    return found
