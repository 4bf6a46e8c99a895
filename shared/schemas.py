"""Marshmallow pieces every service uses: list paging and the problem document (for OpenAPI)."""

from __future__ import annotations

from functools import lru_cache

from marshmallow import INCLUDE, Schema, fields, validate

MAX_PER_PAGE = 100
# Far beyond any list here, and it keeps (page - 1) x per_page a small integer: a page number past 2^63 / 100
# would otherwise reach MongoDB as a skip it cannot encode (a 500 instead of a 422).
MAX_PAGE = 1_000_000


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


class IsoDate(fields.Date):
    """A calendar date stored as its ISO 8601 string (BSON has no date-only type)."""

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, str):
            return value
        return super()._serialize(value, attr, obj, **kwargs)
