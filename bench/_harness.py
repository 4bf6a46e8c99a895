"""Shared pieces of the benchmarks: servers on free ports, services under gunicorn, percentiles.

Every benchmark starts its own SecantusDB and Tansu (throwaway data) and compares the system against
a bare baseline run in the same process tree, so the machine's speed cancels out of the ratios.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

from shared import infra
from shared.auth import issue_token
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class BenchStack:
    def __init__(self, name: str = "bench", **overrides):
        self.tmp = Path(tempfile.mkdtemp(prefix=f"socorg-{name}-"))
        self.logs = self.tmp / "logs"
        self.mongo_port, self.broker_port = infra.free_port(), infra.free_port()
        self.ports = {service: infra.free_port() for service in ("registry", "evaluation", "fund")}
        values = dict(env="test", mongodb_uri=infra.local_mongo_uri(self.mongo_port),
                      kafka_bootstrap_servers=f"127.0.0.1:{self.broker_port}",
                      jwt_secret="bench-secret-0123456789abcdef0123456789", log_level="WARNING",
                      registry_port=self.ports["registry"], evaluation_port=self.ports["evaluation"],
                      fund_port=self.ports["fund"],
                      # Benchmarks drive the services far beyond one client's per-minute budget on purpose.
                      rate_limit_per_minute=10_000_000)
        values.update(overrides)
        self.settings = Settings.from_env({}, **values)
        self.processes: list[infra.ManagedProcess] = []

    def start_servers(self) -> "BenchStack":
        self.processes.append(infra.start_mongo(self.mongo_port, str(self.tmp / "mongo"), self.logs))
        self.processes.append(infra.start_broker(self.broker_port, self.logs))
        return self

    def env(self) -> dict[str, str]:
        env = {f.metadata["env"]: str(getattr(self.settings, f.name)) for f in dataclasses.fields(Settings)}
        return infra.child_env(**env)

    def gunicorn(self, name: str, app: str, port: int, workers: int = 2, threads: int = 8) -> None:
        argv = infra.gunicorn_argv(app, port, workers=workers, threads=threads, name=name)
        process = infra.ManagedProcess(name, argv, port, self.logs / f"{name}.log", env=self.env()).start()
        self.processes.append(process)
        infra.wait_for_port(port, 60)

    def service(self, service: str, **kw) -> str:
        self.gunicorn(service, f"services.{service}.app:create_app()", self.ports[service], **kw)
        return f"http://127.0.0.1:{self.ports[service]}"

    def worker(self, service: str) -> None:
        argv = [str(BIN / "socorg"), "worker", service]
        self.processes.append(infra.ManagedProcess(f"{service}-worker", argv, 0, self.logs / f"{service}-worker.log",
                                                   env=self.env()).start())

    def token(self, role: str, sub: str = "bench", org: str | None = None) -> str:
        return issue_token(self.settings.jwt_secret, sub=sub, role=role, org=org)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def wait(predicate, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark condition not reached")


os.environ.setdefault("PYTHONUNBUFFERED", "1")
