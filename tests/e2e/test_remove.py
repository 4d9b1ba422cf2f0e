"""`moorage remove` on the 4-host session lab: a service deployed, removed, checked gone everywhere, deployed again.

Two services of their own, so nothing here touches what other test modules deploy: ``gone``
(systemd, examples/hello with a secret, 3 instances on the app hosts, port 8490) and ``gone-box``
(docker, examples/hello-docker, 2 containers on the docker host, port 8493). The tests run in
file order: both deployed and seen everywhere (so the checks below can see something) -> remove
refused without --yes off a terminal -> removed -> on every host no unit, container, file,
registration; in Consul no catalog service, KV key, ACL token or lb acknowledgment; on the lbs no
route (the fallback answers, the balancer state and the rendered config name neither); in
Prometheus no target -> status, releases and a second remove say it is unknown -> deployed again,
release 1 as a first deploy. Everything is real: the CLI, SSH, Consul, NGINX, Prometheus, Docker.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from example_specs import example_spec, sealed_secrets
from moorage_cli import Run, moorage
from platform_cli import Platform
from waiting import eventually

from moorage.agents.ingress import Settings

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = "gone"
DOCKER = "gone-box"
ROUTES = {SYSTEMD: "gone.example.test", DOCKER: "gone-box.example.test"}
SECRET_NAME = "GONE_TOKEN"
SECRET_VALUE = f"moorage-remove-secret-{uuid.uuid4().hex}"
INGRESS_CONFIG = "/etc/nginx/moorage/ingress.conf"
UPDATE = "update: {maxParallel: 1, minHealthy: 3s, healthyDeadline: 60s}"  # both examples' rollout, made quicker here


@dataclass
class Removal:
    platform: Platform
    specs: dict[str, Path]
    secrets: tuple[str, ...]  # --secrets FILE --vault-password-file P

    @property
    def lab(self) -> Any:
        return self.platform.lab

    @property
    def lb(self) -> str:
        return str(self.lab.group("lb")[0].address)

    def deploy(self, service: str) -> Run:
        return moorage("deploy", str(self.specs[service]), "--version", "1", "--output", "json", *self.secrets)

    def consul(self, path: str) -> requests.Response:
        server = self.lab.group("consul_servers")[0].name
        return requests.get(
            f"{self.platform.consul_api(server)}{path}", headers={"X-Consul-Token": self.platform.management_token}, timeout=10
        )

    def answer(self, service: str) -> requests.Response:
        return requests.get(f"http://{self.lb}/", headers={"Host": ROUTES[service]}, timeout=10)

    def prometheus_targets(self, service: str) -> list[dict[str, Any]]:
        targets = requests.get(f"{self.platform.prometheus_api()}/targets", params={"state": "active"}, timeout=10).json()
        return [target for target in targets["data"]["activeTargets"] if target["labels"].get("job") == service]

    def balancer_state(self, lb: str) -> str:
        return str(self.lab.run(lb, f"cat {Settings().balancer_state_file}").stdout)

    def on_host(self, host: str, service: str) -> dict[str, str]:
        """What ``host`` has of ``service``: units loaded or installed, unit files, containers, its directories (empty: none)."""
        pattern = f"moorage-{service}-[0-9]*"
        docker = f"docker ps --all --filter label=moorage.service={service} --format '{{{{.Names}}}}'"
        commands = {
            "units": f"systemctl list-units --all --plain --no-legend '{pattern}'",
            "unit files": f"systemctl list-unit-files --no-legend '{pattern}'; ls /etc/systemd/system/{pattern} 2>/dev/null || true",
            "containers": f"if command -v docker >/dev/null; then {docker}; fi",
            "files": f"ls -d /opt/moorage/{service} /etc/moorage/{service} 2>/dev/null || true",
        }
        found = {what: self.lab.run(host, command).stdout.strip() for what, command in commands.items()}
        return {what: text for what, text in found.items() if text}


@pytest.fixture(scope="module")
def removal(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Removal]:
    work = tmp_path_factory.mktemp("remove")
    systemd = work / "gone.yml"
    systemd.write_text(
        example_spec(
            "hello",
            {
                "name: hello": f"name: {SYSTEMD}",
                "artifact: ./app": f"artifact: {REPO / 'examples/hello/app'}",
                "port: 8080": "port: 8490",
                "env: {GREETING: hi}": f"env: {{GREETING: hi}}\n  secrets: [{SECRET_NAME}]",
                "hello.example.test": ROUTES[SYSTEMD],
                UPDATE: "update: {maxParallel: 3, minHealthy: 1s, healthyDeadline: 30s}",
            },
        )
    )
    box = work / "gone-box.yml"
    box.write_text(
        example_spec(
            "hello-docker",
            {
                "name: hello-docker": f"name: {DOCKER}",
                "imageArchive: ./image.tar": f"imageArchive: {REPO / 'examples/hello-docker/image.tar'}",
                "port: 8090": "port: 8493",
                "hello-docker.example.test": ROUTES[DOCKER],
                UPDATE: "update: {maxParallel: 2, minHealthy: 1s, healthyDeadline: 30s}",
            },
        )
    )
    password, secrets = work / "vault-password", work / "secrets.yml"
    sealed_secrets(secrets, password, {SECRET_NAME: SECRET_VALUE})
    yield Removal(platform, {SYSTEMD: systemd, DOCKER: box}, ("--secrets", str(secrets), "--vault-password-file", str(password)))
    for service in (SYSTEMD, DOCKER):  # the lab as this module found it
        moorage("remove", service, "--yes")


@pytest.fixture(scope="module")
def deployed(removal: Removal) -> None:
    for service in (SYSTEMD, DOCKER):
        run = removal.deploy(service)
        assert run.returncode == 0, run.describe()


def test_both_services_run_routed_with_files_units_and_records(removal: Removal, deployed: None) -> None:
    for service in (SYSTEMD, DOCKER):
        assert f" from {service}-" in removal.answer(service).text, service
        assert removal.consul(f"/kv/moorage/services/{service}/?keys").status_code == 200
        hosts = {row["ServiceMeta"]["host"] for row in removal.consul(f"/catalog/service/{service}").json()}
        for host in hosts:
            found = removal.on_host(host, service)
            assert "files" in found, (host, service, found)
            assert ("containers" if service == DOCKER else "units") in found, (host, service, found)
        for lb in removal.lab.group("lb"):
            assert service in removal.balancer_state(lb.name).split(), lb.name
    eventually(lambda: len(removal.prometheus_targets(SYSTEMD)) == 3 or None, within=60, every=2, what="3 gone targets in Prometheus")


def test_off_a_terminal_remove_refuses_without_yes_and_changes_nothing(removal: Removal, deployed: None) -> None:
    run = moorage("remove", SYSTEMD)  # stdin is not a terminal here

    assert run.returncode == 2
    assert run.error_lines() == [
        f"moorage: error: remove {SYSTEMD}: stdin is not a terminal, so nobody can confirm: pass --yes to remove it"
    ]
    assert f" from {SYSTEMD}-" in removal.answer(SYSTEMD).text


@pytest.fixture(scope="module")
def removed(removal: Removal, deployed: None) -> dict[str, dict[str, Any]]:
    results = {}
    for service in (SYSTEMD, DOCKER):
        run = moorage("remove", service, "--yes", "--output", "json")
        assert run.returncode == 0, run.describe()
        results[service] = run.result()
    return results


def test_remove_reports_what_it_removed(removed: dict[str, dict[str, Any]]) -> None:
    systemd, box = removed[SYSTEMD], removed[DOCKER]
    assert systemd["ok"] is True and systemd["instances"] == ["gone-1", "gone-2", "gone-3"]
    assert systemd["releases"] == [1] and f"moorage/services/{SYSTEMD}/releases/1" in systemd["consul_keys"]
    assert systemd["consul_token_deleted"] is True
    assert any("/opt/moorage/gone" in items for items in systemd["hosts"].values())
    assert box["instances"] == ["gone-box-1", "gone-box-2"]
    assert any(f"container moorage-{DOCKER}-1" in items for items in box["hosts"].values())


def test_no_host_has_a_unit_container_or_file_of_them(removal: Removal, removed: dict[str, dict[str, Any]]) -> None:
    for host in removal.lab.hosts:
        for service in (SYSTEMD, DOCKER):
            assert removal.on_host(host.name, service) == {}, (host.name, service)
        assert SECRET_VALUE not in removal.lab.run(host.name, "grep -rl moorage-remove-secret /etc/moorage /opt/moorage || true").stdout


def test_consul_has_no_service_key_token_or_acknowledgment_of_them(removal: Removal, removed: dict[str, dict[str, Any]]) -> None:
    catalog = removal.consul("/catalog/services").json()
    tokens = removal.consul("/acl/tokens").json()
    claims = removal.consul("/kv/moorage/ports/claims?raw")
    claimed = claims.json() if claims.status_code == 200 and claims.text else {}
    for service in (SYSTEMD, DOCKER):
        assert service not in catalog
        assert service not in claimed  # its ports are free for the next service
        assert removal.consul(f"/catalog/service/{service}").json() == []
        assert removal.consul(f"/kv/moorage/services/{service}/?keys").status_code == 404
        assert not [token for token in tokens if token.get("Description") == f"moorage service {service}"]

        def acks_gone(service: str = service) -> bool | None:
            keys = removal.consul("/kv/moorage/ingress/?keys")
            return True if keys.status_code == 404 or not [key for key in keys.json() if key.endswith(f"/{service}")] else None

        eventually(acks_gone, within=30, every=1, what=f"no lb acknowledgment of {service} left")


def test_no_lb_routes_them_any_more(removal: Removal, removed: dict[str, dict[str, Any]]) -> None:
    for service in (SYSTEMD, DOCKER):
        fallback = eventually(
            lambda service=service: removal.answer(service) if removal.answer(service).status_code in (404, 503) else None,
            within=30,
            every=1,
            what=f"the lb's fallback for {ROUTES[service]}",
        )
        assert f" from {service}-" not in fallback.text
        for lb in removal.lab.group("lb"):
            assert service not in removal.balancer_state(lb.name).split(), lb.name
            assert ROUTES[service] not in removal.lab.run(lb.name, f"cat {INGRESS_CONFIG}").stdout, lb.name


def test_prometheus_scrapes_them_no_more(removal: Removal, removed: dict[str, dict[str, Any]]) -> None:
    eventually(lambda: removal.prometheus_targets(SYSTEMD) == [] or None, within=90, every=2, what="no gone target in Prometheus")


def test_status_releases_and_a_second_remove_say_it_is_unknown(removal: Removal, removed: dict[str, dict[str, Any]]) -> None:
    unknown = f"moorage: error: {SYSTEMD}: no such service: no release in Consul, no instance registered (never deployed, or removed)"
    for args in (("status", SYSTEMD), ("releases", SYSTEMD), ("remove", SYSTEMD, "--yes")):
        run = moorage(*args)
        assert run.returncode == 2, run.describe()
        assert run.error_lines() == [unknown], run.describe()


def test_deployed_again_it_is_a_first_deploy(removal: Removal, removed: dict[str, dict[str, Any]]) -> None:
    for service in (SYSTEMD, DOCKER):
        run = removal.deploy(service)
        assert run.returncode == 0, run.describe()
        result = run.result()
        assert result["changed"] is True and result["release"]["number"] == 1, result
        releases = json.loads(moorage("releases", service, "--output", "json").stdout)["releases"]
        assert [(release["number"], release["status"]) for release in releases] == [(1, "deployed")]
        assert eventually(
            lambda service=service: removal.answer(service) if f" from {service}-" in removal.answer(service).text else None,
            within=30,
            every=1,
            what=f"{service} answering through the lb again",
        )
