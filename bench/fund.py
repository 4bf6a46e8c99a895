"""Disbursements per second: 16 concurrent clients, each on its own grants of one fund, against the fund
service under gunicorn, beside a bare pymongo `find_one_and_update` counter increment (16 threads, one
counter each) on the same SecantusDB in the same run. The ratio is what the service's checks, journal,
outbox and idempotency record cost over the bare database; the machine's speed cancels out of it.

    .venv/bin/python bench/fund.py [--clients 16] [--per-client 40] [--tranches 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pymongo
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.fund.domain import tranche_amounts  # noqa: E402
from services.fund.handlers import worker_spec  # noqa: E402
from shared import infra  # noqa: E402
from shared.auth import issue_token  # noqa: E402
from shared.events import Event, envelope, source_of  # noqa: E402
from shared.mongo import run_in_transaction  # noqa: E402
from shared.settings import Settings  # noqa: E402

SECRET = "bench-secret-for-the-fund-benchmark-0123456789"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")


class Bench:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.mongo_port, self.web_port = infra.free_port(), infra.free_port()
        self.settings = Settings.from_env({}, env="test", mongodb_uri=infra.local_mongo_uri(self.mongo_port),
                                          kafka_bootstrap_servers=f"127.0.0.1:{infra.free_port()}",
                                          jwt_secret=SECRET, fund_db="bench_fund", fund_port=self.web_port,
                                          log_level="WARNING")
        self.processes: list[infra.ManagedProcess] = []
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.headers = {"Authorization": "Bearer " + issue_token(SECRET, sub="bench-officer", role="officer")}

    def start(self) -> None:
        self.processes.append(infra.start_mongo(self.mongo_port, str(self.workdir / "mongo"), self.workdir / "logs"))
        env = infra.child_env(**{f.metadata["env"]: str(getattr(self.settings, f.name))
                                 for f in dataclasses.fields(Settings)})
        argv = infra.gunicorn_argv("services.fund.app:create_app()", self.web_port, workers=self.settings.web_workers,
                                   threads=self.settings.web_threads, name="fund")
        self.processes.append(infra.ManagedProcess("fund-web", argv, self.web_port, self.workdir / "logs" / "web.log",
                                                   env=env).start())
        infra.wait_for_port(self.web_port, 60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("the fund service did not come up")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def post(self, session, path, body, **headers):
        return session.post(self.base + path, json=body, headers=self.headers | headers, timeout=60)

    # -- setup: organizations (through the fund worker's own handler), a fund, grants ---------------------
    def seed(self, clients: int, grants_per_client: int, tranches: int) -> list[list[str]]:
        client = pymongo.MongoClient(self.settings.mongodb_uri, tz_aware=True)
        spec = worker_spec(client[self.settings.fund_db], self.settings)
        for n in range(clients):
            snapshot = {"id": f"org_bench{n}", "name": f"上海市浦东新区基准{n}服务中心", "uscc": "52310115MJ00000013",
                        "type": "social_service_agency", "status": "registered", "risk": "none", "version": 2}
            event = envelope(Event(type="registry.organization.registered", subject=snapshot["id"],
                                   data={"actor": "bench", "organization": snapshot}), source_of("registry"))
            run_in_transaction(client, lambda s, e=event: spec.handlers[e["type"][len("org.socorg."):]](s, e))
        client.close()
        session = requests.Session()
        fund = self.post(session, "/api/v1/funds", {"name": "基准专项基金", "year": 2026, "budget_fen": 10**12})
        fund.raise_for_status()
        self.fund_id = fund.json()["id"]
        percents = [100 // tranches] * (tranches - 1)
        percents.append(100 - sum(percents))
        plan = []
        for n in range(clients):
            grants = []
            for _ in range(grants_per_client):
                made = self.post(session, f"/api/v1/funds/{self.fund_id}/grants", {
                    "organization_id": f"org_bench{n}", "title": "基准项目", "amount_fen": 1_000_003 * tranches,
                    "tranches": percents})
                made.raise_for_status()
                grants.extend([made.json()["id"]] * tranches)  # one entry per tranche to pay
            plan.append(grants)
        return plan

    # -- the measured runs ---------------------------------------------------------------------------------
    def disbursements(self, plan: list[list[str]], per_client: int) -> dict:
        latencies, failures, lock = [], [], threading.Lock()

        def run_client(n: int) -> None:
            session = requests.Session()
            for i, grant_id in enumerate(plan[n][:per_client]):
                started = time.perf_counter()
                response = self.post(session, f"/api/v1/grants/{grant_id}/disbursements", {},
                                     **{"Idempotency-Key": f"bench-{n}-{i}"})
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 201 or response.json().get("status") != "paid":
                        failures.append((response.status_code, response.text[:200]))

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(plan)) as pool:
            list(pool.map(run_client, range(len(plan))))
        wall = time.perf_counter() - started
        return {"count": len(latencies), "seconds": wall, "rate": len(latencies) / wall, "failures": failures,
                "p50_ms": percentile(latencies, 50) * 1000, "p95_ms": percentile(latencies, 95) * 1000}

    def bare_increments(self, clients: int, per_client: int) -> dict:
        client = pymongo.MongoClient(self.settings.mongodb_uri)
        counters = client[self.settings.fund_db]["bench_counters"]
        counters.insert_many([{"_id": n, "n": 0} for n in range(clients)])

        def run_client(n: int) -> None:
            for _ in range(per_client):
                counters.find_one_and_update({"_id": n}, {"$inc": {"n": 1}})

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(run_client, range(clients)))
        wall = time.perf_counter() - started
        total = sum(doc["n"] for doc in counters.find())
        client.close()
        return {"count": total, "seconds": wall, "rate": total / wall}

    def fund_disbursed(self) -> int:
        return requests.get(f"{self.base}/api/v1/funds/{self.fund_id}", headers=self.headers, timeout=30).json()[
            "disbursed_fen"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=40, help="disbursements per client")
    parser.add_argument("--tranches", type=int, default=20, help="tranches per grant")
    args = parser.parse_args(argv)
    grants_per_client = -(-args.per_client // args.tranches)

    bench = Bench(Path(tempfile.mkdtemp(prefix="socorg-bench-fund-")))
    try:
        bench.start()
        print(f"setup: {args.clients} organizations, {args.clients * grants_per_client} grants of "
              f"{args.tranches} tranches in one fund", flush=True)
        plan = bench.seed(args.clients, grants_per_client, args.tranches)
        baseline = bench.bare_increments(args.clients, args.per_client)
        service = bench.disbursements(plan, args.per_client)
        disbursed = bench.fund_disbursed()
    finally:
        bench.stop()
        shutil.rmtree(bench.workdir, ignore_errors=True)

    paid = service["count"] - len(service["failures"])
    expected_fen = expected_disbursed(args.clients, args.per_client, args.tranches) if not service["failures"] else None
    print(f"bare find_one_and_update ($inc), {args.clients} threads: {baseline['count']} in {baseline['seconds']:.2f}s"
          f" = {baseline['rate']:.1f}/s")
    print(f"disbursements, {args.clients} clients on distinct grants of one fund (gunicorn "
          f"{bench.settings.web_workers}x{bench.settings.web_threads}): {service['count']} in "
          f"{service['seconds']:.2f}s = {service['rate']:.1f}/s  (p50 {service['p50_ms']:.0f} ms, "
          f"p95 {service['p95_ms']:.0f} ms, failures {len(service['failures'])})")
    print(f"ratio disbursements/s : bare increments/s = {service['rate'] / baseline['rate']:.3f}")
    print(f"check: {paid} paid; the fund reports disbursed_fen = {disbursed}, the tranches sum to {expected_fen}")
    for status, text in service["failures"][:5]:
        print(f"  failure {status}: {text}")
    return 1 if service["failures"] or disbursed != expected_fen else 0


def expected_disbursed(clients: int, per_client: int, tranches: int) -> int:
    """What the paid tranches add up to: each client paid its grants' tranches in order."""
    percents = [100 // tranches] * (tranches - 1)
    percents.append(100 - sum(percents))
    amounts = tranche_amounts(1_000_003 * tranches, percents)
    full, partial = divmod(per_client, tranches)
    return clients * (full * sum(amounts) + sum(amounts[:partial]))


if __name__ == "__main__":
    raise SystemExit(main())
