"""Marshmallow pieces every service uses: the base Schema, list paging and the problem document (for OpenAPI)."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import marshmallow
from marshmallow import EXCLUDE, INCLUDE, ValidationError, fields, missing, validate
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA

MAX_PER_PAGE = 100
# The most money any request may name: 10^15 fen (10 trillion yuan), far beyond a district's budgets and well
# inside the 8-byte integers MongoDB stores (a larger number would fail to store: a 500 instead of a 422).
MAX_FEN = 10**15
# Far beyond any list here, and it keeps (page - 1) x per_page a small integer: a page number past 2^63 / 100
# would otherwise reach MongoDB as a skip it cannot encode (a 500 instead of a 422).
MAX_PAGE = 1_000_000


class Schema(marshmallow.Schema):
    """The base of every schema here: marshmallow's, reading the documents it dumps (plain dicts, from MongoDB
    or the domain) with `dict.get`, and loading and dumping the common case the short way (`FastPath`).

    marshmallow's default accessor tries `obj[key]` and, for a missing key, catches the KeyError and falls
    back to `getattr(obj, key)`, which on a dict finds its methods (a missing `items` would dump `dict.items`).
    `dict.get` answers at once and only with what the document holds; an organization dumps in 53 us instead
    of 62 (each list page dumps up to 100). Dotted attributes and other objects go marshmallow's way.
    """

    def get_attribute(self, obj, attr, default):
        if type(obj) is dict and "." not in attr:
            return obj.get(attr, default)
        return super().get_attribute(obj, attr, default)

    def fast_path(self) -> "FastPath":
        fast = self.__dict__.get("_fast_path")
        if fast is None:  # built once per schema instance (two threads may both build it: harmless)
            fast = self._fast_path = FastPath(self)
        return fast

    # marshmallow's load runs its hooks and validators around this, and its dump around `_serialize`.
    def _deserialize(self, data, *, error_store, many=False, partial=None, unknown=marshmallow.RAISE, index=None):
        if not many and not partial:
            loaded = self.fast_path().load(data, unknown)
            if loaded is not SLOW:
                return loaded
        return super()._deserialize(data, error_store=error_store, many=many, partial=partial, unknown=unknown,
                                    index=index)

    def _serialize(self, obj, *, many=False):
        if many and obj is not None:
            return [self._serialize(item) for item in obj]
        fast = self.fast_path()
        if type(obj) is not dict or not fast.plain:
            return super()._serialize(obj, many=many)
        return fast.dump(obj)


# -- the common case without marshmallow's per-field machinery ------------------------------------------------
# marshmallow loads each field through a chain of calls (a getter closure, the error store, the checks for a
# missing or null value, the field's deserialize, then each validator). Loading the registry's application was
# a fifth of the instructions of a whole POST (callgrind), dumping the organization a tenth. `FastPath` reads a
# schema's fields once and does, for the kinds of field whose behaviour it copies exactly, what marshmallow
# would do in a few steps; everything else is marshmallow's:
# - a load it cannot finish (a value of another type, a missing required field, a null where none is allowed,
#   a validator that fails, an unknown key) is done again by marshmallow from the start, so every error and
#   its message are marshmallow's own; a schema with a field of another kind is always loaded by marshmallow;
# - a dump hands every field but the strings and integers to the field's own `serialize`;
# - hooks (pre_load, validates, post_dump...) still run: marshmallow calls them around these two steps.
SLOW = object()  # "marshmallow has to do this load"
_STRINGS = (fields.String, fields.Email)  # Email is a String whose address check is one of its validators
_LOAD_HOOKS = (PRE_LOAD, POST_LOAD, VALIDATES, VALIDATES_SCHEMA)


class FastPath:
    """One schema instance's plan for loading and dumping (see above)."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self.plain = schema.dict_class is dict  # what both steps build
        self.has_load_hooks = any(schema._hooks[tag] for tag in _LOAD_HOOKS)
        self.load_plan: list | None = [] if self.plain else None
        for name, field in schema.load_fields.items() if self.plain else ():
            read, output_key = _reader(field), field.attribute or name
            if read is None or "." in output_key:
                self.load_plan = None  # a kind of field marshmallow alone loads
                break
            self.load_plan.append((field.data_key if field.data_key is not None else name, output_key, field, read))
        self.input_keys = frozenset(key for key, *_ in self.load_plan or ())
        # (name, output key, field, the type it dumps as it is or None, the document key it reads)
        self.dump_plan = [(name, field.data_key if field.data_key is not None else name, field, _dumped_as_is(field),
                           field.attribute or name) for name, field in schema.dump_fields.items()]

    def load(self, data, unknown):
        """The loaded fields, or SLOW."""
        if self.load_plan is None or type(data) is not dict:
            return SLOW
        if unknown != EXCLUDE and not self.input_keys.issuperset(data):
            return SLOW  # an unknown key: an error, or kept (INCLUDE)
        loaded = {}
        for input_key, output_key, field, read in self.load_plan:
            value = data.get(input_key, missing)
            if value is missing:
                if field.required:
                    return SLOW
                value = field.load_default
                if value is missing:
                    continue
                if callable(value):
                    value = value()
            else:
                value = _load_present(field, read, value)
                if value is SLOW:
                    return SLOW
            loaded[output_key] = value
        return loaded

    def dump(self, obj: dict) -> dict:
        get_attribute = self.schema.get_attribute
        dumped = {}
        for name, output_key, field, as_is, key in self.dump_plan:
            if as_is is None:
                value = field.serialize(name, obj, accessor=get_attribute)
                if value is missing:
                    continue
            else:
                value = obj.get(key, missing)
                if value is missing:
                    value = field.dump_default
                    if value is missing:
                        continue
                    if callable(value):
                        value = value()
                if value is not None and type(value) is not as_is:
                    value = field._serialize(value, name, obj)
            dumped[output_key] = value
        return dumped


def _load_present(field: fields.Field, read, value):
    """A value present in the data, as marshmallow's `Field.deserialize` loads it (a null where the field allows
    one, else the read value if it passes the validators), or SLOW."""
    if value is None:
        return None if field.allow_none else SLOW
    value = read(value)
    return value if value is not SLOW and _passes(field, value) else SLOW


def _passes(field: fields.Field, value) -> bool:
    """Does `value` pass the field's validators, as `Field._validate` judges them?"""
    for validator in field.validators:
        try:
            if validator(value) is False and not isinstance(validator, validate.Validator):
                return False
        except ValidationError:
            return False
    return True


def _reader(field: fields.Field):
    """`read(value)` for a present, non-null value of the field: what marshmallow's deserialize gives before the
    validators, or SLOW; None for a field the fast path does not load."""
    if field.pre_load or field.post_load:
        return None
    kind = type(field)
    if kind in _STRINGS:
        return _exactly(str)
    if kind is fields.Integer:
        return _exactly(int)  # not bool, which marshmallow refuses as a number too
    if kind is fields.Boolean and True in field.truthy and False in field.falsy:
        return _exactly(bool)
    if kind is fields.Nested and not field.many and isinstance(field.schema, Schema) and not field.schema.many:
        nested = field.schema.fast_path()
        if nested.has_load_hooks or nested.load_plan is None:
            return None
        unknown = field.unknown or field.schema.unknown
        return lambda value: nested.load(value, unknown)
    if kind is fields.List:
        inner, read_item = field.inner, _reader(field.inner)
        if read_item is None:
            return None

        def read_list(value):
            if type(value) is not list:
                return SLOW
            items = [_load_present(inner, read_item, item) for item in value]
            return SLOW if any(item is SLOW for item in items) else items
        return read_list
    return None


def _exactly(kind: type):
    return lambda value: value if type(value) is kind else SLOW


def _dumped_as_is(field: fields.Field) -> type | None:
    """The type whose values (and None) the field dumps unchanged, for a field read from its document's key."""
    if "." in (field.attribute or "") or not field._CHECK_ATTRIBUTE:
        return None
    kind = type(field)
    if kind in _STRINGS:
        return str
    if kind is fields.Integer and not field.as_string:
        return int
    return None


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
