"""The kubernetes target: strict schema validation (kubernetes-validate) and the field mappings."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from moorage.errors import BadInput
from moorage.spec.model import ServiceSpec, semantic_errors
from moorage.targets.kubernetes import render

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SPEC = REPO / "examples" / "hello" / "moorage.yml"
KUBERNETES_VERSIONS = ["1.30", kubernetes_validate.latest_version()]

MINIMAL = {"runtime": "systemd", "artifact": "./app", "command": ["./worker"]}
FULL = {
    "runtime": "systemd",
    "artifact": "./app",
    "command": ["python3", "app.py", "--port", "${PORT}", "--name", "${MOORAGE_INSTANCE}"],
    "replicas": 3,
    "placement": {"group": "app", "maxPerHost": 1},
    "port": 8080,
    "env": {"GREETING": "hi", "DEBUG": "on", "SELF_URL": "http://localhost:${PORT}/"},
    "secrets": ["API_TOKEN", "DB_PASSWORD"],
    "health": {"http": "/healthz", "interval": "2s", "timeout": "1s"},
    "routes": [
        {"host": "hello.example.test", "path": "/"},
        {"host": "hello.example.test", "path": "/api"},
        {"host": "*.hello.test"},
    ],
    "metrics": {"path": "/metrics"},
    "resources": {"memory": "256Mi", "cpu": "500m"},
    "volumes": [{"name": "data", "path": "/var/lib/hello"}, {"name": "cache", "path": "/var/cache/hello"}],
    "update": {"maxParallel": 2, "minHealthy": "5s", "healthyDeadline": "60s"},
    "stop": {"gracePeriod": "45s"},
}
DOCKER_TCP = {
    "runtime": "docker",
    "image": "registry.example.test:5000/team/hello:1.4.2",
    "command": ["serve", "--listen", ":${PORT}"],
    "replicas": 2,
    "port": 9000,
    "health": {"tcp": True, "interval": "5s", "timeout": "2s"},
    "update": {"canary": 1},
}
COMMAND_HEALTH = {
    "runtime": "systemd",
    "artifact": "./app",
    "command": ["./worker"],
    "replicas": 2,
    "health": {"command": ["./check", "--queue", "jobs"], "interval": "30s", "timeout": "10s"},
}


def service(body: dict[str, Any], name: str = "hello") -> ServiceSpec:
    spec = ServiceSpec.model_validate({"apiVersion": "moorage/v1", "kind": "Service", "metadata": {"name": name}, "spec": body})
    assert semantic_errors(spec) == []  # the examples themselves must be valid specs
    return spec


def by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [manifest for manifest in manifests if manifest["kind"] == kind]


def only(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [manifest] = by_kind(manifests, kind)
    return manifest


def container_of(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    workload = next(m for m in manifests if m["kind"] in ("Deployment", "StatefulSet"))
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {entry["name"]: entry.get("value", entry.get("valueFrom")) for entry in container["env"]}


def test_the_newest_schema_is_newer_than_1_30() -> None:
    assert KUBERNETES_VERSIONS[1].split(".")[:2] > ["1", "30"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("body", [MINIMAL, FULL, DOCKER_TCP, COMMAND_HEALTH], ids=["minimal", "full", "docker-tcp", "command-health"])
def test_every_manifest_passes_strict_schema_validation(body: dict[str, Any], version: str) -> None:
    for manifest in render(service(body)):
        kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_strict_validation_catches_a_misspelt_field(version: str) -> None:
    """The check above can fail: a field the schema does not know is refused."""
    deployment = copy.deepcopy(only(render(service(MINIMAL)), "Deployment"))
    deployment["spec"]["replica"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


def test_minimal_spec_is_a_service_a_deployment_and_its_budget_only() -> None:
    assert [m["kind"] for m in render(service(MINIMAL))] == ["Service", "Deployment", "PodDisruptionBudget"]


def test_a_spec_without_port_listens_on_8080_in_every_pod() -> None:
    """On VMs it gets a free port per instance; a pod has its own IP, so one fixed port serves (PORT says which)."""
    manifests = render(service(dict(MINIMAL, metrics={"path": "/metrics"})))
    assert only(manifests, "Service")["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert container_of(manifests)["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert {"name": "PORT", "value": "8080"} in container_of(manifests)["env"]
    assert only(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "8080"


def test_full_spec_objects_in_apply_order() -> None:
    assert [(m["kind"], m["metadata"]["name"]) for m in render(service(FULL))] == [
        ("ConfigMap", "hello-env"),
        ("Service", "hello"),
        ("Service", "hello-headless"),
        ("StatefulSet", "hello"),
        ("PodDisruptionBudget", "hello"),
        ("Ingress", "hello-hello.example.test"),
        ("Ingress", "hello-wildcard.hello.test"),
    ]


def test_volumes_make_a_stateful_set_with_a_headless_service_and_claim_templates() -> None:
    manifests = render(service(FULL))
    stateful_set = only(manifests, "StatefulSet")
    assert stateful_set["spec"]["serviceName"] == "hello-headless"
    headless = next(m for m in by_kind(manifests, "Service") if m["metadata"]["name"] == "hello-headless")
    assert headless["spec"]["clusterIP"] == "None"
    claims = stateful_set["spec"]["volumeClaimTemplates"]
    assert [claim["metadata"]["name"] for claim in claims] == ["data", "cache"]
    assert all(claim["spec"]["accessModes"] == ["ReadWriteOnce"] for claim in claims)
    assert container_of(manifests)["volumeMounts"] == [
        {"name": "data", "mountPath": "/var/lib/hello"},
        {"name": "cache", "mountPath": "/var/cache/hello"},
    ]


def test_service_selects_the_pods_on_the_named_port() -> None:
    manifests = render(service(FULL))
    kube_service = next(m for m in by_kind(manifests, "Service") if m["metadata"]["name"] == "hello")
    pod_labels = only(manifests, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert kube_service["spec"]["selector"].items() <= pod_labels.items()
    assert kube_service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert container_of(manifests)["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_one_ingress_per_route_host_with_its_paths() -> None:
    ingresses = by_kind(render(service(FULL)), "Ingress")
    rules = [ingress["spec"]["rules"] for ingress in ingresses]
    assert [[rule["host"] for rule in rule_list] for rule_list in rules] == [["hello.example.test"], ["*.hello.test"]]
    paths = rules[0][0]["http"]["paths"]
    assert [(path["path"], path["pathType"]) for path in paths] == [("/", "Prefix"), ("/api", "Prefix")]
    assert paths[0]["backend"] == {"service": {"name": "hello", "port": {"name": "http"}}}


def test_env_without_placeholders_goes_to_a_config_map_read_with_env_from() -> None:
    manifests = render(service(FULL))
    assert only(manifests, "ConfigMap")["data"] == {"GREETING": "hi", "DEBUG": "on"}
    container = container_of(manifests)
    assert container["envFrom"] == [{"configMapRef": {"name": "hello-env"}}]
    assert env_of(container)["SELF_URL"] == "http://localhost:$(PORT)/"  # Kubernetes expands $(VAR) in env


def test_secrets_are_references_by_name_never_values() -> None:
    manifests = render(service(FULL))
    assert by_kind(manifests, "Secret") == []
    env = env_of(container_of(manifests))
    assert env["API_TOKEN"] == {"secretKeyRef": {"name": "hello-secrets", "key": "API_TOKEN"}}
    assert env["DB_PASSWORD"] == {"secretKeyRef": {"name": "hello-secrets", "key": "DB_PASSWORD"}}


def test_builtin_variables_are_set_port_first() -> None:
    container = container_of(render(service(FULL), version="2.0.1"))
    env = env_of(container)
    assert container["env"][0] == {"name": "PORT", "value": "8080"}
    assert env["MOORAGE_SERVICE"] == "hello"
    assert env["MOORAGE_VERSION"] == "2.0.1"
    assert env["MOORAGE_INSTANCE"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_placeholders_in_command_become_kubernetes_syntax_and_literal_dollars_survive() -> None:
    body = dict(MINIMAL, command=["./worker", "--port=${PORT}", "$(not-a-placeholder)", "$HOME"], port=7000)
    assert container_of(render(service(body)))["command"] == ["./worker", "--port=$(PORT)", "$$(not-a-placeholder)", "$HOME"]


def test_http_probes_map_interval_and_timeout() -> None:
    container = container_of(render(service(FULL)))
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert (container[probe]["periodSeconds"], container[probe]["timeoutSeconds"]) == (2, 1)
    # A starting pod gets healthyDeadline (60s) to become healthy: 30 checks 2s apart.
    assert container["startupProbe"]["failureThreshold"] == 30


def test_tcp_probe() -> None:
    container = container_of(render(service(DOCKER_TCP)))
    assert container["readinessProbe"] == {"tcpSocket": {"port": "http"}, "periodSeconds": 5, "timeoutSeconds": 2}
    assert container["livenessProbe"] == container["readinessProbe"]


def test_command_probe_runs_the_command_as_given() -> None:
    container = container_of(render(service(COMMAND_HEALTH)))
    assert container["livenessProbe"]["exec"] == {"command": ["./check", "--queue", "jobs"]}
    assert (container["livenessProbe"]["periodSeconds"], container["livenessProbe"]["timeoutSeconds"]) == (30, 10)


def test_command_probe_with_placeholders_expands_them_in_a_shell_and_nothing_else() -> None:
    tricky = 'a"b$c`d\\e'
    body = dict(MINIMAL, port=8080, health={"command": ["printf", "%s|%s", "port ${PORT}", tricky]})
    probe_command = container_of(render(service(body)))["readinessProbe"]["exec"]["command"]
    assert probe_command[:2] == ["sh", "-c"]
    result = subprocess.run(probe_command, env={"PORT": "8080", "PATH": os.environ["PATH"]}, capture_output=True, text=True, check=True)
    assert result.stdout == f"port 8080|{tricky}"


def test_rolling_update_from_update() -> None:
    deployment = only(
        render(service(dict(MINIMAL, replicas=4, update={"maxParallel": 2, "minHealthy": "5s", "healthyDeadline": "2m"}))), "Deployment"
    )
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2, "maxSurge": 0}}
    assert deployment["spec"]["minReadySeconds"] == 5
    assert deployment["spec"]["progressDeadlineSeconds"] == 120


def test_canary_allows_surge_on_a_deployment_and_partitions_a_stateful_set() -> None:
    assert only(render(service(DOCKER_TCP)), "Deployment")["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 1}
    stateful = only(render(service(dict(FULL, update={"maxParallel": 1, "canary": 1}))), "StatefulSet")
    assert stateful["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "partition": 2}}


def test_start_first_surges_a_deployment_and_keeps_every_pod_until_the_new_ones_are_ready() -> None:
    update = {"maxParallel": 2, "minHealthy": "5s", "healthyDeadline": "2m", "order": "start-first"}
    deployment = only(render(service(dict(MINIMAL, replicas=4, update=update))), "Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 2}
    stop_first = only(render(service(dict(MINIMAL, replicas=4, update=dict(update, order="stop-first")))), "Deployment")
    assert stop_first["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 2, "maxSurge": 0}


def test_disruption_budget_follows_max_parallel() -> None:
    budget = only(render(service(FULL)), "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 2
    assert budget["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "hello", "app.kubernetes.io/instance": "hello"}


def test_resources_are_limits_and_requests() -> None:
    resources = container_of(render(service(FULL)))["resources"]
    assert resources == {"limits": {"memory": "256Mi", "cpu": "500m"}, "requests": {"memory": "256Mi", "cpu": "500m"}}
    assert "resources" not in container_of(render(service(MINIMAL)))


def test_grace_period_and_scrape_annotations() -> None:
    template = only(render(service(FULL)), "StatefulSet")["spec"]["template"]
    assert template["spec"]["terminationGracePeriodSeconds"] == 45
    annotations = template["metadata"]["annotations"]
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/path"], annotations["prometheus.io/port"]) == (
        "true",
        "/metrics",
        "8080",
    )
    assert "prometheus.io/scrape" not in only(render(service(MINIMAL)), "Deployment")["spec"]["template"]["metadata"].get("annotations", {})


def test_changed_env_changes_the_pod_template_so_pods_roll() -> None:
    def template(greeting: str) -> dict[str, Any]:
        return only(render(service(dict(FULL, env={"GREETING": greeting}))), "StatefulSet")["spec"]["template"]

    assert template("hi") != template("hey")


def test_standard_labels_and_the_specs_own_labels_on_every_object() -> None:
    spec = ServiceSpec.model_validate(
        {"apiVersion": "moorage/v1", "kind": "Service", "metadata": {"name": "hello", "labels": {"team": "web"}}, "spec": FULL}
    )
    for manifest in render(spec, version="1.0"):
        assert manifest["metadata"]["labels"] == {
            "team": "web",
            "app.kubernetes.io/name": "hello",
            "app.kubernetes.io/instance": "hello",
            "app.kubernetes.io/managed-by": "moorage",
            "app.kubernetes.io/version": "1.0",
        }


def test_docker_runtime_runs_the_image_with_the_command_as_args_and_the_tag_as_version() -> None:
    container = container_of(render(service(DOCKER_TCP)))
    assert container["image"] == "registry.example.test:5000/team/hello:1.4.2"
    assert container["args"] == ["serve", "--listen", ":$(PORT)"]
    assert "command" not in container  # the image's ENTRYPOINT stays
    assert env_of(container)["MOORAGE_VERSION"] == "1.4.2"


def test_systemd_runtime_runs_the_image_named_after_service_and_version() -> None:
    assert container_of(render(service(FULL), version="1.2.3"))["image"] == "hello:1.2.3"
    assert container_of(render(service(FULL)))["image"] == "hello:latest"


def test_a_name_kubernetes_cannot_take_for_a_service_is_bad_input() -> None:
    with pytest.raises(BadInput, match=r"^metadata\.name: '2fa' must start with a letter"):
        render(service(MINIMAL, name="2fa"))
    with pytest.raises(BadInput, match=r"^metadata\.name: at most 52 characters"):
        render(service(FULL, name="h" * 53))


# --- the command -----------------------------------------------------------------------


def moorage(*arguments: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moorage", *arguments], capture_output=True, text=True, cwd=cwd)


def test_render_prints_a_yaml_stream_kubectl_can_apply() -> None:
    result = moorage("render", str(EXAMPLE_SPEC), "--target", "kubernetes", "--version", "1.0")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in documents] == ["ConfigMap", "Service", "Deployment", "PodDisruptionBudget", "Ingress"]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSIONS[-1], strict=True)


def test_render_json_is_a_kubernetes_list() -> None:
    result = moorage("render", str(EXAMPLE_SPEC), "--target", "kubernetes", "--output", "json")
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert (document["apiVersion"], document["kind"], len(document["items"])) == ("v1", "List", 5)


def test_render_into_a_directory_writes_one_file_per_object(tmp_path: Path) -> None:
    result = moorage("render", str(EXAMPLE_SPEC), "--target", "kubernetes", "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    files = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert files == [
        "01-configmap-hello-env.yaml",
        "02-service-hello.yaml",
        "03-deployment-hello.yaml",
        "04-poddisruptionbudget-hello.yaml",
        "05-ingress-hello-hello.example.test.yaml",
    ]
    assert yaml.safe_load((tmp_path / "out" / "03-deployment-hello.yaml").read_text())["kind"] == "Deployment"


def test_render_a_bad_spec_exits_2_with_located_errors_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    spec_file = tmp_path / "moorage.yml"
    spec_file.write_text(EXAMPLE_SPEC.read_text().replace("interval: 2s", "interval: often"))
    result = moorage("render", str(spec_file), "--target", "kubernetes")
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{spec_file}:" in result.stderr and ": error: spec.health.interval:" in result.stderr
    assert "Traceback" not in result.stderr


def test_render_kubernetes_refuses_an_inventory() -> None:
    result = moorage("render", str(EXAMPLE_SPEC), "--target", "kubernetes", "-i", "hosts.ini")
    assert result.returncode == 2
    assert "-i/--inventory is for --target classic" in result.stderr
