"""Soak: mixed load at a fixed rate against `socorg up`, sampling every process's memory.

Usage: .venv/bin/python bench/soak.py [--minutes 10] [--rate 20]

Starts `socorg up` on free ports with a throwaway data folder, drives a fixed-rate mix of requests
(applications, approvals, reads on every service, public search, audit) for the given time, and samples
the resident memory of each child process. Prints each process's RSS growth from the end of a warm-up
minute to the end (target under 10%) and the number of error responses (target 0). Not run in CI.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import requests  # noqa: E402

from bench._harness import wait  # noqa: E402
from shared import infra  # noqa: E402
from shared.auth import issue_token  # noqa: E402
from shared.settings import DEFAULT_JWT_SECRET  # noqa: E402
from tests.support.data import application  # noqa: E402


def start_up(tmp: Path) -> tuple[subprocess.Popen, dict[str, int]]:
    ports = {name: infra.free_port() for name in ("mongo", "broker", "registry", "evaluation", "fund", "portal")}
    env = dict(os.environ, MONGODB_URI=infra.local_mongo_uri(ports['mongo']),
               KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{ports['broker']}", REGISTRY_PORT=str(ports["registry"]),
               EVALUATION_PORT=str(ports["evaluation"]), FUND_PORT=str(ports["fund"]),
               PORTAL_PORT=str(ports["portal"]), SOCORG_DATA_DIR=str(tmp / "data"), SOCORG_LOG_LEVEL="WARNING",
               SOCORG_RATE_LIMIT_PER_MINUTE="100000")
    up = subprocess.Popen([str(Path(sys.executable).with_name("socorg")), "up"], env=env,
                          stdout=open(tmp / "up.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    for service in ("registry", "evaluation", "fund"):
        wait(lambda: _ok(f"http://127.0.0.1:{ports[service]}/readyz"), 120, 0.5)
    return up, ports


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def processes(up: subprocess.Popen) -> dict[str, psutil.Process]:
    named = {}
    for child in psutil.Process(up.pid).children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        label = cmd.split("/")[-1][:90]
        named[f"{child.pid} {label}"] = child
    return named


def rss(procs: dict[str, psutil.Process]) -> dict[str, int]:
    sizes = {}
    for name, proc in procs.items():
        try:
            sizes[name] = proc.memory_info().rss
        except psutil.Error:
            sizes[name] = 0
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the first memory sample")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="socorg-soak-"))
    up, ports = start_up(tmp)
    secret = os.environ.get("SOCORG_JWT_SECRET", DEFAULT_JWT_SECRET)
    registry, evaluation, fund = (f"http://127.0.0.1:{ports[s]}" for s in ("registry", "evaluation", "fund"))
    officer = {"Authorization": "Bearer " + issue_token(secret, sub="soak-officer", role="officer")}
    submitted: list[str] = []
    registered: list[str] = []
    lock = threading.Lock()
    statuses: Counter = Counter()
    serial = itertools.count()

    def one_request(session: requests.Session) -> None:
        n = next(serial)
        choice = n % 10
        if choice in (0, 1) or not submitted:
            applicant = {"Authorization": "Bearer " + issue_token(secret, sub=f"soak-{n}", role="applicant")}
            r = session.post(f"{registry}/api/v1/organizations", json=application(), headers=applicant, timeout=30)
            if r.status_code == 201:
                with lock:
                    submitted.append(r.json()["id"])
        elif choice == 2:
            with lock:
                organization_id = submitted.pop() if submitted else None
            if organization_id is None:
                return
            r = session.post(f"{registry}/api/v1/organizations/{organization_id}/approve", headers=officer, timeout=30)
            if r.status_code == 200:
                with lock:
                    registered.append(organization_id)
        elif choice in (3, 4):
            organization_id = random.choice(registered or submitted)
            r = session.get(f"{registry}/api/v1/organizations/{organization_id}", headers=officer, timeout=30)
        elif choice == 5 and registered:
            r = session.get(f"{fund}/api/v1/organizations/{random.choice(registered)}", headers=officer, timeout=30)
            if r.status_code == 404:  # not yet consumed: not an error of the system
                return
        elif choice == 6 and registered:
            r = session.get(f"{evaluation}/api/v1/organizations/{random.choice(registered)}", headers=officer,
                            timeout=30)
            if r.status_code == 404:
                return
        elif choice == 7:
            r = session.get(f"{registry}/api/v1/public/organizations", params={"q": "浦东"}, timeout=30)
        elif choice == 8:
            r = session.get(f"{registry}/api/v1/audit", params={"actor": "soak-officer"}, headers=officer, timeout=30)
        else:
            r = session.get(f"{registry}/api/v1/organizations", params={"status": "registered"}, headers=officer,
                            timeout=30)
        with lock:
            statuses[r.status_code] += 1

    try:
        procs = processes(up)
        sessions = threading.local()

        def run(at: float) -> None:
            delay = at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            session = getattr(sessions, "s", None) or requests.Session()
            sessions.s = session
            try:
                one_request(session)
            except requests.RequestException:
                with lock:
                    statuses["connection error"] += 1

        total = int(args.minutes * 60 * args.rate)
        start = time.perf_counter()
        samples = []
        sampled_warm = threading.Event()

        def sampler():
            time.sleep(args.warmup)
            samples.append(rss(procs))
            sampled_warm.set()

        threading.Thread(target=sampler, daemon=True).start()
        with ThreadPoolExecutor(16) as pool:
            for i in range(total):
                pool.submit(run, start + i / args.rate)
        samples.append(rss(procs))
        elapsed = time.perf_counter() - start
        errors = sum(count for status, count in statuses.items() if status == "connection error" or status >= 400)
        print(f"soak: {sum(statuses.values())} requests in {elapsed:.0f} s at {args.rate}/s; statuses {dict(statuses)}")
        print(f"error responses: {errors} (target 0)")
        if sampled_warm.is_set():
            first, last = samples[0], samples[-1]
            print("RSS growth per process, after a warm-up of {:.0f} s (target < 10%):".format(args.warmup))
            for name in sorted(first):
                if first[name]:
                    growth = (last[name] - first[name]) / first[name] * 100
                    print(f"  {growth:+6.1f}%  {first[name] / 2**20:7.1f} -> {last[name] / 2**20:7.1f} MiB  {name}")
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
