"""The collection's deploy modules (moorage.platform.release, moorage.platform.instance) run by ansible-playbook.

Each test runs real tasks through ansible-playbook on this machine (the modules by FQCN, on
Debian's python3) into a temporary root, against a Consul dev agent with ACLs on (default deny),
and checks what a user would notice: what changed, what the files hold, check mode touching
nothing, a second run changing nothing, failures saying why in one message, secrets and tokens
never in the output. Switching an instance needs systemd or Docker: that runs on the lab
(tests/e2e/test_deploy.py, molecule/service).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_local import run_tasks
from consul_dev import ConsulDev, start_consul_dev

from moorage.agents.prepare import INGRESS_READ_POLICY, service_token
from moorage.deploy.archives import release_archive
from moorage.spec.loader import load_spec
from moorage.targets.classic import service_variables

REPO = Path(__file__).resolve().parents[2]
SECRET = "module-test-secret-7f3a"


@pytest.fixture(scope="module")
def consul() -> Iterator[ConsulDev]:
    with start_consul_dev(acl=True) as agent:
        yield agent


@pytest.fixture
def release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The parameters of release 3 of examples/hello (with a secret) for one instance on this host, into tmp_path."""
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path / "cache"))
    archive = release_archive(REPO / "examples/hello/app")
    service = {**service_variables(load_spec(REPO / "examples/hello/moorage.yml")), "secrets": ["API_TOKEN"]}
    return {
        "service": service,
        "instances": [{"id": "hello-1", "index": 1, "host": "localhost", "address": "127.0.0.1", "port": free_tcp_port()}],
        "release": 3,
        "version": "1.0",
        "archive": {"digest": archive.digest, "suffix": archive.suffix},
        "secrets": {"API_TOKEN": SECRET},
        "lbs": ["lb-1"],
        "root": str(tmp_path / "opt"),
        "config_root": str(tmp_path / "etc"),
        "host": "web-1",
        "_archive_path": str(archive.path),
    }


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def step(release: dict[str, Any], name: str, **options: Any) -> dict[str, Any]:
    parameters = {key: value for key, value in release.items() if not key.startswith("_")}
    return {"moorage.platform.release": {**parameters, "step": name, **options}}


def test_a_release_is_checked_shipped_once_and_left_alone_after(consul: ConsulDev, release: dict[str, Any], tmp_path: Path) -> None:
    assert consul.management_token
    ship = step(release, "ship", management_token=consul.management_token, consul_addr=consul.url)
    results = run_tasks(
        [
            {**step(release, "check"), "register": "here"},
            {"ansible.builtin.copy": {"src": release["_archive_path"], "dest": "{{ here.archive_dest | dirname }}/"}},
            {**ship, "check_mode": True},
            ship,
            ship,
            step(release, "check"),
        ],
        tmp_path,
    )

    checked, copied, would, shipped, again, rechecked = results
    assert not any(result.get("failed") for result in results), results
    assert (checked["archive_present"], checked["running"]) == (False, {"hello-1": None})
    assert copied["changed"] is True
    assert would["changed"] is True and "definition of hello-1" in would["changes"]
    assert shipped["changed"] is True and again["changed"] is False
    assert rechecked["archive_present"] is True
    root, config = Path(release["root"]), Path(release["config_root"])
    assert (root / "hello/releases/3/app.py").exists()
    definition = config / "hello/releases/3/hello-1.json"
    assert oct(definition.stat().st_mode & 0o777) == "0o600"
    assert json.loads(definition.read_text())["release"] == 3
    token, _ = service_token(consul.management_token, "hello")
    assert (config / "hello/consul.token").read_text() == token + "\n"
    own = consul.api("GET", "/v1/acl/token/self", token=token)
    assert isinstance(own, dict) and INGRESS_READ_POLICY in {policy["Name"] for policy in own["Policies"]}
    output = json.dumps(results)
    assert SECRET not in output and consul.management_token not in output and token not in output


def test_the_check_fails_naming_the_host_and_why_and_writes_nothing(release: dict[str, Any], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        instances = [{**release["instances"][0], "port": port}]
        results = run_tasks(
            [
                step(release, "check", instances=instances),
                step(release, "check", secrets={}),
                step(release, "check", service={**release["service"], "routes": [{"host": "Not A Host", "path": "/"}]}),
            ],
            tmp_path,
        )

    taken_port, no_secret, bad_route = results
    assert taken_port["failed"] and taken_port["msg"] == f"port {port} on host web-1 is already taken (needed by hello-1)"
    assert no_secret["failed"] and "secrets API_TOKEN have no value" in no_secret["msg"]
    assert bad_route["failed"] and "host must be a lowercase host name" in bad_route["msg"]
    assert not Path(release["root"]).exists() and not Path(release["config_root"]).exists()


def test_the_instance_module_says_what_it_would_do_and_removes_nothing_that_is_not_there(release: dict[str, Any], tmp_path: Path) -> None:
    where = {"root": release["root"], "config_root": release["config_root"], "service": "hello", "instances": ["hello-1"]}
    results = run_tasks(
        [
            {"moorage.platform.instance": {**where, "release": 3}, "check_mode": True},
            {"moorage.platform.instance": {**where, "state": "absent"}, "check_mode": True},
            {"moorage.platform.instance": {**where, "release": 3, "consul_addr": "http://127.0.0.1:1"}},
        ],
        tmp_path,
    )

    would_switch, would_remove, unprepared = results
    assert would_switch["changed"] is True and would_switch["instances"] == [{"instance": "hello-1", "changed": True}]
    assert would_remove["changed"] is False
    assert unprepared["failed"] is True
    assert unprepared["msg"].startswith("hello-1 on ") and "release 3 of hello-1 is not prepared on this host" in unprepared["msg"]
