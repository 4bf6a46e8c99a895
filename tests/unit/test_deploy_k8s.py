"""deploy/k8s/: valid Kubernetes objects (checked offline with kubernetes-validate), and the topology the
production design asks for: web and worker Deployments per service with probes, resources, an autoscaler
and a disruption budget each; a MongoDB replica set and a KRaft Kafka cluster; network policies that let
each service reach only MongoDB, Kafka and DNS, and be reached only where it serves.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Mapping

import kubernetes_validate
import pytest
import yaml

from shared.events import TOPICS
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
NAMESPACE = "socorg"
SERVICES = tuple(TOPICS)  # registry, evaluation, fund
PORTS = {service: Settings().port_of(service) for service in SERVICES}
# The oldest Kubernetes the manifests promise to work on, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
CLUSTER_SCOPED = {"Namespace"}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}


# -- loading ------------------------------------------------------------------------------------------
def manifest_paths() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@lru_cache(maxsize=1)
def _parsed_manifests() -> tuple[dict, ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(doc for path in manifest_paths() for doc in yaml.load_all(path.read_text(), Loader=loader) if doc)


def load_manifests() -> list[dict]:
    """Every Kubernetes object in deploy/k8s, in file order (a fresh copy: callers may change it)."""
    return copy.deepcopy(list(_parsed_manifests()))


def objects(kind: str, manifests: list[dict] | None = None) -> list[dict]:
    return [doc for doc in (manifests or load_manifests()) if doc["kind"] == kind]


def named(kind: str, name: str, manifests: list[dict] | None = None) -> dict:
    matches = [doc for doc in objects(kind, manifests) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def config_map_data(name: str = "socorg-config", manifests: list[dict] | None = None) -> dict[str, str]:
    return named("ConfigMap", name, manifests).get("data", {})


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def all_containers(workload: dict) -> Iterator[dict]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def socorg_containers(manifests: list[dict] | None = None) -> Iterator[tuple[dict, dict]]:
    """(workload, container) for every main container that runs the socorg image."""
    for workload in (doc for doc in (manifests or load_manifests()) if doc["kind"] in WORKLOADS):
        for container in pod_spec(workload)["containers"]:
            if container["image"].split(":")[0] == "socorg":
                yield workload, container


def container_env_names(container: dict, manifests: list[dict]) -> set[str]:
    """The environment variables a container gets: its `env` and the keys of the ConfigMaps it loads."""
    names = {item["name"] for item in container.get("env", [])}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(config_map_data(source["configMapRef"]["name"], manifests))
    return names


# -- label selectors and network policies -------------------------------------------------------------
def selects(selector: Mapping | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector selects everything."""
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: Mapping[str, str] = field(hash=False)

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def manifest_pods(manifests: list[dict] | None = None) -> dict[str, Pod]:
    """A representative pod of each workload, by workload name."""
    return {
        workload["metadata"]["name"]: Pod(workload["metadata"]["name"], workload["metadata"]["namespace"],
                                          workload["spec"]["template"]["metadata"]["labels"])
        for workload in (manifests or load_manifests()) if workload["kind"] in WORKLOADS
    }


def _peer_matches(peer: Mapping, policy_namespace: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        return False
    namespace_selector = peer.get("namespaceSelector")
    if namespace_selector is None:
        in_namespace = pod.namespace == policy_namespace
    else:
        in_namespace = selects(namespace_selector, pod.namespace_labels)
    return in_namespace and selects(peer.get("podSelector"), pod.labels)


def _port_matches(ports: list | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(item.get("protocol", "TCP") == protocol and item.get("port") in (None, port) for item in ports)


def allows(policies: list[dict], pod: Pod, direction: str, other: Pod, port: int, protocol: str) -> bool:
    """Whether `pod`'s policies allow traffic to (Egress) or from (Ingress) `other` on `port`."""
    rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    selecting = [p for p in policies if p["metadata"]["namespace"] == pod.namespace
                 and selects(p["spec"]["podSelector"], pod.labels) and direction in p["spec"]["policyTypes"]]
    if not selecting:
        return True  # a pod no policy isolates accepts everything
    for policy in selecting:
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key)
            if peers and not any(_peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers):
                continue
            if _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def connection_allowed(policies: list[dict], source: Pod, target: Pod, port: int, protocol: str = "TCP") -> bool:
    return (allows(policies, source, "Egress", target, port, protocol)
            and allows(policies, target, "Ingress", source, port, protocol))


DNS = Pod("coredns", "kube-system", {"k8s-app": "kube-dns"})
INGRESS_CONTROLLER = Pod("ingress-nginx-controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS = Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
STRANGER = Pod("somebody", "default", {"app": "anything"})


# -- validity -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_offline_against_the_kubernetes_schemas(version):
    failures = []
    for doc in load_manifests():
        try:
            # strict: unknown fields (a misspelt key) are errors, as with `kubectl apply --validate=strict`.
            kubernetes_validate.validate(doc, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {getattr(error, 'message', error)}")
    assert failures == []


def test_the_validator_rejects_a_misspelt_field():
    deployment = copy.deepcopy(named("Deployment", "registry-web"))
    pod_spec(deployment)["containers"][0]["readinesProbe"] = pod_spec(deployment)["containers"][0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_the_kustomization_applies_every_manifest_into_the_namespace():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifest_paths())
    assert kustomization["namespace"] == NAMESPACE
    for doc in load_manifests():
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']}"


# -- the services -------------------------------------------------------------------------------------
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_web_and_worker_deployments_of_two_or_more_replicas(service):
    web, worker = named("Deployment", f"{service}-web"), named("Deployment", f"{service}-worker")
    for deployment in (web, worker):
        assert deployment["spec"]["replicas"] >= 2
        assert selects(deployment["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert pod_spec(web)["containers"][0]["command"] == [
        "gunicorn", "-c", "/app/gunicorn.conf.py", "--bind", f"0.0.0.0:{PORTS[service]}",
        f"services.{service}.app:create_app()"]
    assert pod_spec(worker)["containers"][0]["command"] == ["socorg", "worker", service]
    # The two are scaled apart: neither selector picks the other's pods.
    assert not selects(web["spec"]["selector"], worker["spec"]["template"]["metadata"]["labels"])
    assert not selects(worker["spec"]["selector"], web["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("service", SERVICES)
def test_web_pods_are_ready_on_readyz_and_alive_on_healthz_on_their_port(service):
    container = pod_spec(named("Deployment", f"{service}-web"))["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == PORTS[service], probe
    # ConfigMap setting, bind address, container port and probes all name the same port.
    assert int(config_map_data()[f"{service.upper()}_PORT"]) == PORTS[service]


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_sends_traffic_to_web_pods_only(service):
    k8s_service = named("Service", service)
    web = named("Deployment", f"{service}-web")["spec"]["template"]["metadata"]["labels"]
    worker = named("Deployment", f"{service}-worker")["spec"]["template"]["metadata"]["labels"]
    selector = {"matchLabels": k8s_service["spec"]["selector"]}
    assert selects(selector, web) and not selects(selector, worker)
    [port] = k8s_service["spec"]["ports"]
    assert port["port"] == PORTS[service] and port["targetPort"] == "http"


def test_every_container_has_resource_requests_and_limits():
    missing = []
    for workload in (doc for doc in load_manifests() if doc["kind"] in WORKLOADS):
        for container in all_containers(workload):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(resources.get(part, {})):
                    missing.append(f"{workload['metadata']['name']}/{container['name']} {part}")
    assert missing == []


def test_every_pod_meets_the_restricted_pod_security_standard():
    """The namespace enforces `restricted`; a pod that does not meet it would never start."""
    assert named("Namespace", NAMESPACE)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    problems = []
    for workload in (doc for doc in load_manifests() if doc["kind"] in WORKLOADS):
        spec, name = pod_spec(workload), workload["metadata"]["name"]
        context = spec.get("securityContext", {})
        if context.get("runAsNonRoot") is not True or context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: pod securityContext")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: mounts a service account token it does not need")
        for container in all_containers(workload):
            security = container.get("securityContext", {})
            if security.get("allowPrivilegeEscalation") is not False or security.get("capabilities") != {"drop": ["ALL"]}:
                problems.append(f"{name}/{container['name']}: container securityContext")
            if security.get("runAsUser", context.get("runAsUser", 1)) == 0:
                problems.append(f"{name}/{container['name']}: runs as root")
    assert problems == []


def test_socorg_containers_run_as_the_images_user_on_a_read_only_root():
    for workload, container in socorg_containers():
        assert pod_spec(workload)["securityContext"]["runAsUser"] == 10001
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert "/tmp" in {mount["mountPath"] for mount in container.get("volumeMounts", [])}


@pytest.mark.parametrize("process", ["web", "worker"])
@pytest.mark.parametrize("service", SERVICES)
def test_each_deployment_has_an_autoscaler_and_a_disruption_budget(service, process):
    name = f"{service}-{process}"
    deployment = named("Deployment", name)
    autoscalers = [h for h in objects("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == name]
    assert len(autoscalers) == 1
    [autoscaler] = autoscalers
    assert autoscaler["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert autoscaler["spec"]["minReplicas"] >= 2
    assert autoscaler["spec"]["maxReplicas"] > autoscaler["spec"]["minReplicas"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budgets = [b for b in objects("PodDisruptionBudget") if selects(b["spec"]["selector"], labels)]
    assert len(budgets) == 1, "exactly one disruption budget covers these pods"
    [budget] = budgets
    assert budget["spec"].get("minAvailable", 0) >= 1
    others = [d for d in objects("Deployment") if d["metadata"]["name"] != name]
    assert not any(selects(budget["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]) for d in others)


@pytest.mark.parametrize("service", SERVICES)
def test_worker_autoscalers_stop_at_the_partition_count(service):
    """A consumer group gives each partition to one member: more workers than partitions would idle."""
    [autoscaler] = [h for h in objects("HorizontalPodAutoscaler")
                    if h["spec"]["scaleTargetRef"]["name"] == f"{service}-worker"]
    assert autoscaler["spec"]["maxReplicas"] == int(config_map_data()["SOCORG_TOPIC_PARTITIONS"])


def test_the_secrets_come_from_secret_references_and_each_service_has_its_own_database_user():
    secret_settings = {"SOCORG_JWT_SECRET", "MONGODB_URI"}
    assert not secret_settings & set(config_map_data()), "a secret in a ConfigMap"
    uri_secrets = {}
    for workload, container in socorg_containers():
        refs = {item["name"]: item.get("valueFrom", {}).get("secretKeyRef") for item in container.get("env", [])}
        for setting in secret_settings:
            assert refs.get(setting), f"{workload['metadata']['name']}: {setting} is not a secretKeyRef"
        service = workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        uri_secrets.setdefault(service, set()).add(refs["MONGODB_URI"]["name"])
    assert set(uri_secrets) == set(SERVICES)
    # One URI secret per service (web and worker share it), and no two services share one.
    assert all(len(names) == 1 for names in uri_secrets.values())
    assert len({name for names in uri_secrets.values() for name in names}) == len(SERVICES)


def test_every_referenced_secret_and_key_is_documented():
    """An operator creates the Secrets by hand: docs/production.md must name each one and its keys."""
    docs = (ROOT / "docs" / "production.md").read_text()
    for workload in (doc for doc in load_manifests() if doc["kind"] in WORKLOADS):
        for container in all_containers(workload):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in docs and ref["key"] in docs, ref
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in docs


# -- MongoDB and Kafka --------------------------------------------------------------------------------
def test_mongodb_is_a_three_member_replica_set_one_member_per_machine():
    statefulset = named("StatefulSet", "mongodb")
    assert statefulset["spec"]["replicas"] == 3
    spec = pod_spec(statefulset)
    [mongod] = spec["containers"]
    assert mongod["image"].startswith("mongo:")
    args = mongod["args"]
    assert args[args.index("--replSet") + 1] == "rs0"
    [term] = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"], statefulset["spec"]["template"]["metadata"]["labels"])
    assert named("PodDisruptionBudget", "mongodb")["spec"]["maxUnavailable"] == 1


def test_the_mongodb_init_job_names_every_member_by_its_stable_dns_name():
    statefulset = named("StatefulSet", "mongodb")
    governing = statefulset["spec"]["serviceName"]
    assert named("Service", governing)["spec"]["clusterIP"] == "None"
    expected = [f"mongodb-{i}.{governing}.{NAMESPACE}.svc.cluster.local:27017"
                for i in range(statefulset["spec"]["replicas"])]
    [init] = pod_spec(named("Job", "mongodb-init"))["containers"]
    env = {item["name"]: item for item in init["env"]}
    assert env["MONGODB_MEMBERS"]["value"].split(",") == expected
    # The script it runs is the one in the ConfigMap, and creates a user for every service.
    assert init["command"] == ["mongosh", "--nodb", "--quiet", "/scripts/init-replica-set.js"]
    [scripts] = [v for v in pod_spec(named("Job", "mongodb-init"))["volumes"] if v["name"] == "scripts"]
    assert scripts["configMap"]["name"] == "mongodb-init"
    script = config_map_data("mongodb-init")["init-replica-set.js"]
    for service in SERVICES:
        assert f"MONGODB_PASSWORD_{service.upper()}" in env
        assert f'"{service}"' in script


def test_kafka_is_a_three_node_kraft_cluster_with_replicated_topics():
    statefulset = named("StatefulSet", "kafka")
    replicas = statefulset["spec"]["replicas"]
    assert replicas == 3
    [kafka] = pod_spec(statefulset)["containers"]
    assert kafka["image"].startswith("apache/kafka:")
    env = {item["name"]: item.get("value") for item in kafka["env"]}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in name for name in env)
    governing = statefulset["spec"]["serviceName"]
    voters = [f"{i}@kafka-{i}.{governing}.{NAMESPACE}.svc.cluster.local:9093" for i in range(replicas)]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",") == voters
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16  # a Kafka UUID
    assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == replicas - 1
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert named("PodDisruptionBudget", "kafka")["spec"]["maxUnavailable"] == 1
    # Clients bootstrap from the kafka Service, which routes to the brokers.
    bootstrap = config_map_data()["KAFKA_BOOTSTRAP_SERVERS"]
    assert bootstrap == f"kafka.{NAMESPACE}.svc.cluster.local:9092"
    assert selects({"matchLabels": named("Service", "kafka")["spec"]["selector"]},
                   statefulset["spec"]["template"]["metadata"]["labels"])


def test_workers_wait_for_the_topic_job_before_starting():
    for service in SERVICES:
        init = pod_spec(named("Deployment", f"{service}-worker"))["initContainers"]
        assert [container["name"] for container in init] == ["wait-for-topics"]
        assert init[0]["image"] == pod_spec(named("Job", "kafka-topics"))["containers"][0]["image"]


# -- network policies ---------------------------------------------------------------------------------
def _policies() -> list[dict]:
    return objects("NetworkPolicy")


def test_every_pod_in_the_namespace_is_isolated_both_ways():
    [deny] = [p for p in _policies() if p["metadata"]["name"] == "default-deny-all"]
    assert deny["spec"]["podSelector"] == {} and set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    # Peers are pods and namespaces only: no address range opens a way in or out.
    for policy in _policies():
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                assert "ipBlock" not in peer, policy["metadata"]["name"]


@pytest.mark.parametrize("process", ["web", "worker"])
@pytest.mark.parametrize("service", SERVICES)
def test_a_service_reaches_mongodb_kafka_and_dns_and_nothing_else(service, process):
    policies, pods = _policies(), manifest_pods()
    pod = pods[f"{service}-{process}"]
    assert connection_allowed(policies, pod, pods["mongodb"], 27017)
    assert connection_allowed(policies, pod, pods["kafka"], 9092)
    assert connection_allowed(policies, pod, DNS, 53, "UDP") and connection_allowed(policies, pod, DNS, 53, "TCP")
    assert not connection_allowed(policies, pod, pods["kafka"], 9093), "the controller quorum is for brokers only"
    assert not connection_allowed(policies, pod, STRANGER, 443), "no way out of the cluster"
    for other in SERVICES:
        assert not connection_allowed(policies, pod, pods[f"{other}-web"], PORTS[other]), "services talk by events"


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_is_reached_only_where_it_serves(service):
    policies, pods = _policies(), manifest_pods()
    web, worker = pods[f"{service}-web"], pods[f"{service}-worker"]
    assert connection_allowed(policies, INGRESS_CONTROLLER, web, PORTS[service])
    assert connection_allowed(policies, PROMETHEUS, web, PORTS[service])
    assert not connection_allowed(policies, INGRESS_CONTROLLER, web, 22)
    assert not connection_allowed(policies, STRANGER, web, PORTS[service])
    for source in (INGRESS_CONTROLLER, PROMETHEUS, pods[f"{service}-web"]):
        assert not allows(policies, worker, "Ingress", source, PORTS[service], "TCP"), "workers serve nothing"


def test_mongodb_and_kafka_accept_their_clients_and_peers_only():
    policies, pods = _policies(), manifest_pods()
    mongodb, kafka = pods["mongodb"], pods["kafka"]
    assert connection_allowed(policies, mongodb, mongodb, 27017), "replication"
    assert connection_allowed(policies, pods["mongodb-init"], mongodb, 27017)
    assert connection_allowed(policies, kafka, kafka, 9092) and connection_allowed(policies, kafka, kafka, 9093)
    assert connection_allowed(policies, pods["kafka-topics"], kafka, 9092)
    for outsider in (INGRESS_CONTROLLER, PROMETHEUS, STRANGER):
        assert not connection_allowed(policies, outsider, mongodb, 27017)
        assert not connection_allowed(policies, outsider, kafka, 9092)
    assert not connection_allowed(policies, pods["kafka-topics"], mongodb, 27017)
    assert not connection_allowed(policies, pods["mongodb-init"], kafka, 9092)
    assert not connection_allowed(policies, mongodb, kafka, 9092)
