"""Every setting the code reads reaches every socorg process, in deploy/compose.yaml and in deploy/k8s/,
and every image is pinned to a version.

The list of settings is read from the code each run (shared.settings.setting_names(), plus any other
environment variable the code reads, found by parsing shared/, services/ and the gunicorn config), so a
setting added to the code fails here until the deployment provides it.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from shared.settings import DEFAULT_JWT_SECRET, Settings, SettingsError, setting_names
from tests.unit.test_deploy_compose import environment, load_compose, socorg_processes
from tests.unit.test_deploy_k8s import (WORKLOADS, all_containers, config_map_data, container_env_names,
                                        load_manifests, socorg_containers)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CODE = [ROOT / "shared", ROOT / "services", DEPLOY / "gunicorn.conf.py"]
# The settings loader reads every setting by name from its metadata: setting_names() covers it.
SETTINGS_LOADER = ROOT / "shared" / "settings.py"

# Environment variables the code reads that a deployment must never set, and why.
NEVER_DEPLOYED = {
    "SOCORG_FAULTS": "fault injection for crash tests (shared/faults.py): it kills the process on purpose",
}
# Secrets every service process needs, each from a Secret (Kubernetes) or the operator's environment
# (compose), never written into the files.
SERVICE_SECRETS = {"SOCORG_JWT_SECRET", "MONGODB_URI"}
# Secret settings of processes that are not deployed by these files yet: the services must not get them.
OTHER_PROCESS_SECRETS = {
    "PORTAL_SECRET_KEY": "the portal (port 8000), not deployed yet",
    "OIDC_CLIENT_SECRET": "the portal (port 8000), not deployed yet",
}
STRONG_SECRET = "a-deployment-secret-of-more-than-thirty-two-characters"


def required_settings() -> set[str]:
    return set(setting_names()) - set(OTHER_PROCESS_SECRETS)


def secret_settings() -> set[str]:
    return {f.metadata["env"] for f in dataclasses.fields(Settings) if f.metadata["secret"]}


def _missing_message(where: str, missing: set[str]) -> str:
    defaults = {f.metadata["env"]: f.default for f in dataclasses.fields(Settings)}
    lines = "\n".join(f'  {name}: "{defaults.get(name, "")}"' for name in sorted(missing))
    return f"{where} does not provide these settings (add them with the right production value):\n{lines}"


# -- what the code reads --------------------------------------------------------------------------------
def _python_files() -> list[Path]:
    files = []
    for path in CODE:
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [file for file in files if file != SETTINGS_LOADER]


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (isinstance(node, ast.Name) and node.id == "environ")


def _constant(node: ast.AST, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def environment_reads() -> tuple[set[str], list[str]]:
    """(names the code reads from the environment, reads whose name could not be worked out)."""
    names, unresolved = set(), []
    for file in _python_files():
        tree = ast.parse(file.read_text(), str(file))
        constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                     and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                     for target in node.targets if isinstance(target, ast.Name)}
        for node in ast.walk(tree):
            key = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                is_get = node.func.attr in {"get", "pop", "setdefault"} and _is_environ(node.func.value)
                is_getenv = node.func.attr == "getenv"
                if (is_get or is_getenv) and node.args:
                    key = node.args[0]
            elif isinstance(node, ast.Subscript) and _is_environ(node.value):
                key = node.slice
            elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
                key = node.left
            if key is None:
                continue
            name = _constant(key, constants)
            if name is None:
                unresolved.append(f"{file.relative_to(ROOT)}:{node.lineno}")
            else:
                names.add(name)
    return names, unresolved


def test_the_code_reads_no_environment_variable_the_deployment_does_not_know_about():
    names, unresolved = environment_reads()
    assert unresolved == [], "read the environment through shared.settings (or name the variable as a constant)"
    unknown = names - set(setting_names()) - set(NEVER_DEPLOYED)
    assert unknown == set(), "make these settings in shared/settings.py, or list them in NEVER_DEPLOYED with why"
    assert set(NEVER_DEPLOYED) <= names, "NEVER_DEPLOYED names a variable the code no longer reads"


def test_every_secret_setting_is_assigned_to_a_process():
    assert secret_settings() - SERVICE_SECRETS - set(OTHER_PROCESS_SECRETS) == set()


# -- compose ----------------------------------------------------------------------------------------------
def test_compose_gives_every_setting_to_every_socorg_process():
    processes = socorg_processes()
    assert processes
    for name, service in processes.items():
        missing = required_settings() - set(environment(service))
        assert not missing, _missing_message(f"deploy/compose.yaml ({name})", missing)


def test_compose_takes_the_secrets_from_the_operators_environment():
    for name, service in socorg_processes().items():
        env = environment(service)
        jwt = env["SOCORG_JWT_SECRET"]
        # ${VAR:?message}: compose refuses to start when the operator has not set it.
        assert re.fullmatch(r"\$\{SOCORG_JWT_SECRET:\?[^}]+\}", jwt), name
        assert not set(OTHER_PROCESS_SECRETS) & set(env), name


def _compose_environ(service: dict, jwt_secret: str) -> dict[str, str]:
    env = environment(service)
    env["SOCORG_JWT_SECRET"] = jwt_secret  # what compose interpolates from the operator's environment
    return env


def test_the_compose_settings_pass_the_production_guard():
    for name, service in socorg_processes().items():
        settings = Settings.from_env(_compose_environ(service, STRONG_SECRET))
        assert settings.production, name
        with pytest.raises(SettingsError, match="SOCORG_JWT_SECRET"):
            Settings.from_env(_compose_environ(service, DEFAULT_JWT_SECRET))


# -- Kubernetes -------------------------------------------------------------------------------------------
def test_kubernetes_gives_every_setting_to_every_socorg_container():
    manifests = load_manifests()
    containers = list(socorg_containers(manifests))
    assert len(containers) == 6
    for workload, container in containers:
        missing = required_settings() - container_env_names(container, manifests)
        assert not missing, _missing_message(f"deploy/k8s ({workload['metadata']['name']})", missing)


def test_kubernetes_config_map_references_resolve():
    manifests = load_manifests()
    for workload in (doc for doc in manifests if doc["kind"] in WORKLOADS):
        for container in all_containers(workload):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["key"] in config_map_data(ref["name"], manifests), (workload["metadata"]["name"], ref)


def test_the_kubernetes_settings_pass_the_production_guard():
    environ = dict(config_map_data())
    environ |= {"SOCORG_JWT_SECRET": STRONG_SECRET, "MONGODB_URI": "mongodb://registry:pw@mongodb-0.mongodb/registry"}
    assert Settings.from_env(environ).production
    with pytest.raises(SettingsError, match="SOCORG_JWT_SECRET"):
        Settings.from_env(environ | {"SOCORG_JWT_SECRET": DEFAULT_JWT_SECRET})


def test_no_secret_is_written_into_the_deploy_files():
    manifests = load_manifests()
    assert not any(doc["kind"] == "Secret" for doc in manifests), "Secrets are created by the operator"
    written = set(config_map_data(manifests=manifests))
    for workload in (doc for doc in manifests if doc["kind"] in WORKLOADS):
        for container in all_containers(workload):
            written |= {item["name"] for item in container.get("env", []) if "value" in item}
    assert not (secret_settings() | SERVICE_SECRETS) & written


def test_variables_that_must_never_be_deployed_are_not():
    text = "\n".join(path.read_text() for path in sorted(DEPLOY.rglob("*")) if path.suffix in {".yaml", ".py"})
    text += (ROOT / "Dockerfile").read_text()
    for name in NEVER_DEPLOYED:
        assert name not in text, NEVER_DEPLOYED[name]


# -- the two agree ----------------------------------------------------------------------------------------
def _is_address(value: str) -> bool:
    return "://" in value or bool(re.fullmatch(r"[\w.-]+:\d+(,[\w.-]+:\d+)*", value))


# Settings that follow the topology: compose runs one Kafka broker, the cluster three.
TOPOLOGY_SETTINGS = {"SOCORG_TOPIC_REPLICATION"}


def test_compose_and_kubernetes_configure_the_same_system():
    """Only addresses (hosts differ between a Docker network and a cluster), secrets and the topology's
    size may differ."""
    compose_env = environment(next(iter(socorg_processes().values())))
    k8s_env = config_map_data()
    differing = {name for name in set(compose_env) & set(k8s_env)
                 if compose_env[name] != k8s_env[name] and not _is_address(compose_env[name])}
    assert differing <= TOPOLOGY_SETTINGS
    assert compose_env["SOCORG_TOPIC_REPLICATION"] == "1" and k8s_env["SOCORG_TOPIC_REPLICATION"] == "3"


# -- images -----------------------------------------------------------------------------------------------
PINNED = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._/-]*):(?P<tag>\d+\.\d+\.\d+[\w.-]*)(@sha256:[0-9a-f]{64})?$")


def every_image() -> dict[str, str]:
    """Every image reference in the deploy files and the Dockerfile, with where it is."""
    images = {}
    for name, service in load_compose()["services"].items():
        images[f"compose {name}"] = service["image"]
    for workload in (doc for doc in load_manifests() if doc["kind"] in WORKLOADS):
        for container in all_containers(workload):
            images[f"k8s {workload['metadata']['name']}/{container['name']}"] = container["image"]
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.upper().startswith("FROM "):
            images[f"Dockerfile {line.split()[-1]}"] = line.split()[1]
    return images


@pytest.mark.parametrize("image", ["mongo", "mongo:latest", "mongo:8", "mongo:8.0", "apache/kafka:latest"])
def test_an_unpinned_image_is_recognised(image):
    assert not PINNED.match(image)


def test_every_image_is_pinned_to_a_version():
    images = every_image()
    assert {where.split()[0] for where in images} == {"compose", "k8s", "Dockerfile"}
    unpinned = {where: image for where, image in images.items() if not PINNED.match(image)}
    assert unpinned == {}, "use name:<major.minor.patch> (never latest, never untagged)"


def test_every_compose_service_names_an_image():
    for name, service in load_compose()["services"].items():
        assert service.get("image"), f"{name} has no image (a build alone is not pinned)"


def test_the_socorg_image_carries_the_project_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    socorg = {where: image for where, image in every_image().items() if image.split(":")[0] == "socorg"}
    assert len(socorg) == 12  # compose 6 + Kubernetes 6
    assert set(socorg.values()) == {f"socorg:{version}"}
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": "socorg", "newTag": version}]
