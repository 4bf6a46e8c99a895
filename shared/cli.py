"""The `socorg` command.

  socorg up                         start SecantusDB, Tansu, the topics, the services, their workers, the portal
  socorg token --role R --sub S     print a signed bearer token
  socorg worker SERVICE             run a service's outbox relay, event consumer and periodic jobs
  socorg replay SERVICE             publish a service's whole outbox again (after a broker lost its data)
  socorg audit-pages SERVICE        list every outbox record in the audit trail (after a rolling upgrade)
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from shared.settings import Settings, SettingsError

SERVICES = ("registry", "evaluation", "fund")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="socorg", description="socorg: social organizations of a district")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the whole system locally, in the foreground (Ctrl-C stops it)")
    up.add_argument("--data-dir", help="where SecantusDB keeps its data (default: $SOCORG_DATA_DIR or ./.data)")
    up.add_argument("--no-infra", action="store_true",
                    help="use the MongoDB and Kafka named by MONGODB_URI and KAFKA_BOOTSTRAP_SERVERS")

    token = commands.add_parser("token", help="print a signed bearer token")
    token.add_argument("--role", required=True, choices=("applicant", "reviewer", "officer"))
    token.add_argument("--sub", required=True, help="who the token speaks for")
    token.add_argument("--org", help="applicants: the organization id they act for")
    token.add_argument("--ttl", type=int, help="lifetime in seconds")

    worker = commands.add_parser("worker", help="run a service's relay, consumer and jobs")
    worker.add_argument("service", choices=SERVICES)

    replay = commands.add_parser("replay", help="queue a service's whole outbox for publishing again")
    replay.add_argument("service", choices=SERVICES)

    pages = commands.add_parser("audit-pages", help="write audit pages for every outbox record of a service "
                                                    "(after a rolling upgrade from an outbox indexed for the trail)")
    pages.add_argument("service", choices=SERVICES)

    args = parser.parse_args(argv)
    if args.command == "token":
        _check_token_args(token, args)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"socorg: {exc}", file=sys.stderr)
        return 2
    if args.command == "token":
        return _token(settings, args)
    if args.command == "worker":
        from shared.worker import run_worker

        run_worker(args.service, settings)
        return 0
    if args.command == "replay":
        return _on_outbox(settings, args.service, "replay", lambda outbox: outbox.mark_all_for_replay(),
                          "{} events of {} queued for publishing again")
    if args.command == "audit-pages":
        return _on_outbox(settings, args.service, "audit-pages", lambda outbox: outbox.page_every_record(),
                          "{} audit pages written for the outbox of {} (a record listed twice is shown once)")
    return _up(settings, args)


def _check_token_args(parser: argparse.ArgumentParser, args) -> None:
    """What the services would refuse or ignore in a token, said here (parser.error exits with status 2)."""
    args.sub = args.sub.strip()
    if not args.sub:
        parser.error("--sub must not be empty")
    if args.org is not None and args.role != "applicant":
        parser.error("--org is for applicant tokens only (CONTRACT: the organization an applicant acts for)")
    if args.org is not None and not args.org.strip():
        parser.error("--org must not be empty (leave it out before the first application)")
    if args.ttl is not None and args.ttl <= 0:
        parser.error("--ttl must be a positive number of seconds")


def _token(settings: Settings, args) -> int:
    from shared.auth import issue_token

    print(issue_token(settings.jwt_secret, sub=args.sub, role=args.role, org=args.org,
                      ttl_seconds=args.ttl or settings.token_ttl_seconds))
    return 0


def _on_outbox(settings: Settings, service: str, command: str, act, done: str) -> int:
    """Run `act(outbox)` on a service's outbox and say what it did (`done` with the count and the service).
    Both commands can be run again: what they did stays done, and doing it twice changes nothing."""
    from pymongo.errors import PyMongoError

    from shared.events import source_of
    from shared.mongo import brief, connect
    from shared.outbox import Outbox

    client = connect(settings.mongodb_uri)
    try:
        count = act(Outbox(client[settings.db_of(service)], source_of(service)))
    except PyMongoError as exc:
        print(f"socorg: {command} of {service} stopped, MongoDB did not answer ({type(exc).__name__}: "
              f"{brief(exc)}); run it again once MONGODB_URI answers", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(done.format(count, service))
    return 0


def _up(settings: Settings, args) -> int:
    from shared import infra
    from shared.events import dlq_topic
    from shared.kafka import KafkaLink

    data_dir = Path(args.data_dir or settings.data_dir).resolve()
    log_dir = data_dir / "logs"
    children: list[infra.ManagedProcess] = []
    stopping = False

    def stop_all(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)

    taken = [f"{port} ({name})" for name, port in _ports_to_claim(settings, args.no_infra).items()
             if infra.port_taken(port)]
    if taken:
        # Waiting for a port is how `up` knows a process started: another program listening there would pass
        # for it (the services' data in someone's own MongoDB, a URL printed that serves something else).
        print(f"socorg: another program already listens on {', '.join(taken)}: stop it, or choose other ports "
              f"with those settings (--no-infra uses the MongoDB and Kafka that MONGODB_URI and "
              f"KAFKA_BOOTSTRAP_SERVERS name)", file=sys.stderr)
        return 1
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"socorg: cannot keep data in {data_dir} ({exc.strerror}): choose another directory with --data-dir "
              f"or SOCORG_DATA_DIR", file=sys.stderr)
        return 1

    if args.no_infra and not _servers_answer(settings):
        return 1

    try:
        if not args.no_infra:
            mongo_port = _port_of_uri(settings.mongodb_uri, 27017)
            broker_port = _broker_port(settings)
            print(f"starting SecantusDB on 127.0.0.1:{mongo_port} (data in {data_dir / 'mongo'})")
            children.append(infra.start_mongo(mongo_port, str(data_dir / "mongo"), log_dir))
            print(f"starting Tansu on 127.0.0.1:{broker_port}")
            children.append(infra.start_broker(broker_port, log_dir))

        kafka = KafkaLink(settings.kafka_bootstrap_servers, partitions=settings.topic_partitions,
                          replication=settings.topic_replication)
        topics = [t for service in SERVICES for t in (settings.topic(service), dlq_topic(settings.topic(service)))]
        kafka.ensure_topics(topics)
        kafka.close()
        # A new (memory-only) broker has none of what was published before: each relay sees its topic is
        # a new one (shared/outbox.py) and publishes its outbox again; consumers skip what they applied.
        print(f"topics ready: {', '.join(topics)}")

        # The portal calls the services where this run serves them.
        env = infra.child_env(REGISTRY_URL=f"http://127.0.0.1:{settings.registry_port}",
                              EVALUATION_URL=f"http://127.0.0.1:{settings.evaluation_port}",
                              FUND_URL=f"http://127.0.0.1:{settings.fund_port}")
        if not args.no_infra:  # the SecantusDB started above: reached with its options (shared/infra.py)
            env["MONGODB_URI"] = infra.for_local_mongo(settings.mongodb_uri)
        socorg = str(Path(sys.executable).with_name("socorg"))
        for service in SERVICES:
            children.append(_web_server(settings, service, env, log_dir))
            children.append(infra.ManagedProcess(f"{service}-worker", [socorg, "worker", service], 0,
                                                 log_dir / f"{service}-worker.log", env=env).start())
        children.append(_web_server(settings, "portal", env, log_dir))
        for service in (*SERVICES, "portal"):
            infra.wait_for_port(settings.port_of(service), timeout=60)
        print("\nsocorg is up:")
        print(f"  {'portal':<11} http://127.0.0.1:{settings.port_of('portal')}/   (sign in, apply, score, run the bureau; "
              f"the public register at /register)")
        for service in SERVICES:
            base = f"http://127.0.0.1:{settings.port_of(service)}"
            print(f"  {service:<11} {base}/api/v1   docs {base}/docs   ready {base}/readyz")
        print(f"logs in {log_dir}; Ctrl-C stops everything")

        schedules = {child.name: RestartSchedule() for child in children}
        due: dict[str, float] = {}  # a child that exited: when it starts again
        while not stopping:
            now = time.monotonic()
            for child in children:
                if stopping or child.running:
                    continue
                if child.name not in due:
                    delay = schedules[child.name].delay_after(now - child.started_at)
                    due[child.name] = now + delay
                    print(f"{child.name} exited (code {child.process.returncode}); restarting in {delay:.0f} s; "
                          f"see {child.log_path}")
                elif now >= due[child.name]:
                    del due[child.name]
                    child.start()
            time.sleep(0.5)
    finally:
        print("\nstopping...")
        for child in reversed(children):
            child.stop()
        print("stopped")
    return 0


def _web_server(settings: Settings, name: str, env: dict, log_dir: Path):
    from shared import infra

    port = settings.port_of(name)
    argv = infra.gunicorn_argv(f"services.{name}.app:create_app()", port, workers=settings.web_workers,
                               threads=settings.web_threads, name=name)
    return infra.ManagedProcess(f"{name}-web", argv, port, log_dir / f"{name}-web.log", env=env).start()


class RestartSchedule:
    """How long `up` waits before starting a child that exited: 1 s after a long life; while it keeps exiting
    within QUICK_SECONDS of its start, twice as long each time, up to MAX_SECONDS (a child that cannot start
    would otherwise restart, and print, every second)."""

    QUICK_SECONDS = 10.0
    MAX_SECONDS = 30.0

    def __init__(self):
        self.quick_exits = 0

    def delay_after(self, lived_seconds: float) -> float:
        self.quick_exits = self.quick_exits + 1 if lived_seconds < self.QUICK_SECONDS else 0
        return min(2.0 ** max(self.quick_exits - 1, 0), self.MAX_SECONDS)


def _servers_answer(settings: Settings) -> bool:
    """With --no-infra, the MongoDB and Kafka the settings name must answer before anything starts (the web
    processes need MongoDB to start, and the topics are created first)."""
    from shared.mongo import connect
    from shared.web import kafka_answers, mongodb_answers

    client = connect(settings.mongodb_uri)
    try:
        silent = [name for name, answers in (("MongoDB (MONGODB_URI)", mongodb_answers(client)),
                                             ("Kafka (KAFKA_BOOTSTRAP_SERVERS)",
                                              kafka_answers(settings.kafka_bootstrap_servers)))
                  if not answers]
    finally:
        client.close()
    if silent:
        print(f"socorg: --no-infra uses the servers the settings name, and {' and '.join(silent)} did not answer; "
              f"start them, or leave out --no-infra to run local ones", file=sys.stderr)
    return not silent


def _ports_to_claim(settings: Settings, no_infra: bool) -> dict[str, int]:
    """The local ports `up` starts a server on, by who and the setting that moves it."""
    ports = {} if no_infra else {"SecantusDB, MONGODB_URI": _port_of_uri(settings.mongodb_uri, 27017),
                                 "Tansu, KAFKA_BOOTSTRAP_SERVERS": _broker_port(settings)}
    for name in (*SERVICES, "portal"):
        ports[f"{name}, {name.upper()}_PORT"] = settings.port_of(name)
    return ports


def _broker_port(settings: Settings) -> int:
    return int(settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[1])


def _port_of_uri(uri: str, default: int) -> int:
    host = uri.split("://", 1)[-1].split("/", 1)[0].split(",")[0].rsplit("@", 1)[-1]
    return int(host.rsplit(":", 1)[1]) if ":" in host else default


if __name__ == "__main__":
    sys.exit(main())
