"""Races through the real stack: parallel approvals, parallel applications for one name, parallel retries
with one Idempotency-Key. Each thread has its own client of the one Flask app, as gunicorn threads would."""

from __future__ import annotations

import json
import threading

from services.registry.identifiers import is_valid_uscc
from shared.outbox import PENDING
from tests.faults.system import read_topic
from tests.integration.test_registry_api import ORGS, apply
from tests.support.data import application
from tests.support.stack import Stack, wait_until

SUBMITTED = "org.socorg.registry.organization.submitted"
REGISTERED = "org.socorg.registry.organization.registered"

PARALLEL = 20


def in_parallel(count: int, call) -> list:
    """Run `call(i)` in `count` threads released at the same moment; return the results in order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i):
        barrier.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_twenty_parallel_approvals_give_one_success_one_uscc_one_event(stack):
    organization = apply(stack)
    clients = [stack.client("registry", "officer", sub=f"officer{i}") for i in range(PARALLEL)]
    responses = in_parallel(PARALLEL, lambda i: clients[i].post(f"{ORGS}/{organization['id']}/approve"))

    statuses = sorted(r.status for r in responses)
    assert statuses == [200] + [409] * (PARALLEL - 1), statuses
    winner = next(r.body for r in responses if r.status == 200)
    assert is_valid_uscc(winner["uscc"])
    db = stack.db("registry")
    assert db["organizations"].find_one({"_id": organization["id"]})["uscc"] == winner["uscc"]
    assert db["organizations"].count_documents({"uscc": {"$exists": True}}) == 1
    assert list(db["organization_codes"].find()) == [{"_id": winner["uscc"], "organization_id": organization["id"]}]
    registered = db["outbox"].count_documents({"key": organization["id"],
                                               "event.type": "org.socorg.registry.organization.registered"})
    assert registered == 1
    # The next approval gets another valid code (numbers a failed approval took are skipped, never reused).
    second = apply(stack)
    next_code = clients[0].post(f"{ORGS}/{second['id']}/approve").body["uscc"]
    assert is_valid_uscc(next_code) and next_code[8:16] > winner["uscc"][8:16]


def test_parallel_applications_for_one_name_give_one_organization(stack):
    body = application()
    clients = [stack.client("registry", "applicant", sub=f"applicant{i}") for i in range(PARALLEL)]
    responses = in_parallel(PARALLEL, lambda i: clients[i].post(ORGS, body))
    assert sorted(r.status for r in responses) == [201] + [409] * (PARALLEL - 1)
    assert stack.db("registry")["organizations"].count_documents({}) == 1
    # Its one event travels in the document until the worker or the next command copies it to the outbox.
    assert len(stack.db("registry")["organizations"].find_one()["pending_events"]) == 1


def test_parallel_retries_with_one_key_create_one_organization(stack):
    body = application()
    client = stack.app("registry")
    token = stack.token("applicant", "retrier")
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "same", "Content-Type": "application/json"}

    def post(_):
        response = client.test_client().post(ORGS, data=json.dumps(body, ensure_ascii=False), headers=headers)
        return response.status_code, response.get_json()

    results = in_parallel(10, post)
    assert {status for status, _ in results} == {201}
    assert len({created["id"] for _, created in results}) == 1
    assert stack.db("registry")["organizations"].count_documents({}) == 1


def test_events_carried_by_applications_reach_the_outbox_once_and_in_order(servers):
    """The follower publishes and records the `submitted` event of each application, while officers approve
    half of them at the same time (the approval records it too): every event is in the outbox once and on the
    topic, `submitted` first."""
    stack = Stack(servers, registry_sweep_check_seconds=0.0)
    try:
        stack.start_workers("registry")
        ids = [apply(stack)["id"] for _ in range(10)]
        officer = stack.client("registry", "officer")
        in_parallel(5, lambda i: officer.post(f"{ORGS}/{ids[i]}/approve"))
        outbox = stack.db("registry")["outbox"]
        wait_until(lambda: outbox.count_documents({"event.type": SUBMITTED}) == 10, timeout=20,
                   message="the carried events in the outbox")
        assert outbox.count_documents({"event.type": REGISTERED}) == 5
        for organization_id in ids:
            types = [r["event"]["type"] for r in outbox.find({"key": organization_id}).sort("order", 1)]
            assert types == [SUBMITTED, REGISTERED][:len(types)] and types[0] == SUBMITTED
        # and they are published (the follower publishes what it copies, the relay the rest): nothing left
        # unsent, and on the topic each organization's `submitted` comes first (a copy published twice may
        # come again later; consumers apply each event id once)
        wait_until(lambda: stack.db("registry")[PENDING].count_documents({}) == 0, timeout=20, message="published")
        recorded = {r["_id"]: (r["key"], r["event"]["type"]) for r in outbox.find()}
        messages = read_topic(stack.settings.kafka_bootstrap_servers, stack.settings.topic("registry"), idle_ms=1000)
        assert {m.event_id for m in messages} == set(recorded)
        kinds: dict[str, list[str]] = {}
        for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
            key, kind = recorded[message.event_id]
            if kind not in kinds.setdefault(key, []):
                kinds[key].append(kind)
        assert all(kinds[organization_id][0] == SUBMITTED for organization_id in ids)
    finally:
        stack.close()
