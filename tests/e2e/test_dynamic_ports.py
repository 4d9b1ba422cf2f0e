"""Dynamic ports on the session lab: two services without `port` on the same hosts, no numbers agreed.

``portless-a`` and ``portless-b`` run examples/hello's app with `port` left out, each with its own
route host, 4 instances each on the 4 hosts of group ``app``. The inventory is a copy of the lab's
with ``moorage_dynamic_ports: "20100-20199"`` added (the platform's range), used with the
platform's Consul token in ``CONSUL_HTTP_TOKEN`` as another controller would. The tests run in file order:
both deployed at the same moment -> both answer through NGINX by Host -> Consul, `moorage status` and Prometheus show
distinct ports from the range on every host -> `moorage plan` and a re-deploy of a new version keep
every instance's port -> a canary beside its primary gets a port of its own -> a fixed port that a
dynamic instance holds is refused before anything is touched. Everything is real: the CLI, the
deploy agent over SSH, Consul, NGINX, Prometheus. At the end both services are scaled to 0.

Traffic goes only to the lab's lb host (from this host, ``Host:`` set to the route's name).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from example_specs import example_spec
from moorage_cli import Run
from platform_cli import Platform
from ruamel.yaml import YAML
from waiting import eventually

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MOORAGE = str(Path(sys.executable).parent / "moorage")
SERVICES = ("portless-a", "portless-b")
RANGE = (20100, 20199)
REPLICAS = 4


def route_host(service: str) -> str:
    return f"{service}.example.test"


@dataclass
class Portless:
    platform: Platform
    work: Path
    inventory: Path

    @property
    def lb(self) -> str:
        return self.platform.lab.group("lb")[0].address

    def spec(self, service: str, *, replicas: int = REPLICAS, port: int | None = None) -> Path:
        """examples/hello/moorage.yml as SERVICE: no `port` (or the one given), its own route host, quick health gates."""
        text = example_spec("hello", {
            "name: hello": f"name: {service}",
            "artifact: ./app": f"artifact: {REPO / 'examples/hello/app'}",
            "replicas: 3": f"replicas: {replicas}",
            "  port: 8080\n": "" if port is None else f"  port: {port}\n",
            "host: hello.example.test": f"host: {route_host(service)}",
            "{maxParallel: 1, minHealthy: 3s, healthyDeadline: 60s}": "{maxParallel: 2, minHealthy: 1s, healthyDeadline: 30s}",
        })  # fmt: skip
        path = self.work / f"{service}{'' if port is None else f'-{port}'}.yml"
        path.write_text(text)
        return path

    @property
    def env(self) -> dict[str, str]:
        """The platform's secrets are kept per inventory path: this copy reaches Consul as any other controller would."""
        return {**os.environ, "CONSUL_HTTP_TOKEN": self.platform.management_token}

    def moorage(self, *args: str) -> Run:
        completed = subprocess.run([MOORAGE, *args, "-i", str(self.inventory)], capture_output=True, text=True, timeout=900, env=self.env)
        return Run(tuple(args), completed.returncode, completed.stdout, completed.stderr)

    def deploy(self, service: str, version: str, *extra: str) -> Run:
        run = self.moorage("deploy", str(self.spec(service)), "--version", version, "--output", "json", *extra)
        assert run.returncode == 0, f"deploy {service} {version} failed: {run.stdout[-2000:]} {run.stderr[-2000:]}"
        return run

    def catalog(self, service: str) -> dict[str, tuple[str, int]]:
        """instance -> (host, port) as Consul's catalog has it."""
        response = requests.get(
            f"{self.platform.consul_api('lab-1')}/catalog/service/{service}",
            headers={"X-Consul-Token": self.platform.management_token},
            timeout=10,
        )
        response.raise_for_status()
        return {entry["ServiceID"]: (entry["ServiceMeta"].get("host", entry["Node"]), entry["ServicePort"]) for entry in response.json()}

    def status(self, service: str) -> list[dict[str, Any]]:
        run = self.moorage("status", service, "--output", "json")
        assert run.returncode == 0, run.stderr
        return list(run.result()["instances"])

    def answers(self, service: str, count: int = 24) -> list[str]:
        return [requests.get(f"http://{self.lb}/", headers={"Host": route_host(service)}, timeout=10).text.strip() for _ in range(count)]


def answering_instances(answers: list[str]) -> set[str]:
    return {match.group(1) for answer in answers if (match := re.search(r"from (\S+),", answer))}


@pytest.fixture(scope="module")
def portless(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portless]:
    work = tmp_path_factory.mktemp("dynamic-ports")
    yaml = YAML()
    inventory = yaml.load(platform.lab.inventory.read_text())
    inventory["all"]["vars"]["moorage_dynamic_ports"] = f"{RANGE[0]}-{RANGE[1]}"
    site = work / "hosts.yml"
    with site.open("w") as file:
        yaml.dump(inventory, file)
    yield Portless(platform, work, site)
    for service in SERVICES:  # leave the shared lab's hosts as they were (the releases stay in Consul)
        Portless(platform, work, site).moorage("scale", f"{service}=0")


@pytest.fixture(scope="module")
def v1(portless: Portless) -> dict[str, Run]:
    """Both services deployed at the same moment, by two people who agreed on no port."""
    started = {
        service: subprocess.Popen(
            [MOORAGE, "deploy", str(portless.spec(service)), "--version", "1", "--output", "json", "-i", str(portless.inventory)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=portless.env,
        )
        for service in SERVICES
    }
    runs = {}
    for service, process in started.items():
        stdout, stderr = process.communicate(timeout=900)
        runs[service] = Run(("deploy", service), process.returncode, stdout, stderr)
        assert process.returncode == 0, f"deploy {service} 1 failed: {stdout[-2000:]} {stderr[-2000:]}"
    return runs


@pytest.fixture(scope="module")
def ports_v1(portless: Portless, v1: dict[str, Run]) -> dict[str, dict[str, tuple[str, int]]]:
    return {service: portless.catalog(service) for service in SERVICES}


def test_both_services_answer_through_nginx_by_their_own_host_header(portless: Portless, v1: dict[str, Run]) -> None:
    for service in SERVICES:
        answers = portless.answers(service)
        assert all(answer.endswith("version 1") for answer in answers), answers
        assert answering_instances(answers) == {f"{service}-{n}" for n in range(1, REPLICAS + 1)}, answers


Ports = dict[str, dict[str, tuple[str, int]]]  # service -> instance -> (host, port)


def test_consul_shows_ports_from_the_range_distinct_on_every_host(portless: Portless, ports_v1: Ports) -> None:
    used: dict[str, list[tuple[int, str]]] = {}
    for service, instances in ports_v1.items():
        assert set(instances) == {f"{service}-{n}" for n in range(1, REPLICAS + 1)}
        for instance, (host, port) in instances.items():
            assert RANGE[0] <= port <= RANGE[1], (instance, port)
            used.setdefault(host, []).append((port, instance))
    assert len(used) == REPLICAS  # both services on the same 4 hosts
    for host, ports in used.items():
        assert len({port for port, _ in ports}) == len(ports) == 2, f"{host}: {ports}"


def test_status_shows_the_ports_consul_has(portless: Portless, ports_v1: dict[str, dict[str, tuple[str, int]]]) -> None:
    for service in SERVICES:
        rows = portless.status(service)
        assert {row["instance"]: (row["host"], row["port"]) for row in rows} == ports_v1[service]
        assert {row["health"] for row in rows} == {"passing"}


def test_prometheus_scrapes_every_instance_on_its_port(portless: Portless, ports_v1: dict[str, dict[str, tuple[str, int]]]) -> None:
    api = portless.platform.prometheus_api()
    addresses = {host.name: host.address for host in portless.platform.lab.hosts}
    expected = {f"http://{addresses[host]}:{port}/metrics" for instances in ports_v1.values() for host, port in instances.values()}

    def all_up() -> set[str] | None:
        targets = requests.get(f"{api}/targets", params={"state": "active"}, timeout=10).json()["data"]["activeTargets"]
        ours = {target["scrapeUrl"] for target in targets if target["labels"].get("job") in SERVICES and target["health"] == "up"}
        return ours if ours == expected else None

    eventually(all_up, within=90, every=2, what="every portless instance scraped up on its own port")


def test_plan_of_a_new_version_replaces_every_instance_on_the_port_it_has(
    portless: Portless, ports_v1: dict[str, dict[str, tuple[str, int]]]
) -> None:
    run = portless.moorage("plan", str(portless.spec("portless-a")), "--version", "2", "--output", "json")
    assert run.returncode == 4, run.stderr  # changes pending
    changes = run.result()["changes"]
    assert {change["instance"]: (change["host"], change["port"]) for change in changes} == ports_v1["portless-a"]
    assert {change["action"] for change in changes} == {"replace"}


def test_a_new_version_keeps_every_instance_on_its_port(portless: Portless, ports_v1: dict[str, dict[str, tuple[str, int]]]) -> None:
    portless.deploy("portless-a", "2")
    assert portless.catalog("portless-a") == ports_v1["portless-a"]
    assert portless.catalog("portless-b") == ports_v1["portless-b"]
    answers = portless.answers("portless-a")
    assert all(answer.endswith("version 2") for answer in answers), answers
    assert answering_instances(answers) == {f"portless-a-{n}" for n in range(1, REPLICAS + 1)}
    assert all(answer.endswith("version 1") for answer in portless.answers("portless-b"))


def test_a_canary_beside_its_primary_answers_on_a_port_of_its_own(
    portless: Portless, ports_v1: dict[str, dict[str, tuple[str, int]]]
) -> None:
    portless.deploy("portless-b", "3", "--canary", "1")
    catalog = portless.catalog("portless-b")
    canary_host, canary_port = catalog["portless-b-5"]  # instance 5 goes to the host of instance 1 (4 hosts)
    beside = {port for instance, (host, port) in catalog.items() if host == canary_host and instance != "portless-b-5"}
    others_there = {port for host, port in portless.catalog("portless-a").values() if host == canary_host}
    assert beside and canary_port not in beside | others_there
    assert {instance: place for instance, place in catalog.items() if instance != "portless-b-5"} == ports_v1["portless-b"]
    answers = portless.answers("portless-b", count=40)
    assert "portless-b-5" in answering_instances(answers)
    dropped = portless.moorage("rollback", "portless-b", "--output", "json")
    assert dropped.returncode == 0, dropped.stderr
    assert portless.catalog("portless-b") == ports_v1["portless-b"]


def test_a_fixed_port_a_dynamic_instance_holds_is_refused_before_anything_is_touched(
    portless: Portless, ports_v1: dict[str, dict[str, tuple[str, int]]]
) -> None:
    port = min(port for _, port in ports_v1["portless-a"].values())
    spec = portless.spec("fixed-c", replicas=REPLICAS, port=port)
    run = portless.moorage("deploy", str(spec), "--version", "1")
    assert run.returncode == 2, run.stderr
    lines = run.error_lines()
    taken = rf"port {port} on host lab-\d is already taken by portless-[ab]-\d \(release \d+\), needed by fixed-c-\d"
    assert len(lines) == 1 and re.search(taken, lines[0]), lines
    never = portless.moorage("releases", "fixed-c", "--output", "json")
    assert never.returncode == 2 and "fixed-c: no such service" in never.stdout, never.stdout
