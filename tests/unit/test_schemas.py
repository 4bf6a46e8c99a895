"""The shared base Schema reads dict documents with dict.get: what a document lacks is missing, never one of
the dict's own methods, and dotted attributes and other objects still work as in marshmallow."""

from types import SimpleNamespace

import marshmallow
import pytest
from marshmallow import fields

from shared.schemas import Schema


class Listing(Schema):
    items = fields.List(fields.Str())
    copy = fields.Str(dump_default="none")
    owner_name = fields.Str(attribute="owner.name")
    total = fields.Int()


class PlainListing(marshmallow.Schema):
    items = fields.List(fields.Str())


def test_a_missing_field_named_like_a_dict_method_is_left_out_or_defaulted():
    assert Listing().dump({"total": 2}) == {"copy": "none", "total": 2}


def test_marshmallow_alone_would_read_the_dict_method():
    # What the base class avoids: marshmallow's accessor hands the bound method `dict.items` to the List field.
    with pytest.raises(TypeError, match="builtin_function_or_method"):
        PlainListing().dump({})


def test_present_values_dotted_attributes_and_objects_dump_as_in_marshmallow():
    document = {"items": ["a", "b"], "copy": "c", "owner": {"name": "张三"}, "total": 2}
    expected = {"items": ["a", "b"], "copy": "c", "owner_name": "张三", "total": 2}
    assert Listing().dump(document) == expected
    assert Listing().dump(SimpleNamespace(**{**document, "owner": SimpleNamespace(name="张三")})) == expected
