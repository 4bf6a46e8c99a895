"""End-to-end event latency: approve in the registry -> organization registered in the fund's read model.

Usage: .venv/bin/python bench/events.py [--rate 100] [--seconds 10]

Runs the registry under gunicorn with its worker (outbox relay) and the fund worker (consumer) as
separate processes on a fresh SecantusDB and Tansu, fires approvals at a fixed rate, and times each
one until the fund's read model shows it (watched with a change stream). Beside it, the bare broker:
the same number of messages produced and consumed with kafka-python, no database, no services; and the
bare database: the fewest single-document writes an approval can cost end to end (its code counter, the
organization with its event, the event marked sent, the fund's read model with the applied event id), as
fast as the server takes them from 8 threads, no reads, no transactions, no HTTP, no broker. That ceiling
is what the target is measured against: at 100 approvals/s the database alone would be nearly saturated.
Target (issue 2): p99 under 250 ms at 100 approvals/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pymongo  # noqa: E402
import requests  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

from bench._harness import BenchStack, percentile, wait  # noqa: E402
from tests.support.data import application  # noqa: E402


def submit_all(base: str, token: str, count: int) -> list[str]:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}

    def submit(_):
        response = session.post(f"{base}/api/v1/organizations", json=application(), headers=headers, timeout=30)
        response.raise_for_status()
        return response.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(submit, range(count)))


def watch_registered(collection, seen: dict, stop: threading.Event, started: threading.Event):
    pipeline = [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}]
    with collection.watch(pipeline, full_document="updateLookup", max_await_time_ms=20) as stream:
        started.set()
        while not stop.is_set():
            change = stream.try_next()
            if change is None:
                continue
            document = change.get("fullDocument") or {}
            if document.get("status") == "registered" and document["_id"] not in seen:
                seen[document["_id"]] = time.perf_counter()


def bench_system(rate: float, seconds: float) -> dict:
    stack = BenchStack("events").start_servers()
    try:
        base = stack.service("registry")
        stack.worker("registry")
        stack.worker("fund")
        count = int(rate * seconds)
        ids = submit_all(base, stack.token("applicant"), count)
        client = pymongo.MongoClient(stack.settings.mongodb_uri)
        fund_orgs = client[stack.settings.fund_db]["organizations"]
        wait(lambda: fund_orgs.count_documents({}) >= count, 120)  # the fund consumer is warm and caught up

        seen: dict[str, float] = {}
        stop, started = threading.Event(), threading.Event()
        watcher = threading.Thread(target=watch_registered, args=(fund_orgs, seen, stop, started), daemon=True)
        watcher.start()
        started.wait(10)

        sent: dict[str, float] = {}
        answered: dict[str, float] = {}
        errors = []
        officer = {"Authorization": f"Bearer {stack.token('officer')}"}
        local = threading.local()

        def approve(organization_id: str, at: float):
            delay = at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            sent[organization_id] = time.perf_counter()
            response = session.post(f"{base}/api/v1/organizations/{organization_id}/approve", headers=officer, timeout=30)
            answered[organization_id] = time.perf_counter()
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:160]}")

        ops_before = client.admin.command("serverStatus")["opcounters"]
        start = time.perf_counter() + 0.2
        with ThreadPoolExecutor(32) as pool:
            for i, organization_id in enumerate(ids):
                pool.submit(approve, organization_id, start + i / rate)
        try:
            wait(lambda: len(seen) >= count, 120)
        finally:
            stop.set()
            print(f"  (seen {len(seen)} of {count} via change stream; fund has "
                  f"{fund_orgs.count_documents({'status': 'registered'})} registered; {len(errors)} errors)")
            for error in sorted(set(errors))[:5]:
                print(f"  error response: {error}")
        ops_after = client.admin.command("serverStatus")["opcounters"]
        # The database is the shared resource every step waits on: how many operations one approval costs it
        # (the web request, the relay, the search follower, the fund consumer, and this bench's change stream).
        ops = {name: (ops_after[name] - ops_before.get(name, 0)) / count for name in ops_after}
        latencies = [(seen[i] - sent[i]) * 1000 for i in ids]
        responses = [(answered[i] - sent[i]) * 1000 for i in ids]
        elapsed = max(seen.values()) - start
        return {"count": count, "errors": len(errors), "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99), "max_ms": max(latencies), "throughput": count / elapsed,
                "approve_p50_ms": percentile(responses, 50), "approve_p99_ms": percentile(responses, 99),
                "db_ops": ops}
    finally:
        stack.stop()


def bench_bare_broker(count: int) -> dict:
    stack = BenchStack("bare-broker").start_servers()
    try:
        bootstrap = stack.settings.kafka_bootstrap_servers
        KafkaAdminClient(bootstrap_servers=bootstrap).create_topics([NewTopic("bare", 6, 1)])
        consumer = KafkaConsumer("bare", bootstrap_servers=bootstrap, group_id="bare", auto_offset_reset="earliest",
                                 session_timeout_ms=6000, heartbeat_interval_ms=1000, fetch_max_wait_ms=50)
        while not consumer.assignment():
            consumer.poll(timeout_ms=100)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
        payload = json.dumps({"data": application()}, ensure_ascii=False).encode()
        latencies, received = [], 0
        start = time.perf_counter()
        for i in range(count):
            producer.send("bare", key=str(i).encode(), value=payload, headers=[("t", str(time.perf_counter()).encode())])
        producer.flush()
        produced = time.perf_counter() - start
        while received < count:
            for messages in consumer.poll(timeout_ms=200).values():
                now = time.perf_counter()
                for message in messages:
                    latencies.append((now - float(dict(message.headers)["t"])) * 1000)
                received += len(messages)
        elapsed = time.perf_counter() - start
        consumer.close()
        return {"count": count, "produce_per_s": count / produced, "end_to_end_per_s": count / elapsed,
                "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}
    finally:
        stack.stop()


def bench_bare_database(count: int, threads: int = 8) -> dict:
    """The database floor: an approval's unavoidable writes, one document each, nothing else."""
    stack = BenchStack("bare-database").start_servers()
    try:
        db = pymongo.MongoClient(stack.settings.mongodb_uri)["bare"]
        organizations, counters, read_model = db["organizations"], db["counters"], db["read_model"]
        ids = [f"org-{i}" for i in range(count)]
        organizations.insert_many([{"_id": i, "status": "submitted", "name": application()["name"]} for i in ids])
        counters.insert_one({"_id": "uscc", "next": 0})
        read_model.insert_one({"_id": "warm"})

        def approve(organization_id: str):
            event = f"event-{organization_id}"
            code = counters.find_one_and_update({"_id": "uscc"}, {"$inc": {"next": 1}})["next"]
            organizations.update_one({"_id": organization_id, "status": "submitted"},
                                     {"$set": {"status": "registered", "code": code},
                                      "$push": {"pending_events": {"id": event, "type": "registered"}}})
            organizations.update_one({"_id": organization_id}, {"$pull": {"pending_events": {"id": event}}})
            read_model.update_one({"_id": organization_id, "applied": {"$ne": event}},
                                  {"$set": {"status": "registered"}, "$push": {"applied": event}}, upsert=True)

        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(approve, ids))
        return {"count": count, "writes": 4, "per_s": count / (time.perf_counter() - start)}
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100.0, help="approvals per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    system = bench_system(args.rate, args.seconds)
    bare = bench_bare_broker(system["count"])
    floor = bench_bare_database(system["count"])
    print(f"approve -> fund read model, {system['count']} approvals at {args.rate:.0f}/s:")
    print(f"  latency p50 {system['p50_ms']:.1f} ms, p99 {system['p99_ms']:.1f} ms, max {system['max_ms']:.1f} ms"
          f" (target p99 < 250 ms)")
    print(f"  of which the approve request itself: p50 {system['approve_p50_ms']:.1f} ms,"
          f" p99 {system['approve_p99_ms']:.1f} ms")
    print(f"  throughput {system['throughput']:.1f} approvals/s end to end, {system['errors']} error responses")
    print("  database operations per approval: " + ", ".join(f"{name} {n:.1f}" for name, n in system["db_ops"].items()))
    print(f"bare broker, {bare['count']} messages produced then consumed (kafka-python, no services):")
    print(f"  produce {bare['produce_per_s']:.0f} msg/s, produce+consume {bare['end_to_end_per_s']:.0f} msg/s,"
          f" latency p50 {bare['p50_ms']:.1f} ms, p99 {bare['p99_ms']:.1f} ms")
    print(f"bare database, {floor['count']} approvals' fewest writes ({floor['writes']} single-document writes each,"
          f" 8 threads, nothing else): {floor['per_s']:.0f} approvals/s at most")
    print(f"ratio: system throughput / bare produce+consume rate = "
          f"{system['throughput'] / bare['end_to_end_per_s']:.3f}")
    print(f"ratio: system throughput / bare database floor = {system['throughput'] / floor['per_s']:.3f}")


if __name__ == "__main__":
    main()
