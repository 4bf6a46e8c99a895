"""Scenario 4: every event type delivered twice and out of order converges to the state of a clean run.

One system runs the same script twice, each time on organizations, rounds and funds of its own:
- the faulted run first: the test holds the three relays' leases (shared/outbox.Relay stands by while
  another relay holds its topic) and publishes in their place, after each step of the script, every new
  outbox record twice, in a seeded shuffle, so a consumer sees an organization's `deregistered` before
  its `registered`, an award before the project's entry, each event twice;
- then the clean run, with the leases released: the real relays publish each event once, in order.
Each step waits until the consumers applied what it produced (the next step's commands need it, as
people would). The consumers' state of the two runs, with ids replaced by the script's labels, must be
equal. Then every outbox is replayed (`socorg replay`), once more to every consumer: nothing changes.

`registry.organization.annual_report_filed` is the one event type the script cannot produce: a report
covers a finished year since registration, and the script's organizations were registered today.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections import Counter

import pytest
from kafka import KafkaProducer

from shared.events import encode
from shared.kafka import KafkaLink
from shared.outbox import LEASES, PENDING, Outbox
from tests.faults.bureau import Bureau, expect
from tests.faults.conftest import record_summary
from tests.faults.reconcile import CONSUMES, SERVICES, reconcile
from tests.faults.system import BIN, FaultSystem
from tests.support.stack import wait_until

SEED = 4
CHAOS = "chaos-relay-of-scenario-4"


# -- delivery: the chaos relay and the real one ---------------------------------------------------------------------
class ChaosRelay:
    """Publishes every unsent outbox record twice, shuffled, while it holds the relays' leases."""

    def __init__(self, system: FaultSystem, seed: int):
        self.system = system
        self.rng = random.Random(seed)
        self.published = 0
        self.out_of_order_keys = 0  # keys whose events went out in another order than they were recorded
        self.keys = 0

    def hold_leases(self) -> None:
        for service in SERVICES:
            self.system.db(service)[LEASES].replace_one(
                {"_id": self.system.settings.topic(service)},
                {"owner": CHAOS, "expires": time.time() + 3600}, upsert=True)
        link = KafkaLink(self.system.settings.kafka_bootstrap_servers, partitions=self.system.settings.topic_partitions)
        link.ensure_topics([self.system.settings.topic(service) for service in SERVICES])
        link.close()

    def release_leases(self) -> None:
        for service in SERVICES:
            self.system.db(service)[LEASES].delete_one({"_id": self.system.settings.topic(service), "owner": CHAOS})

    def deliver(self) -> None:
        """Publish what is pending (twice, shuffled) until the consumers applied everything, including the events
        they wrote of their own meanwhile."""
        producer = KafkaProducer(bootstrap_servers=self.system.settings.kafka_bootstrap_servers, acks="all")
        try:
            def round_trip():
                batches = {service: Outbox(self.system.db(service), service).pending(100_000) for service in SERVICES}
                pending = [(service, record) for service, batch in batches.items() for record in batch.records]
                if pending:
                    self.publish(producer, pending, batches)
                return self.system.outbox_backlog() == 0 and self.system.undelivered() == 0

            wait_until(round_trip, timeout=120, interval=0.3, message="the consumers to apply the shuffled copies")
        finally:
            producer.close()

    def publish(self, producer: KafkaProducer, pending: list, batches: dict) -> None:
        copies = [item for item in pending for _ in range(2)]
        self.rng.shuffle(copies)
        for service, record in copies:
            producer.send(self.system.settings.topic(service), key=record["key"].encode(), value=encode(record["event"]))
        producer.flush()
        for service in SERVICES:
            Outbox(self.system.db(service), service).mark_sent(batches[service])
        self.published += len(copies)
        # Per key (the order Kafka keeps), the order the events were recorded in and the order they went out in.
        recorded, sent = {}, {}
        for _, record in pending:
            recorded.setdefault(record["key"], []).append(record["_id"])
        for _, record in copies:
            if record["_id"] not in sent.setdefault(record["key"], []):
                sent[record["key"]].append(record["_id"])
        several = [key for key, events in recorded.items() if len(events) > 1]
        self.keys += len(several)
        self.out_of_order_keys += sum(1 for key in several if recorded[key] != sent[key])


def real_relays(system: FaultSystem):
    return lambda: system.quiesce(timeout=120)


# -- the script -------------------------------------------------------------------------------------------------------
def script(bureau: Bureau, deliver) -> dict[str, str]:
    """Every consumed event type, in five steps; answers the labels of what it created (label -> id)."""
    ids: dict[str, str] = {}
    orgs: dict[str, dict] = {}
    # 1. eight applications: seven registered, one rejected.
    for n in range(1, 9):
        call = bureau.apply()
        body = expect(call.send(), 201).body
        orgs[f"o{n}"] = {"id": body["id"], "sub": call.actor}
    for n in range(1, 8):
        expect(bureau.approve(orgs[f"o{n}"]["id"]).send(), 200)
    expect(bureau.reject(orgs["o8"]["id"]).send(), 200)
    deliver()

    # 2. a round with five projects, a fund with three grants, a park residency.
    ids["R"] = expect(bureau.open_round().send(), 201).body["id"]
    for reviewer in ("v1", "v2", "v3"):
        expect(bureau.add_reviewer(ids["R"], reviewer).send(), 201)
    for n in range(1, 6):
        ids[f"p{n}"] = expect(bureau.enter(ids["R"], orgs[f"o{n}"]).send(), 201).body["id"]
    ids["F"] = expect(bureau.open_fund(10_000_000).send(), 201).body["id"]
    for n in (1, 2, 6):
        ids[f"g{n}"] = expect(bureau.grant(ids["F"], orgs[f"o{n}"]["id"], 1_000_000, (50, 50)).send(), 201).body["id"]
    unit = expect(bureau.add_unit().send(), 201).body
    ids["u1"] = unit["id"]
    ids["r7"] = expect(bureau.reside(orgs["o7"]["id"], unit["code"]).send(), 201).body["id"]
    deliver()

    # 3. risk and lifecycle: evaluation disqualifies p3 and p4, fund ends r7; o5 is flagged and cleared at once.
    flag2 = expect(bureau.flag(orgs["o2"]["id"]).send(), 201).body["id"]
    expect(bureau.flag(orgs["o3"]["id"], "serious").send(), 201)
    expect(bureau.deregister(orgs["o4"]["id"]).send(), 200)
    expect(bureau.deregister(orgs["o7"]["id"]).send(), 200)
    expect(bureau.renew(orgs["o1"]), 200)
    flag5 = expect(bureau.flag(orgs["o5"]["id"]).send(), 201).body["id"]
    expect(bureau.clear(orgs["o5"]["id"], flag5).send(), 200)
    expect(bureau.flag(orgs["o6"]["id"]).send(), 201)
    deliver()

    # 4. scoring, payments (two held), a clawback, closing, two awards that become grants.
    expect(bureau.assign(ids["R"]).send(), 200)
    score_of = {ids["p1"]: 80, ids["p2"]: 70, ids["p5"]: 90}
    for reviewer, project_id in bureau.assignments(ids["R"]):
        expect(bureau.score(ids["R"], project_id, reviewer, score_of[project_id]).send(), 200)
    for n, status in ((1, "paid"), (2, "held"), (6, "held")):
        assert expect(bureau.disburse(ids[f"g{n}"]).send(), 201).body["status"] == status
    expect(bureau.claw_back(ids["g1"], 100_000).send(), 201)
    expect(bureau.close(ids["R"]).send(), 200)
    expect(bureau.award(ids["R"], [{"project_id": ids["p5"], "tier": "一等奖", "prize_fen": 500_000, "fund_id": ids["F"]},
                                   {"project_id": ids["p1"], "tier": "二等奖", "prize_fen": 300_000,
                                    "fund_id": ids["F"]}]).send(), 201)
    deliver()

    # 5. o2's flag cleared: fund pays the held tranche; o6 deregistered: fund cancels its held tranche.
    expect(bureau.clear(orgs["o2"]["id"], flag2).send(), 200)
    expect(bureau.deregister(orgs["o6"]["id"]).send(), 200)
    deliver()
    return ids | {label: org["id"] for label, org in orgs.items()}


# -- what the consumers made of it, by label ----------------------------------------------------------------------------
def consumer_state(system: FaultSystem, labels: dict[str, str]) -> dict:
    """The consumers' state of one run, ids replaced by labels, without counters and times that legitimately
    differ (applied_events, updated_at, ...)."""
    label = {v: k for k, v in labels.items()}
    evaluation, fund = system.db("evaluation"), system.db("fund")
    orgs = [labels[f"o{n}"] for n in range(1, 9)]
    state = {}
    for service, db in (("evaluation", evaluation), ("fund", fund)):
        state[f"{service} organizations"] = {
            label[o["_id"]]: (o["status"], o["risk"], o["version"], o["type"], o["uscc"] is not None)
            for o in db["organizations"].find({"_id": {"$in": orgs}})}
    state["projects"] = {label[p["_id"]]: (p["status"], p.get("disqualified_reason"), p.get("disqualified_by"))
                         for p in evaluation["projects"].find({"round_id": labels["R"]})}
    state["results"] = {label[r["project_id"]]: (r["score"], r["rank"], r["reviews"], r["status"])
                        for r in evaluation["results"].find({"round_id": labels["R"]})}
    grants = list(fund["grants"].find({"fund_id": labels["F"]}))
    grant_label = {g["_id"]: label.get(g["_id"]) or f"award of {label[g['award']['project_id']]}" for g in grants}
    state["grants"] = {grant_label[g["_id"]]: (
        label[g["organization_id"]], g["status"], g["amount_fen"], g["tranche_amounts"], g["disbursed_fen"],
        g["held_fen"], g["clawed_back_fen"], [(d["tranche"], d["status"], d.get("released_by")) for d in g["disbursements"]],
        g.get("rejection_reason")) for g in grants}
    state["journal"] = sorted(Counter((e["kind"], grant_label.get(e["grant_id"], "fund"))
                                      for e in fund["journal"].find({"fund_id": labels["F"]})).items())
    state["fund"] = {k: v for k, v in fund["funds"].find_one({"_id": labels["F"]}).items()
                     if k in ("budget_fen", "committed_fen", "clawed_back_fen", "available_fen")}
    state["residencies"] = {label[r["_id"]]: (r["status"], r["end_reason"], r["ended_by"] if r["status"] != "active" else None)
                            for r in fund["residencies"].find({"_id": labels["r7"]})}
    return state


@pytest.mark.slow
def test_duplicated_and_shuffled_delivery_converges_to_the_clean_run(fault_system):
    system = fault_system(registry_renewal_window_months=120).start(workers=())
    chaos = ChaosRelay(system, SEED)
    chaos.hold_leases()
    for service in SERVICES:
        system.start_worker(service)
    bureau = Bureau(system)

    faulted = script(bureau, chaos.deliver)
    chaos.release_leases()
    clean = script(bureau, real_relays(system))
    assert consumer_state(system, faulted) == consumer_state(system, clean)
    assert chaos.out_of_order_keys > 0, "the shuffle should have reordered some organization's events"

    # Every service's whole outbox once more (what `socorg replay` is for): both runs' state stays as it is.
    before = {run: consumer_state(system, labels) for run, labels in (("faulted", faulted), ("clean", clean))}
    for service in SERVICES:
        replay = subprocess.run([str(BIN / "socorg"), "replay", service], env=system.stack.env(), capture_output=True,
                                text=True, timeout=60)
        assert replay.returncode == 0 and "queued for publishing again" in replay.stdout, replay
    system.quiesce(timeout=120)
    wait_until(lambda: all(system.db(s)[PENDING].count_documents({}) == 0 for s in SERVICES), timeout=60)
    after = {run: consumer_state(system, labels) for run, labels in (("faulted", faulted), ("clean", clean))}
    assert after == before

    result = reconcile(system.stack)
    deliveries = sum(len(system.topic_messages(p)) for consumer, producers in CONSUMES.items() for p in producers)
    distinct = sum(result.events[p] for producers in CONSUMES.values() for p in producers)
    types = {e["event"]["type"].removeprefix("org.socorg.") for s in SERVICES for e in system.db(s)["outbox"].find()}
    record_summary("4 duplicates and disorder", (
        f"{len(types)} event types; faulted run published {chaos.published} copies (each event twice, shuffled: "
        f"{chaos.out_of_order_keys} of {chaos.keys} keys with several events out of order), then every outbox "
        f"replayed; {deliveries} deliveries to consumers for {distinct} distinct events, {deliveries - distinct} "
        f"duplicates absorbed; consumer state equal to the clean run's, unchanged by the replay; {result.line()}"))
