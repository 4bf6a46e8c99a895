"""The base Schema's fast path loads and dumps exactly as marshmallow does.

Every schema of every service is loaded with thousands of generated inputs (plausible values for each field's
kind and validators, wrong types, nulls, missing and unknown keys) and dumped with generated documents; each
outcome, a result or an error with its messages, must be the one marshmallow's own steps give.
"""

from __future__ import annotations

import inspect
import random
from datetime import date, datetime, timedelta, timezone

import marshmallow
import pytest
from marshmallow import EXCLUDE, RAISE, ValidationError, fields, validate

import services.evaluation.schemas
import services.fund.schemas
import services.registry.schemas
import shared.audit
import shared.organizations
import shared.schemas
from shared.schemas import SLOW, FastPath, Schema

MODULES = (services.registry.schemas, services.evaluation.schemas, services.fund.schemas, shared.schemas,
           shared.audit, shared.organizations)
WRONG = (None, 0, 1, -1, 10**20, 1.5, True, False, "", "x", "2024-05-31", "a" * 300, [], [1], {}, {"x": 1})
SAMPLES = 250


def all_schemas() -> list[type[Schema]]:
    found = {}
    for module in MODULES:
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, Schema) and value is not Schema:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


def instance(schema_class: type[Schema]) -> Schema:
    try:
        return schema_class()
    except TypeError:  # a schema that needs arguments is not one the services build bare
        pytest.skip(f"{schema_class.__name__} takes arguments")


def plausible(field: fields.Field, rng: random.Random, depth: int):
    """A value of the field's kind that its validators may well accept."""
    for validator in field.validators:
        if isinstance(validator, validate.OneOf):
            return rng.choice(list(validator.choices))
    if isinstance(field, fields.Email):
        return rng.choice(["contact@example.cn", "a.b@mail.example.com", "not an address"])
    if isinstance(field, fields.String):
        length = next((v for v in field.validators if isinstance(v, validate.Length)), None)
        low = (length.equal if length and length.equal is not None else (length.min if length and length.min else 0))
        high = (length.equal if length and length.equal is not None
                else min(length.max if length and length.max is not None else 12, 40))
        return "".join(rng.choice("上海浦东abcXYZ0129-_ ") for _ in range(rng.randint(low, max(low, high))))
    if isinstance(field, fields.Integer):
        bounds = next((v for v in field.validators if isinstance(v, validate.Range)), None)
        low = bounds.min if bounds and bounds.min is not None else -1000
        high = bounds.max if bounds and bounds.max is not None else 10**6
        return rng.choice([low, high, rng.randint(low, high)])
    if isinstance(field, fields.Boolean):
        return rng.random() < 0.5
    if isinstance(field, (fields.Nested, fields.List)):
        return compound(field, rng, depth, plausible_input, value_for)
    if isinstance(field, (fields.Date, fields.DateTime)):
        return (date(2024, 1, 1) + timedelta(days=rng.randint(-400, 400))).isoformat()
    if isinstance(field, fields.Float):
        return rng.uniform(-10, 10)
    return rng.choice(WRONG)


def compound(field: fields.Field, rng: random.Random, depth: int, of_schema, of_field):
    """A Nested field's object (or objects) made by `of_schema`, or a List's items made by `of_field`."""
    if isinstance(field, fields.Nested):
        if field.many or field.schema.many:
            return [of_schema(field.schema, rng, depth + 1) for _ in range(rng.randint(0, 3))]
        return of_schema(field.schema, rng, depth + 1)
    return [of_field(field.inner, rng, depth + 1) for _ in range(rng.randint(0, 4))]


def value_for(field: fields.Field, rng: random.Random, depth: int):
    if depth > 3 or rng.random() < 0.15:
        return rng.choice(WRONG)
    return plausible(field, rng, depth)


def plausible_input(schema: Schema, rng: random.Random, depth: int = 0) -> dict:
    data = {}
    for name, field in schema.load_fields.items():
        if rng.random() < 0.08:
            continue  # missing
        data[field.data_key or name] = value_for(field, rng, depth)
    if rng.random() < 0.05:
        data[rng.choice(["unknown", "id", "status"])] = "x"
    return data


def document_value(field: fields.Field, rng: random.Random, depth: int):
    if rng.random() < 0.1:
        return None
    if isinstance(field, (fields.Nested, fields.List)):
        return compound(field, rng, depth, document, document_value)
    if isinstance(field, fields.DateTime):
        return datetime(2026, 5, 31, 8, 0, tzinfo=timezone.utc) + timedelta(minutes=rng.randint(0, 10**5))
    if isinstance(field, fields.Date):
        return rng.choice([date(2024, 5, 31), "2024-05-31"])
    if isinstance(field, fields.Integer):
        return rng.choice([7, -3, 10**15, True, 2.5, "12"])
    if isinstance(field, fields.String):
        return rng.choice(["上海浦东", "", "x" * 30, 12, True])
    return rng.choice(["x", 1, 2.5, True, [], {}])


def document(schema: Schema, rng: random.Random, depth: int = 0) -> dict:
    doc = {"_id": "org_1", "flags": [{"id": "f1", "list": "abnormal", "reason": "r", "raised_on": "2024-05-31",
                                      "active": rng.random() < 0.5}]}
    for name, field in schema.dump_fields.items():
        if rng.random() < 0.15 or depth > 3:
            continue
        key = field.attribute or name
        if "." not in key:
            doc[key] = document_value(field, rng, depth)
    return doc


def outcome(action):
    try:
        return "ok", action()
    except ValidationError as exc:
        return "invalid", exc.messages, exc.valid_data
    except Exception as exc:  # noqa: BLE001 - the same failure on both paths is what is compared
        return "raised", type(exc).__name__, str(exc)


@pytest.fixture
def marshmallow_only(monkeypatch):
    """Run `action` with the base Schema's two steps put back to marshmallow's own."""
    def run(action):
        with monkeypatch.context() as patched:
            patched.setattr(Schema, "_deserialize", marshmallow.Schema._deserialize)
            patched.setattr(Schema, "_serialize", marshmallow.Schema._serialize)
            return outcome(action)
    return run


@pytest.mark.parametrize("schema_class", all_schemas(), ids=lambda c: c.__name__)
def test_loads_as_marshmallow_does(schema_class, marshmallow_only):
    schema = instance(schema_class)
    rng = random.Random(schema_class.__name__)
    for _ in range(SAMPLES):
        data = plausible_input(schema, rng) if rng.random() < 0.95 else rng.choice(WRONG)
        unknown = rng.choice([None, None, RAISE, EXCLUDE])
        load = lambda: marshmallow.Schema.load(schema, data, unknown=unknown)  # noqa: E731 - the schema's own
        assert outcome(load) == marshmallow_only(load), data


@pytest.mark.parametrize("schema_class", all_schemas(), ids=lambda c: c.__name__)
def test_dumps_as_marshmallow_does(schema_class, marshmallow_only):
    schema = instance(schema_class)
    rng = random.Random(schema_class.__name__)
    for _ in range(SAMPLES):
        many = rng.random() < 0.2
        obj = [document(schema, rng) for _ in range(3)] if many else document(schema, rng)
        dump = lambda: schema.dump(obj, many=many)  # noqa: E731
        assert outcome(dump) == marshmallow_only(dump), obj


def test_the_application_and_the_organization_take_the_fast_path():
    # What the registry's POST does on every request: if either fell back to marshmallow for a valid
    # application, the tests above would still pass and the gain would be gone.
    application = {"name": "上海市浦东新区阳光服务社", "type": "social_service_agency", "domain": "养老",
                   "address": "世纪大道100号", "legal_representative": {"name": "张三", "id_number": "11010519491231002X"},
                   "contact": {"phone": "13800138000", "email": "contact@example.cn"},
                   "registered_funds_fen": 10_000_000, "council": [{"name": "李四", "role": "chair"}], "term_years": 5}
    schemas = services.registry.schemas
    loaded = FastPath(schemas.ApplicationSchema()).load(application, RAISE)
    assert loaded is not SLOW and loaded == marshmallow.Schema.load(schemas.ApplicationSchema(), application)
    assert FastPath(schemas.OrganizationSchema()).load_plan is None  # dump-only fields of other kinds: marshmallow's


def test_a_load_it_cannot_finish_is_left_to_marshmallow():
    schema = services.registry.schemas.CouncilMemberSchema()
    fast = schema.fast_path()
    assert fast.load({"name": "李四", "role": "chair"}, RAISE) == {"name": "李四", "role": "chair"}
    for data in ({"name": "李四", "role": "king"}, {"name": "李四"}, {"name": 3, "role": "chair"},
                 {"name": "李四", "role": "chair", "extra": 1}, {"name": None, "role": "chair"}):
        assert fast.load(data, RAISE) is SLOW
    assert fast.load({"name": "李四", "role": "chair", "extra": 1}, EXCLUDE) == {"name": "李四", "role": "chair"}
    with pytest.raises(ValidationError) as refused:
        schema.load({"name": "李四", "role": "king"})
    assert list(refused.value.messages) == ["role"]  # marshmallow's message, from marshmallow's own load


def test_a_schema_building_another_mapping_is_left_to_marshmallow():
    from collections import OrderedDict

    class Ordered(Schema):
        dict_class = OrderedDict
        name = fields.Str()

    for schema in (Ordered(), Ordered(exclude=("name",))):  # the second one has no field to load
        assert schema.fast_path().load_plan is None
        assert type(schema.load({})) is OrderedDict and type(schema.dump({"name": "x"})) is OrderedDict
