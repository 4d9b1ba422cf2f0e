"""The collection's modules (consul_instance, consul_maintenance, health_gate) against a real Consul agent.

Each test runs real tasks through ansible-playbook on this machine (the modules by FQCN, on
Debian's python3) against a Consul dev agent with ACLs on (default deny), and checks what a user
would notice: what changed, what Consul holds afterwards, check mode touching nothing, a second
run changing nothing, failures saying why in one message, the token never in the output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_local import run_tasks
from consul_dev import ConsulDev, free_port, start_consul_dev
from ingress_fixtures import backends


@pytest.fixture(scope="module")
def consul() -> Iterator[ConsulDev]:
    with start_consul_dev(acl=True) as agent:
        yield agent


def connection(consul: ConsulDev) -> dict[str, str]:
    assert consul.management_token
    return {"consul_addr": consul.url, "token": consul.management_token}


def instance(consul: ConsulDev, service_id: str, port: int, **options: Any) -> dict[str, Any]:
    return {
        "moorage.platform.consul_instance": {
            **connection(consul),
            "id": service_id,
            "name": "web",
            "address": "127.0.0.1",
            "port": port,
            "routes": [{"host": "web.example.test", "path": "/"}, {"host": "web.example.test", "path": "/api"}],
            "metrics_path": "/metrics",
            "health": {"kind": "http", "http": "/", "interval": "1s", "timeout": "1s", "deregister_after": "1m"},
            "meta": {"version": "1", "release": "3"},
            "timestamp_meta_key": "started",
            **options,
        }
    }


def registered(consul: ConsulDev, service_id: str) -> dict[str, Any]:
    services = consul.api("GET", "/v1/agent/services")
    assert isinstance(services, dict)
    return services.get(service_id, {})


def test_an_instance_is_registered_once_then_left_alone_and_check_mode_touches_nothing(consul: ConsulDev, tmp_path: Path) -> None:
    results = run_tasks(
        [
            instance(consul, "web-1", 8081),
            instance(consul, "web-1", 8081),
            {**instance(consul, "web-1", 9999), "check_mode": True},
            instance(consul, "web-1", 8082),
        ],
        tmp_path,
    )

    first, again, checked, moved = results
    assert [result["changed"] for result in results] == [True, False, True, True]
    assert not any(result.get("failed") for result in results), results
    assert first["tags"] == ["moorage", "route=web.example.test/", "route=web.example.test/api", "metrics"]
    assert again["registration"]["Meta"]["started"] == first["registration"]["Meta"]["started"]
    assert checked["registration"]["Port"] == 9999
    service = registered(consul, "web-1")
    assert (service["Service"], service["Port"], service["Tags"]) == ("web", 8082, first["tags"])
    assert service["Meta"]["metrics_path"] == "/metrics"
    assert service["Meta"]["version"] == "1"
    assert service["Meta"]["started"] == moved["registration"]["Meta"]["started"]
    [check] = [check for check in consul.api("GET", "/v1/agent/checks").values() if check["ServiceID"] == "web-1"]  # type: ignore[union-attr]
    assert check["Name"] == "web http"
    assert json.dumps(results).count(connection(consul)["token"]) == 0, "the token shows in the output"


def test_a_route_that_breaks_the_rules_fails_the_task_naming_the_rule(consul: ConsulDev, tmp_path: Path) -> None:
    long_host = "a" * 70 + ".example.test"

    [result] = run_tasks([instance(consul, "web-9", 8089, routes=[{"host": long_host, "path": "/"}])], tmp_path)

    assert result["failed"] is True
    assert result["msg"] == "web-9: route host label 'aaaaaaaaaaaaaaaaaaaaa...' is 70 characters long; a DNS label has at most 63"
    assert registered(consul, "web-9") == {}


def test_maintenance_is_toggled_only_when_it_differs_and_an_unknown_instance_is_left_alone(consul: ConsulDev, tmp_path: Path) -> None:
    def maintenance(service_id: str, enabled: bool) -> dict[str, Any]:
        return {
            "moorage.platform.consul_maintenance": {**connection(consul), "service_id": service_id, "enabled": enabled, "reason": "test"}
        }

    results = run_tasks(
        [
            instance(consul, "web-2", 8083),
            {**maintenance("web-2", True), "check_mode": True},
            maintenance("web-2", True),
            maintenance("web-2", True),
            maintenance("web-2", False),
            maintenance("web-2", False),
            maintenance("nobody-1", True),
        ],
        tmp_path,
    )

    states = [(result["changed"], result.get("registered"), result.get("maintenance")) for result in results[1:]]
    assert states == [
        (True, True, True),
        (True, True, True),
        (False, True, True),
        (True, True, False),
        (False, True, False),
        (False, False, False),
    ]
    checks = consul.api("GET", "/v1/agent/checks")
    assert isinstance(checks, dict)
    assert "_service_maintenance:web-2" not in checks


def test_the_health_gate_opens_for_a_passing_instance_and_says_why_it_stays_shut(consul: ConsulDev, tmp_path: Path) -> None:
    closed_port = free_port()
    with backends("gate") as (backend,):

        def gate(service_id: str, deadline: float) -> dict[str, Any]:
            return {
                "moorage.platform.health_gate": {**connection(consul), "service_id": service_id, "min_healthy": 1.5, "deadline": deadline}
            }

        results = run_tasks(
            [
                instance(consul, "web-3", backend.port),
                instance(consul, "web-4", closed_port),
                gate("web-3", 30),
                gate("web-4", 3),
                {**gate("web-4", 3), "check_mode": True},
            ],
            tmp_path,
        )

    passed, shut, checked = results[2:]
    assert (passed.get("failed", False), passed["changed"]) == (False, False)
    assert passed["waited_seconds"] >= 1.5
    assert passed["msg"] == "web-3: passing for 1.5s"
    assert shut["failed"] is True
    assert shut["msg"].startswith("web-4: not healthy for 1.5s within 3s (last check: critical: ")
    assert str(closed_port) in shut["msg"]
    assert (checked.get("failed", False), checked["changed"]) == (False, False)


def test_an_instance_is_deregistered_once(consul: ConsulDev, tmp_path: Path) -> None:
    absent = {"moorage.platform.consul_instance": {**connection(consul), "id": "web-5", "state": "absent"}}

    results = run_tasks([instance(consul, "web-5", 8085), {**absent, "check_mode": True}, absent, absent], tmp_path)

    assert [result["changed"] for result in results] == [True, True, True, False]
    assert registered(consul, "web-5") == {}
