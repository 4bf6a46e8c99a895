"""deploy/compose.yaml: a valid Compose file (checked against the Compose specification's JSON schema,
vendored in deploy/schemas/) that runs the production topology: a three-member MongoDB replica set, Kafka
in KRaft mode, the topic job, and each service as a web and a worker process of the one socorg image.
"""

from __future__ import annotations

import base64
import copy
import importlib
import json
import re
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from shared.cli import SERVICES as CLI_SERVICES
from shared.events import TOPICS
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
SCHEMA = ROOT / "deploy" / "schemas" / "compose-spec.json"
SERVICES = tuple(TOPICS)
PORTS = {service: Settings().port_of(service) for service in SERVICES}


@lru_cache(maxsize=1)
def _parsed_compose() -> dict:
    return yaml.load(COMPOSE.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_compose() -> dict:
    """The compose file as Compose sees it before interpolation (YAML anchors and merges resolved; a
    fresh copy: callers may change it)."""
    return copy.deepcopy(_parsed_compose())


def socorg_processes(compose: dict | None = None) -> dict[str, dict]:
    """The compose services that run the socorg image, by name."""
    compose = compose or load_compose()
    return {name: service for name, service in compose["services"].items()
            if service.get("image", "").split(":")[0] == "socorg"}


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _validator() -> jsonschema.Validator:
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


# -- validity -----------------------------------------------------------------------------------------
def test_the_compose_file_validates_against_the_compose_specification():
    errors = sorted(_validator().iter_errors(load_compose()), key=lambda e: list(e.path))
    assert [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors] == []


def test_the_schema_rejects_a_misspelt_key():
    broken = copy.deepcopy(load_compose())
    broken["services"]["registry-web"]["healtcheck"] = broken["services"]["registry-web"].pop("healthcheck")
    assert list(_validator().iter_errors(broken)) != []


# -- MongoDB --------------------------------------------------------------------------------------------
def _replica_set_members(compose: dict) -> dict[str, dict]:
    return {name: service for name, service in compose["services"].items()
            if service.get("image", "").startswith("mongo:") and "--replSet" in service.get("command", [])}


def test_mongodb_is_a_three_member_replica_set_on_persistent_volumes():
    compose = load_compose()
    members = _replica_set_members(compose)
    assert len(members) == 3
    names = {service["command"][service["command"].index("--replSet") + 1] for service in members.values()}
    assert names == {"rs0"}
    for name, service in members.items():
        assert service["hostname"] == name
        [volume] = service["volumes"]
        assert volume.split(":")[0] in compose["volumes"] and volume.endswith(":/data/db")
        assert "mongosh" in service["healthcheck"]["test"]


def test_a_one_shot_job_initiates_the_replica_set_with_every_member():
    compose = load_compose()
    members = _replica_set_members(compose)
    init = compose["services"]["mongo-init"]
    assert init["restart"] == "no"
    assert init["depends_on"] == {name: {"condition": "service_healthy"} for name in members}
    script = init["command"][-1]
    listed = re.search(r"const members = \[(.*?)\];", script).group(1)
    assert sorted(json.loads(f"[{listed}]")) == sorted(f"{name}:27017" for name in members)
    assert "rs.initiate" in script and "NotYetInitialized" in script, "initiates only a set not yet initiated"


def test_the_services_connect_to_the_whole_replica_set():
    compose = load_compose()
    uri = environment(next(iter(socorg_processes(compose).values())))["MONGODB_URI"]
    hosts, _, options = uri.removeprefix("mongodb://").partition("/?")
    assert sorted(hosts.split(",")) == sorted(f"{name}:27017" for name in _replica_set_members(compose))
    assert "replicaSet=rs0" in options.split("&")


# -- Kafka ----------------------------------------------------------------------------------------------
def test_kafka_runs_in_kraft_mode_where_the_services_look_for_it():
    compose = load_compose()
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in name for name in env)
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16  # a Kafka UUID
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://")
    for service in socorg_processes(compose).values():
        assert environment(service)["KAFKA_BOOTSTRAP_SERVERS"] == advertised
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert kafka["volumes"] == ["kafka-data:/var/lib/kafka/data"] and env["KAFKA_LOG_DIRS"].startswith("/var/lib/kafka/data")


def test_the_topic_job_uses_the_services_topic_settings():
    compose = load_compose()
    job = compose["services"]["kafka-topics"]
    assert job["restart"] == "no" and job["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    job_env = environment(job)
    for service in socorg_processes(compose).values():
        env = environment(service)
        for name in ("KAFKA_BOOTSTRAP_SERVERS", "SOCORG_KAFKA_NAMESPACE", "SOCORG_TOPIC_PARTITIONS"):
            assert job_env[name] == env[name], name
    # (tests/integration/test_deploy_scripts.py runs the script and checks the topics it creates.)


# -- the services ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_a_web_and_a_worker_process_of_the_one_image(service):
    processes = socorg_processes()
    web, worker = processes[f"{service}-web"], processes[f"{service}-worker"]
    port = PORTS[service]
    module, _, factory = web["command"][-1].partition(":")
    assert web["command"] == ["gunicorn", "-c", "/app/gunicorn.conf.py", "--bind", f"0.0.0.0:{port}",
                              f"services.{service}.app:create_app()"]
    assert callable(getattr(importlib.import_module(module), factory.removesuffix("()")))
    assert environment(web)[f"{service.upper()}_PORT"] == str(port)
    assert web["ports"] == [f"{port}:{port}"]
    assert worker["command"] == ["socorg", "worker", service] and service in CLI_SERVICES
    assert worker["deploy"]["replicas"] >= 2


@pytest.mark.parametrize("service", SERVICES)
def test_each_web_process_is_healthy_only_when_ready(service):
    check = socorg_processes()[f"{service}-web"]["healthcheck"]
    assert f"'http://127.0.0.1:{PORTS[service]}/readyz'" in check["test"][-1]
    # (tests/integration/test_deploy_scripts.py runs this check against a ready and an unready server.)


def test_socorg_processes_wait_for_the_replica_set_and_the_topics():
    for name, service in socorg_processes().items():
        assert service["depends_on"] == {"mongo-init": {"condition": "service_completed_successfully"},
                                         "kafka-topics": {"condition": "service_completed_successfully"}}, name
        assert service["restart"] == "unless-stopped"


def test_every_socorg_process_is_built_from_the_repository_dockerfile():
    for name, service in socorg_processes().items():
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert (context / service["build"]["dockerfile"]).is_file(), name


def test_mongodb_and_kafka_are_reachable_only_on_the_internal_network():
    compose = load_compose()
    assert compose["networks"]["data"]["internal"] is True
    for name, service in compose["services"].items():
        if name in socorg_processes(compose):
            continue
        assert "ports" not in service, f"{name} publishes a port"
        assert service["networks"] == ["data"], name
