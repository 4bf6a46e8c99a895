"""The whole system as separate processes, for fault injection: SecantusDB (on disk, so it survives
`kill -9`), Tansu, the three services under gunicorn and their workers (`socorg worker SERVICE`).

Built on tests/support/stack.py: a `Stack` gives this system's settings (its own databases and Kafka
namespace), tokens, direct database access and in-process Flask clients for the checks, while the
commands under test go over HTTP to gunicorn. Every process is a `shared.infra.ManagedProcess`, so a
crash is `kill()` (SIGKILL, as `kill -9`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from shared import infra
from shared.events import decode
from shared.outbox import Outbox
from tests.faults.reconcile import CONSUMES, carried_not_recorded, unsent_ids
from tests.support.stack import SERVICES, DurableServers, Response, Servers, Stack, wait_until

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "faults"

CONSUMERS = tuple(CONSUMES)


class FaultSystem:
    """One isolated system: its own servers, web processes and workers, on free ports."""

    def __init__(self, name: str, *, web_workers: int = 1, web_threads: int = 8, durable_database: bool = False,
                 **overrides):
        self.name = name
        self.root = ARTIFACTS / name
        self.logs = self.root / "logs"
        servers = DurableServers if durable_database else Servers
        self.servers = servers(log_dir=self.logs, mongo_storage=str(self.root / "mongo"))
        self.ports = {service: infra.free_port() for service in SERVICES}
        self.stack = Stack(self.servers, name=name.replace("-", "_"), web_workers=web_workers,
                           web_threads=web_threads, relay_poll_seconds=0.05,
                           **{f"{service}_port": port for service, port in self.ports.items()}, **overrides)
        self.web: dict[str, infra.ManagedProcess] = {}
        self.workers: dict[str, infra.ManagedProcess] = {}

    @property
    def settings(self):
        return self.stack.settings

    # -- processes --------------------------------------------------------------------------------------
    def start(self, *, workers=SERVICES) -> "FaultSystem":
        self._clean_root()
        self.servers.start()
        for service in SERVICES:
            self.web[service] = self._gunicorn(service)
        for service in workers:
            self.start_worker(service)
        for service in SERVICES:
            infra.wait_for_port(self.ports[service], timeout=60)
            wait_until(lambda: self.healthy(service), timeout=60, interval=0.2, message=f"{service} web up")
        return self

    def _clean_root(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.logs.mkdir(parents=True)

    def _gunicorn(self, service: str) -> infra.ManagedProcess:
        argv = infra.gunicorn_argv(f"services.{service}.app:create_app()", self.ports[service], name=service,
                                   workers=self.settings.web_workers, threads=self.settings.web_threads)
        return infra.ManagedProcess(f"{service}-web", argv, self.ports[service], self.logs / f"{service}-web.log",
                                    env=self.stack.env()).start()

    def start_worker(self, service: str, *, faults: str | None = None, **env: str) -> infra.ManagedProcess:
        """`socorg worker SERVICE` as its own process; `faults` arms SOCORG_FAULTS crash points. A worker's
        Python dumps every thread's stack into its log on SIGABRT (for a worker that hangs)."""
        extra = {"SOCORG_FAULTS": faults} if faults else {}
        # kafka-python's INFO lines show each group join and assignment: a consumer that does not get going
        # says why in its log.
        extra |= {"PYTHONFAULTHANDLER": "1", "SOCORG_KAFKA_LOG_LEVEL": "INFO", **env}
        process = infra.ManagedProcess(f"{service}-worker", [str(BIN / "socorg"), "worker", service], 0,
                                       self.logs / f"{service}-worker.log", env=self.stack.env(**extra))
        with open(process.log_path, "a") as log:
            log.write(f"\n==== start {service} worker at {time.strftime('%H:%M:%S')} faults={faults or '-'}\n")
        self.workers[service] = process.start()
        return process

    def kill_worker(self, service: str) -> None:
        self.workers[service].kill()

    def healthy(self, service: str) -> bool:
        try:
            return requests.get(self.url(service, "/healthz"), timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """Kill everything (the data is throwaway; a graceful stop would only cost time)."""
        for process in self.web.values():
            kill_group(process)
        for process in self.workers.values():
            process.kill()
        # Before the servers go: a MongoClient closed after its server ends its sessions by waiting out server
        # selection (30 s per scenario).
        self.stack.close()
        for process in (self.servers.broker, self.servers.mongo):
            if process is not None:
                process.kill()

    # -- clients ----------------------------------------------------------------------------------------
    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def api(self, service: str, role: str, sub: str = "tester", org: str | None = None) -> "HttpApi":
        return HttpApi(self.url(service, ""), self.stack.token(role, sub, org))

    def db(self, service: str):
        return self.stack.db(service)

    # -- events -----------------------------------------------------------------------------------------
    def outbox_backlog(self) -> int:
        """Events not published yet: unsent outbox records, and events applications still carry."""
        unsent = sum(len(unsent_ids(self.db(service))) for service in SERVICES)
        return unsent + len(carried_not_recorded(self.stack))

    def processed_ids(self, consumer: str) -> set[str]:
        return {doc["_id"] for doc in self.db(consumer)["processed_events"].find({}, {"_id": 1})}

    def undelivered(self) -> int:
        """Events recorded in a producer's outbox that a consumer has not applied yet."""
        missing = 0
        for consumer, producers in CONSUMES.items():
            processed = self.processed_ids(consumer)
            for producer in producers:
                ids = {doc["_id"] for doc in self.db(producer)["outbox"].find({}, {"_id": 1})}
                missing += len(ids - processed)
        return missing

    def quiesce(self, timeout: float = 120.0) -> None:
        """Wait until every recorded event is published and applied by every consumer of its topic."""
        try:
            wait_until(lambda: self.outbox_backlog() == 0 and self.undelivered() == 0, timeout=timeout,
                       interval=0.25)
        except AssertionError:
            raise AssertionError(f"{self.name}: events still undelivered after {timeout} s: "
                                 f"{self.delivery_report()}") from None

    def delivery_report(self) -> str:
        """What is stuck where, and which processes are down, for a failure message."""
        lines = []
        for service in SERVICES:
            unsent = Outbox(self.db(service), service).pending(5).records
            if unsent:
                lines.append(f"{service} outbox has unsent {[r['event']['type'] for r in unsent]}")
        behind = []
        for consumer, producers in CONSUMES.items():
            processed = self.processed_ids(consumer)
            for producer in producers:
                unsent = unsent_ids(self.db(producer))
                missing = [r for r in self.db(producer)["outbox"].find({}, {"event.type": 1})
                           if r["_id"] not in processed]
                if missing:
                    behind.append(consumer)
                    lines.append(f"{consumer} has not applied {len(missing)} {producer} events, e.g. "
                                 f"{[(r['_id'], r['event']['type'], 'unsent' if r['_id'] in unsent else 'sent') for r in missing[:3]]}")
        lines += [f"{p.name} exited with {p.process.returncode}" for p in [*self.workers.values(), *self.web.values()]
                  if not p.running]
        lines += [self.worker_log_tail(service) for service in dict.fromkeys(behind or CONSUMERS)]
        return "; ".join(lines) or "nothing (it caught up just now)"

    def worker_log_tail(self, service: str, lines: int = 40) -> str:
        """The end of a worker's log, then its consumer thread's stack when it is running. CI keeps no log files
        and shows only the start and the end of a long failure message, so this is short, and the stack is last."""
        worker = self.workers.get(service)
        if worker is None:
            return f"{service} worker never started"
        log_text = worker.log_path.read_text(errors="replace")
        tail = [compact(line) for line in log_text.splitlines()
                if line.strip() and not any(chatter in line for chatter in KAFKA_CONNECTION_CHATTER)][-lines:]
        report = f"\n---- end of {worker.log_path.name} ----\n" + "\n".join(tail)
        if worker.running:
            os.kill(worker.process.pid, signal.SIGUSR1)  # shared/worker.py dumps its threads' stacks on it
            time.sleep(1.0)
            dump = worker.log_path.read_text(errors="replace")[len(log_text):]
            report += f"\n---- {service} worker's consumer thread now ----\n{consumer_threads(dump)}"
        return report

    def topic_messages(self, producer: str, idle_ms: int = 3000) -> list["TopicMessage"]:
        return read_topic(self.settings.kafka_bootstrap_servers, self.settings.topic(producer), idle_ms)

    def committed_offsets(self, consumer: str) -> dict[tuple[str, int], int]:
        """The consumer group's committed offsets, as the broker holds them."""
        group = self.settings.consumer_group(consumer)
        partitions = [TopicPartition(self.settings.topic(producer), partition)
                      for producer in CONSUMES[consumer] for partition in range(self.settings.topic_partitions)]
        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers, request_timeout_ms=5000)
        try:
            offsets = admin.list_group_offsets({group: partitions})[group]
            return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        finally:
            admin.close()


# kafka-python's INFO lines about connections and metadata (the group's joins and assignments are kept).
KAFKA_CONNECTION_CHATTER = ('"logger": "kafka.net', '"logger": "kafka.cluster', '"logger": "kafka.conn')


def compact(line: str) -> str:
    """A JSON log line as `time level logger: message`, shortened."""
    try:
        entry = json.loads(line)
        return f"{entry['time'][11:23]} {entry['level']} {entry['logger']}: {entry['message'][:240]}"
    except (ValueError, KeyError, TypeError):
        return line[:240]


def consumer_threads(dump: str) -> str:
    """The stacks of a faulthandler dump (innermost frame first) that run the consumer loop."""
    stacks = ["Thread 0x" + block.strip() for block in dump.replace("Current thread", "Thread").split("Thread 0x")[1:]]
    loops = [stack for stack in stacks if "shared/consumer.py" in stack and " in _watch" not in stack]
    return "\n\n".join(loops) or dump[-2000:]


def kill_group(process: infra.ManagedProcess) -> None:
    """SIGKILL a process started in its own session and every child it forked (gunicorn's workers)."""
    if process.running:
        os.killpg(process.process.pid, signal.SIGKILL)
        process.process.wait(10)


@dataclass(frozen=True)
class TopicMessage:
    partition: int
    offset: int
    event_id: str


def read_topic(bootstrap_servers: str, topic: str, idle_ms: int = 3000) -> list[TopicMessage]:
    """Every message now on the topic, read from the beginning by a throwaway reader (no group)."""
    reader = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                           consumer_timeout_ms=idle_ms, fetch_max_wait_ms=100)
    try:
        assigned = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        reader.assign(assigned)
        reader.seek_to_beginning(*assigned)
        return [TopicMessage(m.partition, m.offset, decode(m.value)["id"]) for m in reader]
    finally:
        reader.close()


class HttpApi:
    """JSON over HTTP with a bearer token; one keep-alive session per thread."""

    def __init__(self, base: str, token: str):
        self.base = base
        self.token = token
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def request(self, method: str, path: str, body=None, *, headers: dict | None = None) -> Response:
        all_headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        response = self._session().request(method, self.base + path, json=body, headers=all_headers, timeout=60)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        return Response(response.status_code, payload, response.headers)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)
