"""Marshmallow pieces every service uses: the base Schema, list paging and the problem document (for OpenAPI)."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import marshmallow
from marshmallow import INCLUDE, ValidationError, fields, validate

MAX_PER_PAGE = 100
# The most money any request may name: 10^15 fen (10 trillion yuan), far beyond a district's budgets and well
# inside the 8-byte integers MongoDB stores (a larger number would fail to store: a 500 instead of a 422).
MAX_FEN = 10**15
# Far beyond any list here, and it keeps (page - 1) x per_page a small integer: a page number past 2^63 / 100
# would otherwise reach MongoDB as a skip it cannot encode (a 500 instead of a 422).
MAX_PAGE = 1_000_000


class Schema(marshmallow.Schema):
    """The base of every schema here: marshmallow's, reading the documents it dumps (plain dicts, from MongoDB
    or the domain) with `dict.get`.

    marshmallow's default accessor tries `obj[key]` and, for a missing key, catches the KeyError and falls
    back to `getattr(obj, key)`, which on a dict finds its methods (a missing `items` would dump `dict.items`).
    `dict.get` answers at once and only with what the document holds; an organization dumps in 53 us instead
    of 62 (each list page dumps up to 100). Dotted attributes and other objects go marshmallow's way.
    """

    def get_attribute(self, obj, attr, default):
        if type(obj) is dict and "." not in attr:
            return obj.get(attr, default)
        return super().get_attribute(obj, attr, default)


class PageArgs(Schema):
    page = fields.Int(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    per_page = fields.Int(load_default=20, validate=validate.Range(min=1, max=MAX_PER_PAGE))


@lru_cache(maxsize=None)
def page_of(item_schema: type[Schema]) -> type[Schema]:
    """The list page schema `{"items": [...], "total": N, "page": P, "per_page": K}` for an item schema."""
    name = item_schema.__name__.removesuffix("Schema") + "PageSchema"
    return type(name, (Schema,), {
        "items": fields.List(fields.Nested(item_schema), required=True),
        "total": fields.Int(required=True),
        "page": fields.Int(required=True),
        "per_page": fields.Int(required=True),
    })


def page_response(items, total: int, args: dict) -> dict:
    return {"items": list(items), "total": total, "page": args["page"], "per_page": args["per_page"]}


def skip_of(args: dict) -> int:
    return (args["page"] - 1) * args["per_page"]


class ProblemSchema(Schema):
    """RFC 9457 problem details, as every error answers (extension members such as `request_id` may follow)."""

    class Meta:
        unknown = INCLUDE  # documented as open: extension members are allowed

    type = fields.Str(required=True)
    title = fields.Str(required=True)
    status = fields.Int(required=True)
    detail = fields.Str(required=True)
    errors = fields.Dict(keys=fields.Str(), values=fields.List(fields.Str()),
                         metadata={"description": "validation failures: {field: [messages]}"})


# Dates a request may carry. Terms, windows and deadlines are computed from them; near year 1 or 9999 that
# arithmetic would leave what a date can hold (a 500 instead of a 422).
EARLIEST_DATE, LATEST_DATE = date(1900, 1, 1), date(2999, 12, 31)


class IsoDate(fields.Date):
    """A calendar date stored as its ISO 8601 string (BSON has no date-only type); accepted within 1900..2999."""

    def _deserialize(self, value, attr, data, **kwargs):
        day = super()._deserialize(value, attr, data, **kwargs)
        if not EARLIEST_DATE <= day <= LATEST_DATE:
            raise ValidationError(f"must be a date from {EARLIEST_DATE} to {LATEST_DATE}")
        return day

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, str):
            return value
        return super()._serialize(value, attr, obj, **kwargs)
