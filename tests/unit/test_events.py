import json

import pytest

from shared.events import Event, InvalidEvent, decode, dlq_topic, encode, envelope, short_type


def make(**data):
    return Event(type="registry.organization.registered", subject="org_1", data={"actor": "li", **data})


def test_envelope_is_cloudevents_structured_json():
    document = envelope(make(x=1), "/socorg/registry")
    assert document["specversion"] == "1.0"
    assert document["type"] == "org.socorg.registry.organization.registered"
    assert document["source"] == "/socorg/registry"
    assert document["subject"] == "org_1"
    assert document["datacontenttype"] == "application/json"
    assert document["time"].endswith("Z")
    assert document["partitionkey"] == "org_1"
    assert document["data"] == {"actor": "li", "x": 1}


def test_ids_are_unique_and_key_defaults_to_subject():
    first, second = make(), make()
    assert first.id != second.id
    assert Event(type="t", subject="s", data={"actor": "a"}, key="k").partition_key == "k"


def test_envelope_requires_an_actor():
    with pytest.raises(ValueError, match="actor"):
        envelope(Event(type="x", subject="s", data={}), "/socorg/registry")


def test_encode_decode_round_trip_keeps_chinese_text():
    document = envelope(make(name="上海市浦东新区协会"), "/socorg/registry")
    raw = encode(document)
    assert "上海市".encode() in raw
    assert decode(raw) == json.loads(raw)
    assert short_type(decode(raw)) == "registry.organization.registered"


@pytest.mark.parametrize("raw, reason", [
    (None, "empty"),
    (b"{nope", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"specversion": "1.0"}', "missing CloudEvents attributes"),
])
def test_decode_rejects_what_is_not_an_event(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        decode(raw)


def test_decode_rejects_foreign_types_and_versions():
    document = envelope(make(), "/socorg/registry")
    with pytest.raises(InvalidEvent, match="specversion"):
        decode(encode(document | {"specversion": "0.3"}))
    with pytest.raises(InvalidEvent, match="unknown event type"):
        decode(encode(document | {"type": "com.example.other"}))
    with pytest.raises(InvalidEvent, match="data"):
        decode(encode(document | {"data": "text"}))


def test_dlq_topic_name():
    assert dlq_topic("registry.organizations.v1") == "registry.organizations.v1.dlq"


@pytest.mark.parametrize("raw, words", [
    (b"[" * 5000 + b"]" * 5000, "nest too deeply"),  # raised RecursionError, which stopped the consumer
    (b'{"specversion": "1.0", "id": "\\ud800"}', "unpaired surrogate"),
])
def test_a_message_no_handler_could_apply_is_an_invalid_event(raw, words):
    with pytest.raises(InvalidEvent, match=words):
        decode(raw)


def test_a_message_whose_decoding_fails_unexpectedly_is_dead_lettered_not_raised(monkeypatch):
    """Decoding the same bytes fails every time: the consumer's decode step turns any failure into a dead
    letter, so one message cannot stop the consumer (a RecursionError did)."""
    from types import SimpleNamespace

    from shared import consumer

    def broken(raw):
        raise KeyError("a bug in decoding")

    monkeypatch.setattr(consumer, "decode", broken)
    decoded = consumer.Consumer._decode(SimpleNamespace(value=b"{}"))
    assert decoded.event is None and "undecodable: KeyError" in decoded.error
