"""deploy/k8s agrees with the code it deploys, and with itself.

Schemas are checked by scripts/check_k8s.py (in `make lint`, and once here); this file checks what
no schema can: every queue has exactly one consumer Deployment, every ScaledObject scales an
existing worker on a queue that worker consumes, probes reach real endpoints with an allowed Host,
every command names code that exists, every image is the one pinned release.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import re
import runpy
from collections import Counter
from typing import Any

import pytest
from django.urls import Resolver404, resolve

from auteur.core.queues import ALL_QUEUES
from devstack import REPO_ROOT
from scripts import check_k8s
from tests.test_compose import argv_of, celery_queues, command_problems, management_commands

IMAGE_REPO = "ghcr.io/auteur-ai/auteur-backend"
SECRET = "auteur-secrets"
CONFIG_MAP = "auteur-config"
SINGLETONS = {"auteur-beat", "auteur-gpu-events", "auteur-exporter", "auteur-flower"}
PROXY_NAMESPACE = "ingress-nginx"
MONITORING_NAMESPACE = "monitoring"
# Never reachable through a "public" rule: private networks, loopback, carrier-grade NAT and
# link-local (the cloud's metadata endpoint).
NON_PUBLIC = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
                                                 "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16",
                                                 "::1/128", "fc00::/7", "fe80::/10")]
METADATA_ENDPOINT = ipaddress.ip_address("169.254.169.254")
DATASTORE_PORTS = {5432: "postgres", 6379: "redis", 27017: "mongodb"}
_JOB_RUNNER = {"dns", "postgres", "redis", "mongodb", "public-https"}
# Everything each component may reach, whole: a new path is a reviewed change of this table.
EGRESS = {
    "auteur-api": _JOB_RUNNER,  # + Stripe, the identity provider's keys (HTTPS)
    "auteur-asgi": _JOB_RUNNER,  # readiness checks every store
    "auteur-migrate": {"dns", "postgres", "mongodb"},  # data migrations rewrite EDL documents
    "auteur-beat": {"dns", "redis"},
    "auteur-flower": {"dns", "redis"},
    "auteur-gpu-events": {"dns", "postgres", "redis", "public-https"},  # Modal's queue
    "auteur-exporter": {"dns", "postgres", "redis"},
    "auteur-worker-default": _JOB_RUNNER,
    "auteur-worker-media": _JOB_RUNNER,
    "auteur-worker-render": _JOB_RUNNER,
    "auteur-worker-gpu-audio": _JOB_RUNNER,
    "auteur-worker-gpu-vision": _JOB_RUNNER,
    "auteur-worker-gpu-generation": _JOB_RUNNER,
    "auteur-worker-webhooks": {"dns", "postgres", "redis", "public-any-port"},  # receivers name their port
}
INGRESS = {
    "auteur-api": {(PROXY_NAMESPACE, 8000), (MONITORING_NAMESPACE, 8000)},
    "auteur-asgi": {(PROXY_NAMESPACE, 8001)},
    "auteur-exporter": {(MONITORING_NAMESPACE, 9808)},
}


@functools.cache
def _parsed() -> tuple[dict[str, Any], ...]:
    return tuple(doc for _name, doc in check_k8s.manifests())


def docs() -> list[dict[str, Any]]:
    """Every manifest document, parsed once per process (the YAML parse was most of these tests'
    time); each call gets its own copy, so a test that changes one changes no other test's."""
    return copy.deepcopy(list(_parsed()))


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs() if doc["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers() -> list[tuple[str, dict[str, Any]]]:
    workloads = {**of_kind("Deployment"), **of_kind("Job")}
    return [(name, container) for name, workload in workloads.items()
            for container in pod_spec(workload)["containers"]]


def workers() -> dict[str, list[str]]:
    """Worker Deployment name -> the queues its `celery worker -Q` consumes."""
    found = {}
    for name, container in containers():
        argv = container["command"]
        if argv[:1] == ["celery"] and "worker" in argv:
            found[name] = celery_queues(argv)
    return found


def test_manifests_pass_their_schemas():
    assert check_k8s.problems() == []


def test_schema_check_catches_an_unknown_field_and_a_non_string_trigger_value():
    deployment = copy.deepcopy(of_kind("Deployment")["auteur-api"])
    pod_spec(deployment)["containers"][0]["livenessprobe"] = {}
    with pytest.raises(check_k8s.kubernetes_validate.ValidationError):
        check_k8s.kubernetes_validate.validate(deployment, check_k8s.KUBERNETES_VERSION, strict=True)
    scaled = copy.deepcopy(next(iter(of_kind("ScaledObject").values())))
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 5  # KEDA takes strings only
    schema = check_k8s.crd_schema("keda.sh/v1alpha1", "ScaledObject")
    assert schema is not None
    with pytest.raises(check_k8s.jsonschema.ValidationError):
        check_k8s.jsonschema.validate(scaled, schema)


def test_every_queue_has_exactly_one_worker_deployment():
    consumers = Counter(queue for queues in workers().values() for queue in queues)
    assert {queue: consumers[queue] for queue in ALL_QUEUES} == dict.fromkeys(ALL_QUEUES, 1)
    assert set(consumers) == set(ALL_QUEUES)


def test_every_worker_is_scaled_on_its_own_queues_by_one_scaled_object():
    scaled = of_kind("ScaledObject")
    deployments = of_kind("Deployment")
    targets = Counter(obj["spec"]["scaleTargetRef"]["name"] for obj in scaled.values())
    assert set(targets) <= set(deployments), "a ScaledObject targets a Deployment that does not exist"
    assert targets == Counter(set(workers())), "each worker Deployment needs exactly one ScaledObject"
    authentications = of_kind("TriggerAuthentication")
    for obj in scaled.values():
        target = obj["spec"]["scaleTargetRef"]
        assert (target["kind"], target["apiVersion"]) == ("Deployment", "apps/v1")
        assert obj["spec"]["minReplicaCount"] >= 1, "a worker holds countdown messages: never scale to zero"
        lists = {trigger["metadata"]["listName"] for trigger in obj["spec"]["triggers"] if trigger["type"] == "redis"}
        assert lists == set(workers()[target["name"]])
        for trigger in obj["spec"]["triggers"]:
            assert trigger["authenticationRef"]["name"] in authentications
    for name in workers():
        assert "replicas" not in deployments[name]["spec"], f"{name}: KEDA owns replicas"


def test_singletons_run_exactly_one_replica_and_never_two_at_once():
    deployments = of_kind("Deployment")
    for name in SINGLETONS:
        assert deployments[name]["spec"]["replicas"] == 1
        assert deployments[name]["spec"]["strategy"]["type"] == "Recreate"
    assert deployments["auteur-beat"]["spec"]["template"]["spec"]["containers"][0]["command"][3] == "beat"


def test_probes_reach_real_endpoints_with_an_allowed_host():
    allowed = of_kind("ConfigMap")[CONFIG_MAP]["data"]["DJANGO_ALLOWED_HOSTS"].split(",")
    probed = 0
    for name, container in containers():
        ports = {port["name"] for port in container.get("ports", [])}
        for kind in ("livenessProbe", "readinessProbe"):
            http = container.get(kind, {}).get("httpGet")
            if http is None:
                continue
            probed += 1
            try:
                resolve(http["path"])
            except Resolver404:
                pytest.fail(f"{name} {kind}: no URL {http['path']}")
            assert http["port"] in ports, f"{name} {kind}: no port named {http['port']}"
            hosts = [header["value"] for header in http.get("httpHeaders", []) if header["name"] == "Host"]
            assert hosts and hosts[0] in allowed, f"{name} {kind}: Host must be one of DJANGO_ALLOWED_HOSTS"
    assert probed == 4  # liveness on /healthz and readiness on /readyz, for the API and the ASGI server
    for name in ("auteur-api", "auteur-asgi"):
        container = pod_spec(of_kind("Deployment")[name])["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_worker_liveness_pings_the_worker_by_its_own_name():
    for name in workers():
        container = pod_spec(of_kind("Deployment")[name])["containers"][0]
        node = container["command"][container["command"].index("-n") + 1]
        assert node.endswith("@%h")
        ping = container["livenessProbe"]["exec"]["command"][-1]
        assert f"-d {node.removesuffix('%h')}$HOSTNAME" in ping


# Which Redis user (deploy/redis_acl.py) each workload logs in as: the API's may queue but never
# consume; the rest are the broker's consumers. Each role's REDIS_URL is a Secret of its own, so
# that no API pod holds the workers' login.
API_ROLE_WORKLOADS = {"auteur-api", "auteur-asgi", "auteur-migrate"}


def redis_secret(workload: dict[str, Any]) -> str:
    return "auteur-redis-api" if workload["metadata"]["name"] in API_ROLE_WORKLOADS else "auteur-redis-worker"


def secret_problems(workload: dict[str, Any], config: dict[str, str]) -> list[str]:
    """How a workload's pod could get a secret other than as a file of the mounted Secret."""
    from django.conf import settings

    names, folder, spec = set(settings.SECRET_NAMES), config.get("AUTEUR_SECRETS_DIR"), pod_spec(workload)
    problems = [f"the ConfigMap sets {key}" for key in config if key in names or key.removesuffix("_FILE") in names]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    if spec.get("securityContext", {}).get("fsGroup") != spec.get("securityContext", {}).get("runAsUser"):
        problems.append("the pod's fsGroup is not its user's: the files would be unreadable or too readable")
    for container in spec["containers"]:
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                problems.append(f"{container['name']}: envFrom a Secret")
        for variable in container.get("env", []):
            if "secretKeyRef" in variable.get("valueFrom", {}) or variable["name"] in names:
                problems.append(f"{container['name']}: {variable['name']} as a variable")
        mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == folder]
        projected = volumes.get(mounts[0]["name"], {}).get("projected", {}) if mounts else {}
        sources = [source["secret"]["name"] for source in projected.get("sources", []) if "secret" in source]
        if not (mounts and mounts[0].get("readOnly") and sources == [SECRET, redis_secret(workload)]):
            problems.append(f"{container['name']}: {SECRET} and {redis_secret(workload)} are not mounted "
                            f"read-only at {folder}")
        elif projected.get("defaultMode", 0o644) & 0o007:
            problems.append(f"{container['name']}: the secret files are readable by others")
    return problems


def test_no_pod_gets_a_secret_as_a_variable_only_as_a_file_of_the_mounted_secret():
    config = of_kind("ConfigMap")[CONFIG_MAP]["data"]
    assert config["AUTEUR_SECRETS_DIR"] == "/etc/auteur/secrets"
    # And the data stores are reached over TLS: production refuses plain text (auteur/core/tls.py).
    assert "AUTEUR_ALLOW_PLAINTEXT_DATASTORES" not in config
    workloads = {**of_kind("Deployment"), **of_kind("Job")}
    assert {name: secret_problems(w, config) for name, w in workloads.items()} == {name: [] for name in workloads}
    # The check catches each way a secret could come back as a variable, or its files be open to all.
    api = workloads["auteur-api"]
    for breaks in (
        lambda c, s: c["envFrom"].append({"secretRef": {"name": SECRET}}),
        lambda c, s: c.setdefault("env", []).append(
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "DJANGO_SECRET_KEY"}}}),
        lambda c, s: c.setdefault("env", []).append({"name": "DJANGO_SECRET_KEY", "value": "x"}),
        lambda c, s: c.pop("volumeMounts"),
        lambda c, s: s["volumes"][0]["projected"].update(defaultMode=0o444),
        lambda c, s: s["volumes"][0]["projected"]["sources"][1]["secret"].update(name="auteur-redis-worker"),
        lambda c, s: s["securityContext"].pop("fsGroup"),
    ):
        broken = copy.deepcopy(api)
        breaks(pod_spec(broken)["containers"][0], pod_spec(broken))
        assert secret_problems(broken, config), breaks
    with_file = {**config, "STRIPE_SECRET_KEY_FILE": "/x"}
    assert secret_problems(api, with_file) == ["the ConfigMap sets STRIPE_SECRET_KEY_FILE"]
    # Flower reads its login from the same folder, through its configuration file.
    flower = pod_spec(of_kind("Deployment")["auteur-flower"])["containers"][0]["command"]
    assert "--conf=deploy/flowerconfig.py" in flower


def test_flowers_configuration_reads_its_login_from_the_secrets_folder(tmp_path, monkeypatch):
    conf = str(REPO_ROOT / "deploy" / "flowerconfig.py")
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    monkeypatch.setenv("AUTEUR_SECRETS_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match="Flower does not run without a login"):
        runpy.run_path(conf)
    (tmp_path / "FLOWER_BASIC_AUTH").write_text("ops:from-the-secret\n")
    assert runpy.run_path(conf)["basic_auth"] == ["ops:from-the-secret"]


def test_every_command_names_code_that_exists():
    commands = management_commands()
    for name, container in containers():
        argv = container["command"]
        if argv[:3] == ["python", "manage.py", "metrics_exporter"] and "metrics_exporter" not in commands:
            continue  # the exporter's command ships with the metrics code; checked once it is there
        assert command_problems(argv) == [], name
    assert argv_of("python manage.py gpu_events") in [c["command"] for _n, c in containers()]
    exporter = pod_spec(of_kind("Deployment")["auteur-exporter"])["containers"][0]
    assert exporter["command"] == ["python", "manage.py", "metrics_exporter"]


def test_images_are_the_one_pinned_release():
    kustomization = check_k8s.kustomization()
    (pin,) = kustomization["images"]
    assert pin["name"] == IMAGE_REPO
    assert re.fullmatch(r"\d+\.\d+\.\d+", pin["newTag"])
    for name, container in containers():
        assert container["image"] == f"{IMAGE_REPO}:{pin['newTag']}", name


def test_every_container_has_requests_limits_and_config_by_name():
    config_maps = set(of_kind("ConfigMap"))
    for name, container in containers():
        resources = container["resources"]
        # Ephemeral storage too: temp files (media fetched to disk, ffmpeg's outputs) and logs are
        # bounded per pod, so one pod cannot fill its node's disk and get its neighbours evicted.
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory", "ephemeral-storage"}, name
        sources = {next(iter(source)): next(iter(source.values()))["name"] for source in container["envFrom"]}
        assert sources == {"configMapRef": CONFIG_MAP}, name
        assert all("valueFrom" in variable for variable in container.get("env", [])), f"{name}: a literal value"
    assert CONFIG_MAP in config_maps
    # KEDA logs in as its own Redis user, which may read the queues' lengths only.
    for auth in of_kind("TriggerAuthentication").values():
        refs = {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
        assert refs == {"address": ("auteur-redis-keda", "REDIS_ADDRESS"),
                        "username": ("auteur-redis-keda", "REDIS_USERNAME"),
                        "password": ("auteur-redis-keda", "REDIS_PASSWORD")}


def test_disruption_budgets_select_existing_replicated_deployments():
    deployments = of_kind("Deployment")
    budgets = of_kind("PodDisruptionBudget")
    for name, budget in budgets.items():
        labels = budget["spec"]["selector"]["matchLabels"]
        matches = [d for d in deployments.values() if d["spec"]["selector"]["matchLabels"] == labels]
        assert len(matches) == 1, name
    assert set(budgets) == {"auteur-api", "auteur-asgi", *workers()}
    assert not SINGLETONS & set(budgets), "a singleton's budget would block every node drain"


def test_migrations_run_as_a_job():
    job = of_kind("Job")["auteur-migrate"]
    assert pod_spec(job)["containers"][0]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert pod_spec(job)["restartPolicy"] == "Never"



def test_every_pod_runs_without_a_service_account_token():
    # No pod talks to the Kubernetes API: a token mounted anyway is a credential for whoever
    # takes over a process (a crafted media file in a worker, say).
    for name, workload in {**of_kind("Deployment"), **of_kind("Job")}.items():
        assert pod_spec(workload)["automountServiceAccountToken"] is False, name


def test_forwarded_headers_are_believed_from_the_proxy_only():
    allowed = of_kind("ConfigMap")[CONFIG_MAP]["data"]["FORWARDED_ALLOW_IPS"]
    assert "*" not in allowed
    for entry in allowed.split(","):
        ipaddress.ip_network(entry.strip(), strict=False)
    for name, container in containers():
        assert "--forwarded-allow-ips" not in container["command"], f"{name}: FORWARDED_ALLOW_IPS decides"
    assert "--proxy-headers" in pod_spec(of_kind("Deployment")["auteur-asgi"])["containers"][0]["command"]


# ----------------------------------------------------------------------------- network policies


def pod_labels() -> dict[str, dict[str, str]]:
    workloads = {**of_kind("Deployment"), **of_kind("Job")}
    return {name: w["spec"]["template"]["metadata"]["labels"] for name, w in workloads.items()}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
                   "Exists": key in labels, "DoesNotExist": key not in labels}[operator]
        if not present:
            return False
    return True


def policies_for(labels: dict[str, str], kind: str) -> list[dict[str, Any]]:
    return [p for p in of_kind("NetworkPolicy").values()
            if kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], labels)]


def _public(block: dict[str, Any]) -> bool:
    network = ipaddress.ip_network(block["cidr"])
    excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
    if network.prefixlen != 0:
        return False
    for private in NON_PUBLIC:
        if private.version == network.version:
            # The whole private network lies inside one excepted block.
            assert any(e.version == private.version and private.network_address in e
                       and private.broadcast_address in e for e in excepted), f"{block['cidr']} lets {private} through"
    return True


def egress_paths(rule: dict[str, Any]) -> set[str]:
    """What one egress rule opens, in EGRESS's words; anything else fails the test."""
    ports = [(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports", [])]
    assert ports, f"an egress rule without ports opens everything: {rule}"
    found = set()
    for peer in rule["to"]:
        if "ipBlock" not in peer:
            assert peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}, peer
            assert sorted(ports) == [("TCP", 53), ("UDP", 53)]
            found.add("dns")
        elif _public(peer["ipBlock"]):
            assert ports in ([("TCP", 443)], [("TCP", None)]), ports
            found.add("public-https" if ports == [("TCP", 443)] else "public-any-port")
        else:
            # A datastore's own addresses, on its own port.
            block = ipaddress.ip_network(peer["ipBlock"]["cidr"])
            assert METADATA_ENDPOINT not in block and block.prefixlen >= 16, block
            [(protocol, port)] = ports
            assert protocol == "TCP" and port in DATASTORE_PORTS, ports
            found.add(DATASTORE_PORTS[port])
    return found


def test_every_pod_starts_from_nothing_in_and_nothing_out():
    deny = [p for p in of_kind("NetworkPolicy").values()
            if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}]
    assert len(deny) == 1 and "ingress" not in deny[0]["spec"] and "egress" not in deny[0]["spec"]
    assert "network-policies.yaml" in check_k8s.kustomization()["resources"]


def test_each_component_reaches_only_what_it_needs():
    """Above all the workers, which parse untrusted media: databases, DNS and public HTTPS, nothing
    else of the cluster or the private network, never the cloud's metadata endpoint."""
    labels = pod_labels()
    assert set(labels) == set(EGRESS)
    for name, pod in labels.items():
        reached = {path for policy in policies_for(pod, "Egress")
                   for rule in policy["spec"].get("egress", []) for path in egress_paths(rule)}
        assert reached == EGRESS[name], name


def test_only_the_proxy_and_prometheus_connect_in():
    ports = {name: {p["containerPort"] for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
             for name, w in of_kind("Deployment").items()}
    for name, pod in pod_labels().items():
        allowed = set()
        for policy in policies_for(pod, "Ingress"):
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("ports") and rule.get("from"), f"{policy['metadata']['name']}: open to all"
                for peer in rule["from"]:
                    assert set(peer) == {"namespaceSelector"}, peer
                    namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    allowed |= {(namespace, port["port"]) for port in rule["ports"]}
        assert allowed == INGRESS.get(name, set()), name
        assert {port for _namespace, port in allowed} <= ports.get(name, set()), name
