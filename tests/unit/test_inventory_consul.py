"""plugins/inventory/consul.py through the real `ansible-inventory` against a real Consul (ACLs on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from consul_dev import ConsulDev, start_consul_dev

from moorage.paths import plugins_dir

ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"


@pytest.fixture(scope="module")
def consul() -> Iterator[ConsulDev]:
    with start_consul_dev(acl=True) as agent:
        for node, address, role, services in (
            ("app-1", "10.9.0.11", "app", [("hello", "hello-0", 8080), ("hello", "hello-1", 8081)]),
            ("app-2", "10.9.0.12", "app", [("hello", "hello-2", 8080), ("web", "web-0", 9000)]),
            ("lb-1", "10.9.0.21", "lb", []),
        ):
            agent.api("PUT", "/v1/catalog/register", {"Node": node, "Address": address, "NodeMeta": {"role": role}})
            for name, service_id, port in services:
                agent.api(
                    "PUT",
                    "/v1/catalog/register",
                    {
                        "Node": node,
                        "Address": address,
                        "NodeMeta": {"role": role},
                        "Service": {"ID": service_id, "Service": name, "Port": port, "Tags": ["metrics"], "Meta": {"release": "3"}},
                    },
                )
        yield agent


def plain(value: object) -> object:
    """ansible-core >= 2.19 shows strings from a dynamic inventory as {"__ansible_unsafe": ...}:
    data read from Consul stays untrusted (never templated), which is what we want."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def run_inventory(tmp_path: Path, url: str, token: str | None, extra_config: str = "") -> subprocess.CompletedProcess[str]:
    config = tmp_path / "consul.yml"
    config.write_text(f"plugin: consul\nurl: {url}\n{extra_config}")
    environment = {
        **os.environ,
        "ANSIBLE_INVENTORY_PLUGINS": str(plugins_dir() / "inventory"),
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
    }
    environment.pop("CONSUL_HTTP_TOKEN", None)
    if token is not None:
        environment["CONSUL_HTTP_TOKEN"] = token
    return subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(config), "--list"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )


def test_nodes_become_hosts_grouped_by_service_and_node_meta(tmp_path: Path, consul: ConsulDev) -> None:
    result = run_inventory(tmp_path, consul.url, consul.management_token)
    assert result.returncode == 0, result.stderr
    listing = plain(json.loads(result.stdout))
    hostvars = listing["_meta"]["hostvars"]
    assert hostvars["app-1"]["ansible_host"] == "10.9.0.11"
    assert hostvars["lb-1"]["consul_node_meta"] == {"role": "lb"}
    assert [instance["port"] for instance in hostvars["app-1"]["consul_services"]["hello"]] == [8080, 8081]
    assert sorted(listing["service_hello"]["hosts"]) == ["app-1", "app-2"]
    assert listing["service_web"]["hosts"] == ["app-2"]
    assert sorted(listing["meta_role_app"]["hosts"]) == ["app-1", "app-2"]
    assert listing["meta_role_lb"]["hosts"] == ["lb-1"]
    assert consul.management_token not in result.stdout + result.stderr


def test_constructed_keyed_groups_work(tmp_path: Path, consul: ConsulDev) -> None:
    result = run_inventory(tmp_path, consul.url, consul.management_token, "keyed_groups:\n  - key: consul_datacenter\n    prefix: dc\n")
    assert result.returncode == 0, result.stderr
    assert "lb-1" in plain(json.loads(result.stdout))["dc_dc1"]["hosts"]


def test_anonymous_token_sees_no_hosts_under_default_deny(tmp_path: Path, consul: ConsulDev) -> None:
    result = run_inventory(tmp_path, consul.url, None)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["_meta"]["hostvars"] == {}


def test_unreachable_consul_fails_naming_the_url(tmp_path: Path, consul: ConsulDev) -> None:
    result = run_inventory(tmp_path, "http://127.0.0.1:1", consul.management_token)
    assert result.returncode != 0
    assert "127.0.0.1:1" in result.stderr
