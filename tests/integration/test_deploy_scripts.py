"""The scripts inside deploy/ (topic creation, waiting for topics, the Kafka node start, the health
checks, the replica-set initiation), run here since Docker cannot: the shell scripts under `sh` with
stand-ins for the Kafka command-line tools that record what they were asked, checked with shellcheck;
the mongosh scripts parsed by Node; the compose health check against a real HTTP server.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shared.events import TOPICS, dlq_topic
from tests.unit.test_deploy_compose import environment, load_compose
from tests.unit.test_deploy_k8s import config_map_data, named, pod_spec

SH = shutil.which("sh")
SHELLCHECK = Path(sys.executable).with_name("shellcheck")
NODE = shutil.which("node")


# -- the scripts, as the containers get them ----------------------------------------------------------
def compose_topic_script() -> str:
    raw = load_compose()["services"]["kafka-topics"]["command"][0]
    assert "$" not in raw.replace("$$", ""), "a single $ would be interpolated by compose from the host"
    return raw.replace("$$", "$")


def k8s_topic_script() -> str:
    return pod_spec(named("Job", "kafka-topics"))["containers"][0]["args"][0]


def wait_for_topics_script(service: str = "registry") -> str:
    return pod_spec(named("Deployment", f"{service}-worker"))["initContainers"][0]["args"][0]


def kafka_node_script() -> str:
    return pod_spec(named("StatefulSet", "kafka"))["containers"][0]["args"][0]


def all_shell_scripts() -> dict[str, str]:
    scripts = {"compose kafka-topics": compose_topic_script(), "k8s kafka-topics": k8s_topic_script(),
               "k8s kafka node": kafka_node_script()}
    for service in TOPICS:
        scripts[f"k8s {service}-worker wait-for-topics"] = wait_for_topics_script(service)
    kafka_check = load_compose()["services"]["kafka"]["healthcheck"]["test"]
    assert kafka_check[0] == "CMD-SHELL"
    scripts["compose kafka healthcheck"] = kafka_check[1]
    return scripts


# -- stand-ins ------------------------------------------------------------------------------------------
class KafkaTools:
    """A directory standing in for /opt/kafka/bin: kafka-topics.sh records its arguments, answers --list
    from a file, and fails when told to."""

    def __init__(self, root: Path):
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "calls.log"
        self.listed = root / "listed.txt"
        self.failing = root / "failing"
        self.log.touch()
        self.listed.touch()
        self._script("kafka-topics.sh", f"""#!/bin/sh
printf '%s\\n' "$*" >> "{self.log}"
[ -e "{self.failing}" ] && exit 1
case " $* " in *" --list "*) cat "{self.listed}" ;; esac
exit 0
""")

    def _script(self, name: str, body: str) -> Path:
        path = self.bin / name
        path.write_text(body)
        path.chmod(0o755)
        return path

    def calls(self) -> list[list[str]]:
        return [line.split() for line in self.log.read_text().splitlines()]

    def creates(self) -> dict[str, dict[str, str]]:
        """topic -> its options, for every --create call."""
        result = {}
        for call in self.calls():
            if "--create" in call:
                options = {call[i]: call[i + 1] for i in range(len(call) - 1) if call[i].startswith("--")
                           and not call[i + 1].startswith("--")}
                result[options["--topic"]] = options | {"--if-not-exists": str("--if-not-exists" in call)}
        return result

    def run(self, script: str, env: dict[str, str], **replacements: str) -> subprocess.CompletedProcess:
        script = script.replace("/opt/kafka/bin/", f"{self.bin}/")
        for old, new in replacements.items():
            script = script.replace(old, new)
        environ = {"PATH": f"{self.bin}:{os.environ['PATH']}"} | env
        return subprocess.run([SH, "-c", script], env=environ, capture_output=True, text=True, timeout=60)


@pytest.fixture
def kafka_tools(tmp_path) -> KafkaTools:
    return KafkaTools(tmp_path)


def expected_topics(namespace: str = "") -> set[str]:
    return {namespace + name for topic in TOPICS.values() for name in (topic, dlq_topic(topic))}


# -- static checks ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(all_shell_scripts()))
def test_shellcheck_finds_nothing_in(name):
    script = all_shell_scripts()[name]
    result = subprocess.run([str(SHELLCHECK), "--shell=sh", "--format=gcc", "-"], input=script,
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "")


@pytest.mark.skipif(NODE is None, reason="Node.js parses the mongosh scripts; it is not installed")
@pytest.mark.parametrize("where", ["compose mongo-init", "k8s mongodb-init"])
def test_the_mongosh_script_is_valid_javascript(where, tmp_path):
    if where.startswith("compose"):
        script = load_compose()["services"]["mongo-init"]["command"][-1]
    else:
        script = config_map_data("mongodb-init")["init-replica-set.js"]
    path = tmp_path / "script.js"
    path.write_text(script)
    result = subprocess.run([NODE, "--check", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# -- topic creation ---------------------------------------------------------------------------------------
def _compose_job_env() -> dict[str, str]:
    return environment(load_compose()["services"]["kafka-topics"])


def _k8s_job_env() -> dict[str, str]:
    container = pod_spec(named("Job", "kafka-topics"))["containers"][0]
    config = config_map_data()
    return {item["name"]: item["value"] if "value" in item else config[item["valueFrom"]["configMapKeyRef"]["key"]]
            for item in container["env"]}


@pytest.mark.parametrize("where", ["compose", "k8s"])
@pytest.mark.parametrize("namespace", ["", "staging."])
def test_the_topic_job_creates_every_topic_and_its_dead_letter_topic(where, namespace, kafka_tools):
    script, env = (compose_topic_script(), _compose_job_env()) if where == "compose" else (k8s_topic_script(), _k8s_job_env())
    env["SOCORG_KAFKA_NAMESPACE"] = namespace
    result = kafka_tools.run(script, env)
    assert result.returncode == 0, result.stderr
    creates = kafka_tools.creates()
    assert set(creates) == expected_topics(namespace)
    for topic, options in creates.items():
        assert options["--bootstrap-server"] == env["KAFKA_BOOTSTRAP_SERVERS"]
        assert options["--partitions"] == env["SOCORG_TOPIC_PARTITIONS"]
        assert options["--if-not-exists"] == "True", "running the job again must not fail"
    replication = {options["--replication-factor"] for options in creates.values()}
    min_insync = {options["--config"] for options in creates.values()}
    if where == "k8s":
        brokers = named("StatefulSet", "kafka")["spec"]["replicas"]
        assert replication == {str(brokers)} and min_insync == {f"min.insync.replicas={brokers - 1}"}
    else:
        assert replication == {"1"} and min_insync == {"min.insync.replicas=1"}  # one broker


def test_the_topic_job_fails_when_a_topic_cannot_be_created(kafka_tools):
    kafka_tools.failing.touch()
    result = kafka_tools.run(k8s_topic_script(), _k8s_job_env())
    assert result.returncode != 0, "a failed creation must fail the Job, so that it is retried"
    assert len(kafka_tools.creates()) == 1, "it stops at the first failure"


# -- workers wait for the topics ----------------------------------------------------------------------
def _wait_env(namespace: str = "") -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": config_map_data()["KAFKA_BOOTSTRAP_SERVERS"], "SOCORG_KAFKA_NAMESPACE": namespace}


def _sleep_that_lists(kafka_tools: KafkaTools, topics: set[str]) -> Path:
    """A `sleep` that, instead of waiting, records the call and lets the topics appear."""
    calls = kafka_tools.bin.parent / "sleeps.log"
    lines = "".join(f"{topic}\n" for topic in sorted(topics))
    kafka_tools._script("sleep", f"""#!/bin/sh
echo "$*" >> "{calls}"
printf '%s' '{lines}' > "{kafka_tools.listed}"
rm -f "{kafka_tools.failing}"
""")
    calls.touch()
    return calls


def test_a_worker_starts_at_once_when_every_topic_exists(kafka_tools):
    kafka_tools.listed.write_text("".join(f"{t}\n" for t in sorted(expected_topics())) + "other.topic\n")
    sleeps = _sleep_that_lists(kafka_tools, expected_topics())
    result = kafka_tools.run(wait_for_topics_script(), _wait_env())
    assert result.returncode == 0, result.stderr
    assert sleeps.read_text() == ""
    assert [call for call in kafka_tools.calls() if "--list" in call]


@pytest.mark.parametrize("situation", ["one topic missing", "broker not answering", "other namespace's topics"])
def test_a_worker_waits_until_every_topic_exists(situation, kafka_tools):
    namespace = "prod." if situation == "other namespace's topics" else ""
    present = expected_topics()  # unprefixed: the wrong namespace's when namespace is set
    if situation == "one topic missing":
        present = present - {dlq_topic(TOPICS["fund"])}
    if situation == "broker not answering":
        kafka_tools.failing.touch()
    kafka_tools.listed.write_text("".join(f"{t}\n" for t in sorted(present)))
    sleeps = _sleep_that_lists(kafka_tools, expected_topics(namespace))
    result = kafka_tools.run(wait_for_topics_script(), _wait_env(namespace))
    assert result.returncode == 0, result.stderr
    assert len(sleeps.read_text().splitlines()) == 1, "it waited once, then found every topic"


# -- Kafka nodes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ordinal", [0, 1, 2])
def test_a_kafka_node_takes_its_id_and_name_from_its_pod(ordinal, kafka_tools):
    run = kafka_tools._script("run", "#!/bin/sh\necho \"$KAFKA_NODE_ID $KAFKA_ADVERTISED_LISTENERS\"\n")
    result = kafka_tools.run(kafka_node_script(), {"POD_NAME": f"kafka-{ordinal}"},
                             **{"/etc/kafka/docker/run": str(run)})
    assert result.returncode == 0, result.stderr
    node_id, advertised = result.stdout.split()
    host = advertised.removeprefix("PLAINTEXT://").rsplit(":", 1)[0]
    env = {item["name"]: item.get("value") for item in pod_spec(named("StatefulSet", "kafka"))["containers"][0]["env"]}
    # The same node id and host as in the controller quorum: a mismatch would keep the node out.
    assert f"{node_id}@{host}:9093" in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert node_id == str(ordinal)


def test_a_kafka_node_without_its_pod_name_does_not_start(kafka_tools):
    run = kafka_tools._script("run", "#!/bin/sh\necho started\n")
    result = kafka_tools.run(kafka_node_script(), {}, **{"/etc/kafka/docker/run": str(run)})
    assert result.returncode != 0 and "started" not in result.stdout


# -- the compose health check of the web processes ----------------------------------------------------------
class _Readiness(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 - the http.server API
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status, healthy", [(200, True), (503, False)])
def test_the_web_health_check_passes_only_when_the_service_is_ready(status, healthy):
    handler = type("Handler", (_Readiness,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check = load_compose()["services"]["registry-web"]["healthcheck"]["test"]
        assert check[:3] == ["CMD", "python", "-c"]
        code = check[3].replace("127.0.0.1:8001", f"127.0.0.1:{server.server_port}")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert (result.returncode == 0) is healthy
    finally:
        server.shutdown()
        server.server_close()
