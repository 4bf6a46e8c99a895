"""The real stack for integration tests: SecantusDB and Tansu on free ports, the services' Flask apps,
and their workers (relay + consumer) running in threads or as separate processes.

Each `Stack` has its own databases and Kafka namespace, so stacks sharing one server pair never see
each other's data or events.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pymongo

from shared import infra
from shared.auth import issue_token
from shared.settings import Settings
from shared.worker import Worker

SERVICES = ("registry", "evaluation", "fund")
TEST_SECRET = "test-secret-for-the-socorg-suite-only-0123456789"


@dataclass
class Servers:
    """A SecantusDB and a Tansu broker owned by the test session."""

    log_dir: Path
    mongo_port: int = field(default_factory=infra.free_port)
    broker_port: int = field(default_factory=infra.free_port)
    mongo: infra.ManagedProcess | None = None
    broker: infra.ManagedProcess | None = None
    mongo_storage: str = ":memory:"

    @property
    def mongo_uri(self) -> str:
        return infra.local_mongo_uri(self.mongo_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    def start(self) -> "Servers":
        self.start_mongo()
        self.start_broker()
        return self

    def start_mongo(self) -> None:
        self.mongo = infra.start_mongo(self.mongo_port, self.mongo_storage, self.log_dir)

    def start_broker(self) -> None:
        self.broker = infra.start_broker(self.broker_port, self.log_dir)

    def stop(self) -> None:
        for process in (self.broker, self.mongo):
            if process is not None:
                process.stop()


@dataclass
class DurableServers(Servers):
    """SecantusDB on disk that syncs its log on every commit (`--sync-on-commit`), as a MongoDB replica set
    acknowledges only journaled majority writes. Without it SecantusDB acknowledges a commit before it is on
    disk, and a kill -9 loses the last few milliseconds of acknowledged commits (measured: 5 to 25 of a few
    hundred, whatever the write concern)."""

    def start_mongo(self) -> None:
        process = infra.mongo_process(self.mongo_port, self.mongo_storage, self.log_dir)
        process.argv.append("--sync-on-commit")
        self.mongo = process.start()
        infra.wait_for_mongo(self.mongo_port, 30, process)


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, interval: float = 0.05, message: str = ""):
    """Poll until `predicate()` is truthy; return its value or fail with `message`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


class Stack:
    def __init__(self, servers: Servers, name: str | None = None, **overrides):
        self.servers = servers
        self.name = name or "t" + uuid.uuid4().hex[:8]
        values = dict(
            env="test",
            mongodb_uri=servers.mongo_uri,
            kafka_bootstrap_servers=servers.bootstrap,
            jwt_secret=TEST_SECRET,
            registry_db=f"{self.name}_registry",
            evaluation_db=f"{self.name}_evaluation",
            fund_db=f"{self.name}_fund",
            kafka_namespace=f"{self.name}.",
            topic_partitions=3,
            consumer_backoff_seconds=0.05,
            log_level="WARNING",
            # Tests file many applications as one applicant; the limit's own tests (tests/security/) set it low.
            rate_limit_per_minute=100_000,
        )
        values.update(overrides)
        self.settings = Settings.from_env({}, **values)
        self.mongo = pymongo.MongoClient(servers.mongo_uri, tz_aware=True)
        self._apps: dict = {}
        self.workers: dict[str, Worker] = {}
        self.processes: dict[str, subprocess.Popen] = {}

    # -- apps and clients -------------------------------------------------------------------------
    def app(self, service: str):
        if service not in self._apps:
            module = __import__(f"services.{service}.app", fromlist=["create_app"])
            app = module.create_app(self.settings)
            app.testing = True
            self._apps[service] = app
        return self._apps[service]

    def client(self, service: str, role: str | None = None, sub: str = "tester", org: str | None = None) -> "ApiClient":
        token = self.token(role, sub, org) if role else None
        return ApiClient(self.app(service).test_client(), token)

    def token(self, role: str, sub: str = "tester", org: str | None = None, **kw) -> str:
        return issue_token(self.settings.jwt_secret, sub=sub, role=role, org=org, **kw)

    def db(self, service: str):
        return self.mongo[self.settings.db_of(service)]

    # -- workers ----------------------------------------------------------------------------------
    def start_workers(self, *services: str) -> "Stack":
        for service in services or SERVICES:
            self.workers[service] = Worker(service, self.settings).start()
        for service in services or SERVICES:
            assert self.workers[service].wait_ready(30), f"{service} consumer did not join its group"
        return self

    def stop_workers(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.workers.clear()

    def env(self, **extra) -> dict[str, str]:
        """The environment a worker or web process of this stack runs with."""
        import dataclasses

        env = {f.metadata["env"]: str(getattr(self.settings, f.name)) for f in dataclasses.fields(Settings)}
        env.update({k: str(v) for k, v in extra.items()})
        return infra.child_env(**env)

    def spawn_worker(self, service: str, **extra_env) -> subprocess.Popen:
        """Run `socorg worker SERVICE` as its own process (for crash tests)."""
        log = open(self.servers.log_dir / f"{self.name}-{service}-worker.log", "ab")
        process = subprocess.Popen([sys.executable, "-m", "shared.cli", "worker", service], env=self.env(**extra_env),
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.processes[service] = process
        return process

    def close(self) -> None:
        self.stop_workers()
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        self.mongo.close()


class ApiClient:
    """A Flask test client that sends JSON with a bearer token and returns (status, body)."""

    def __init__(self, client, token: str | None):
        self.raw = client
        self.token = token

    def request(self, method: str, path: str, body=None, *, headers: dict | None = None, raw: bytes | None = None):
        all_headers = {"Content-Type": "application/json"}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        all_headers.update(headers or {})
        data = raw if raw is not None else (json.dumps(body, ensure_ascii=False) if body is not None else None)
        response = self.raw.open(path, method=method, data=data, headers=all_headers)
        return Response(response.status_code, response.get_json(silent=True), response.headers)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)


@dataclass
class Response:
    status: int
    body: dict | list | None
    headers: dict

    def __iter__(self):  # allows `status, body = client.post(...)`
        return iter((self.status, self.body))
