"""Publishing hand-made events straight to a stack's topics, for consumer tests that need an event the
producing service cannot be made to emit (malformed, duplicated, out of order)."""

from __future__ import annotations

from kafka import KafkaProducer

from shared.events import Event, encode, envelope, source_of


def publish(stack, service: str, event: Event | bytes, key: str | None = None) -> None:
    """Send `event` (an Event, wrapped as `service` would, or raw bytes) to `service`'s topic."""
    producer = KafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap_servers)
    try:
        if isinstance(event, Event):
            value, key = encode(envelope(event, source_of(service))), event.partition_key
        else:
            value = event
        producer.send(stack.settings.topic(service), key=(key or "k").encode(), value=value)
        producer.flush()
    finally:
        producer.close()
