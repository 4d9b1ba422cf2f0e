"""The classic target: the plan and the deploy playbook's variables, and `moorage render --target classic`."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from moorage.deploy.releases import draft
from moorage.errors import BadInput
from moorage.inventory import load_inventory
from moorage.plan import place, plan_service
from moorage.spec.loader import load_spec
from moorage.targets import classic
from moorage.targets.classic import Variables, deploy_variables, playbook_extravars

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SPEC = REPO / "examples" / "hello" / "moorage.yml"
INVENTORY = """\
[app]
app1 ansible_host=10.66.0.11
app2 ansible_host=10.66.0.12

[lb]
lb1 ansible_host=10.66.0.2
"""
DOCKER_SPEC = """\
apiVersion: moorage/v1
kind: Service
metadata: {name: api, labels: {team: web}}
spec:
  runtime: docker
  image: api:2.1
  imageArchive: images/api.tar
  replicas: 1
  placement: {group: app}
  port: 9000
  health: {command: ["/bin/check", "${PORT}"], interval: 500ms, timeout: 250ms, deregisterAfter: 1m30s}
  resources: {memory: 1Gi, cpu: "2"}
  volumes: [{name: data, path: /srv/data}]
  update: {maxParallel: 1, minHealthy: 0s, healthyDeadline: 90s, autoRevert: false}
  stop: {signal: SIGINT, gracePeriod: 1m}
"""


def render(spec_file: Path, inventory: Path) -> Variables:
    """What `moorage render --target classic` prints: the spec placed on the inventory's group."""
    return classic.render(load_spec(spec_file), load_inventory(inventory))[1]


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.ini"
    path.write_text(INVENTORY)
    return path


@pytest.fixture
def docker_spec(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "api.tar").write_bytes(b"not really an image, but a file")
    path = tmp_path / "api.yml"
    path.write_text(DOCKER_SPEC)
    return path


def test_example_service_variables(inventory: Path) -> None:
    variables = render(EXAMPLE_SPEC, inventory)
    assert variables["moorage_service"] == {
        "name": "hello",
        "labels": {},
        "runtime": "systemd",
        "artifact": str(REPO / "examples" / "hello" / "app"),
        "command": ["python3", "app.py", "--port", "${PORT}"],  # systemd expands ${PORT} from the unit's env
        "image": None,
        "image_archive": None,
        "replicas": 3,
        "group": "app",
        "port": 8080,
        "env": {"GREETING": "hi"},
        "secrets": [],
        "health": {
            "kind": "http",
            "http": "/healthz",
            "tcp": False,
            "command": None,
            "interval": "2s",
            "interval_seconds": 2,
            "timeout": "1s",
            "timeout_seconds": 1,
            "deregister_after": "5m",
            "deregister_after_seconds": 300,
        },
        "routes": [{"host": "hello.example.test", "path": "/"}],
        "metrics": {"path": "/metrics"},
        "resources": {"memory": "256Mi", "memory_max": 268435456, "cpu": "500m", "cpu_quota": "50%", "cpus": 0.5},
        "volumes": [],
        "update": {
            "max_parallel": 1,
            "min_healthy": "3s",
            "min_healthy_seconds": 3,
            "healthy_deadline": "1m",
            "healthy_deadline_seconds": 60,
            "auto_revert": True,
            "canary": 0,
        },
        "stop": {"signal": "SIGTERM", "grace_period": "30s", "grace_period_seconds": 30},
    }


def test_instances_are_the_plan_on_the_inventory_group(inventory: Path) -> None:
    service = load_spec(EXAMPLE_SPEC).model
    instances = render(EXAMPLE_SPEC, inventory)["moorage_instances"]
    expected = place(service, load_inventory(inventory).hosts("app"))
    assert instances == [{"id": i.id, "index": i.index, "host": i.host, "address": i.address, "port": i.port} for i in expected]
    # three instances on two hosts (maxPerHost 2): one host runs two, on 8080 and 8081
    ports_by_host: dict[str, list[int]] = {}
    for instance in instances:
        ports_by_host.setdefault(instance["host"], []).append(instance["port"])
    assert sorted(sorted(ports) for ports in ports_by_host.values()) == [[8080], [8080, 8081]]
    assert {i["address"] for i in instances} == {"10.66.0.11", "10.66.0.12"}


def test_docker_service_variables(docker_spec: Path, inventory: Path) -> None:
    service = render(docker_spec, inventory)["moorage_service"]
    assert service["labels"] == {"team": "web"}
    assert (service["runtime"], service["image"], service["artifact"]) == ("docker", "api:2.1", None)
    assert service["image_archive"] == str(docker_spec.parent / "images" / "api.tar")
    assert service["health"]["command"] == ["/bin/check", "${PORT}"]
    assert (service["health"]["interval"], service["health"]["interval_seconds"]) == ("500ms", 0.5)
    assert (service["health"]["deregister_after"], service["health"]["deregister_after_seconds"]) == ("90s", 90)
    assert service["resources"] == {"memory": "1Gi", "memory_max": 1073741824, "cpu": "2", "cpu_quota": "200%", "cpus": 2.0}
    assert service["volumes"] == [{"name": "data", "path": "/srv/data"}]
    assert (service["update"]["min_healthy_seconds"], service["update"]["auto_revert"]) == (0, False)
    assert service["stop"] == {"signal": "SIGINT", "grace_period": "1m", "grace_period_seconds": 60}


def test_no_resources_are_none(tmp_path: Path, inventory: Path) -> None:
    spec_file = tmp_path / "plain.yml"
    spec_file.write_text(DOCKER_SPEC.replace('  resources: {memory: 1Gi, cpu: "2"}\n', "").replace("  imageArchive: images/api.tar\n", ""))
    resources = render(spec_file, inventory)["moorage_service"]["resources"]
    assert resources == {"memory": None, "memory_max": None, "cpu": None, "cpu_quota": None, "cpus": None}


def test_group_missing_from_the_inventory_is_bad_input(tmp_path: Path) -> None:
    other = tmp_path / "other.ini"
    other.write_text("[workers]\nw1\n")
    with pytest.raises(BadInput, match=r"no group 'app' in the inventory \(groups: workers\)"):
        render(EXAMPLE_SPEC, other)


def test_playbook_extravars_are_the_release_and_the_run(inventory: Path, tmp_path: Path) -> None:
    spec = load_spec(EXAMPLE_SPEC)
    plan = plan_service(spec.model, load_inventory(inventory).hosts("app"), canaries=1)
    release = replace(draft("7", "abc", spec, plan), number=9, files_release=4)
    secrets = tmp_path / "secrets.yml"
    extravars = playbook_extravars(
        release, "switch", plan.instances[:1], consul_vault_file=Path("/state/consul.vault.yml"), secrets_file=secrets
    )
    assert extravars == {
        **deploy_variables(spec, plan.all_instances),  # the planned instances and the canary
        "moorage_group": "app",
        "moorage_phase": "switch",
        "moorage_batch": ["hello-1"],
        "moorage_release": 9,
        "moorage_version": "7",
        "moorage_files_release": 4,
        "moorage_consul_vault_file": "/state/consul.vault.yml",
        "moorage_secrets_file": str(secrets),
    }
    assert [instance["id"] for instance in extravars["moorage_instances"]] == ["hello-1", "hello-2", "hello-3", "hello-4"]
    removal = playbook_extravars(release, "remove", plan.canaries, instances=plan.canaries)
    assert removal["moorage_instances"] == [extravars["moorage_instances"][-1]] and "moorage_secrets_file" not in removal


# --- the command -----------------------------------------------------------------------


def moorage(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moorage", *arguments], capture_output=True, text=True, cwd=REPO, env=env)


def test_render_classic_prints_the_variables_as_yaml_and_a_table_for_people(inventory: Path) -> None:
    result = moorage("render", str(EXAMPLE_SPEC), "--target", "classic", "-i", str(inventory))
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == render(EXAMPLE_SPEC, inventory)
    for instance_id in ("hello-1", "hello-2", "hello-3"):
        assert instance_id in result.stderr


def test_render_classic_json_and_files(inventory: Path, tmp_path: Path) -> None:
    as_json = moorage("render", str(EXAMPLE_SPEC), "--target", "classic", "-i", str(inventory), "--output", "json")
    assert as_json.returncode == 0, as_json.stderr
    expected = render(EXAMPLE_SPEC, inventory)
    assert yaml.safe_load(as_json.stdout) == expected
    written = moorage("render", str(EXAMPLE_SPEC), "--target", "classic", "-i", str(inventory), "--output-dir", str(tmp_path / "out"))
    assert written.returncode == 0, written.stderr
    assert yaml.safe_load((tmp_path / "out" / "hello.yml").read_text()) == expected


def test_render_classic_without_inventory_or_lab_says_what_to_do(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MOORAGE_STATE_DIR": str(tmp_path / "state")}
    result = moorage("render", str(EXAMPLE_SPEC), "--target", "classic", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "moorage: error: no inventory: pass -i INVENTORY, set MOORAGE_INVENTORY or start the lab with 'moorage lab up'"
    )


def test_render_classic_with_too_few_hosts_is_bad_input(tmp_path: Path) -> None:
    small = tmp_path / "small.ini"
    small.write_text("[app]\nonly1\n")
    result = moorage("render", str(EXAMPLE_SPEC), "--target", "classic", "-i", str(small))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "moorage: error: spec.replicas: 3 instances do not fit group 'app': 1 host(s) x maxPerHost 2 = 2 at most"
    )
    assert result.stdout == ""


def test_render_classic_with_a_missing_inventory_names_it(tmp_path: Path) -> None:
    result = moorage("render", str(EXAMPLE_SPEC), "--target", "classic", "-i", str(tmp_path / "gone.ini"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"moorage: error: {tmp_path / 'gone.ini'}: inventory not found"


LAB_STYLE_INVENTORY = """\
# like the lab's hosts.yml: every name and value comes from YAML
all:
  vars: {ansible_user: root}
  hosts:
    lab-1: {ansible_host: 10.213.0.11}
    lab-2: {ansible_host: 10.213.0.12}
  children:
    app:
      hosts: {lab-1: null, lab-2: null}
"""


def test_render_classic_on_a_yaml_inventory_like_the_labs(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(LAB_STYLE_INVENTORY)
    result = moorage("render", str(EXAMPLE_SPEC), "--target", "classic", "-i", str(inventory))
    assert result.returncode == 0, result.stderr
    instances = yaml.safe_load(result.stdout)["moorage_instances"]
    addresses = {"lab-1": "10.213.0.11", "lab-2": "10.213.0.12"}
    assert [instance["id"] for instance in instances] == ["hello-1", "hello-2", "hello-3"]
    assert all(instance["address"] == addresses[instance["host"]] for instance in instances), instances
    assert {instance["host"] for instance in instances} == {"lab-1", "lab-2"}


def test_moorage_inventory_names_the_inventory_when_there_is_no_option(inventory: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MOORAGE_STATE_DIR": str(tmp_path / "state"), "MOORAGE_INVENTORY": str(inventory)}
    result = moorage("render", str(EXAMPLE_SPEC), "--target", "classic", "--output", "json", env=env)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == render(EXAMPLE_SPEC, inventory)
    other = tmp_path / "other.ini"
    other.write_text("[app]\nother1\nother2\n")
    given = moorage("render", str(EXAMPLE_SPEC), "--target", "classic", "--output", "json", "-i", str(other), env=env)
    assert {instance["host"] for instance in yaml.safe_load(given.stdout)["moorage_instances"]} == {"other1", "other2"}  # -i wins
    kubernetes = moorage("render", str(EXAMPLE_SPEC), "--target", "kubernetes", env=env)
    assert kubernetes.returncode == 0, kubernetes.stderr  # the variable is no -i: Kubernetes ignores it
