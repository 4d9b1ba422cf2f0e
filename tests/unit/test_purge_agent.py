"""The deploy agent's ``purge`` (``moorage remove`` on one host): the service's instances and files go, nothing else.

Real parts: a Consul dev agent with ACLs on, real files in a temporary root, the agent zipapp run
by Debian's ``/usr/bin/python3 -I`` as the controller runs it (the management token on stdin).
The instance here was never started (no unit, no container), which is what can run without
systemd; stopping units and containers runs on the lab (tests/e2e/test_remove.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from consul_dev import ConsulDev

from moorage.agents.layout import ServiceLayout
from moorage.deploy.archives import agent_zipapp

HOST_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def leave_instance(layout: ServiceLayout, instance: str) -> None:
    """What a prepared and switched instance leaves on a host: files, a definition, an env file, a current link."""
    files = layout.release_dir(1)
    files.mkdir(parents=True)
    (files / "app.py").write_text("print('hi')\n")
    layout.artifacts_dir.mkdir(parents=True)
    (layout.artifacts_dir / "abc.tar.gz").write_bytes(b"archive")
    layout.current_dir.mkdir(parents=True)
    layout.current_link(instance).symlink_to(files)
    layout.definitions_dir(1).mkdir(parents=True)
    layout.definition_file(1, instance).write_text("{}\n")
    layout.env_file(instance).write_text("SECRET=value\n")
    layout.token_file.write_text("token\n")


def purge(tmp_path: Path, consul: ConsulDev, service: str, stdin: str) -> tuple[int, dict[str, object]]:
    agent = agent_zipapp()
    where = ["--root", str(tmp_path / "opt"), "--config-root", str(tmp_path / "etc"), "--units-dir", str(tmp_path / "units")]
    done = subprocess.run(
        [HOST_PYTHON, "-I", str(agent.path), "purge", *where, "--consul", consul.url, "--host", "web-1", service],
        input=stdin, capture_output=True, text=True, env={}, timeout=120, check=False,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, lines[-1]


def register(agent: ConsulDev, *services: tuple[str, str, list[str]]) -> None:
    for instance, name, tags in services:
        agent.api("PUT", "/v1/agent/service/register", {"ID": instance, "Name": name, "Port": 8080, "Tags": tags})


def deregister_all(agent: ConsulDev) -> None:
    services = agent.api("GET", "/v1/agent/services")
    for instance in services if isinstance(services, dict) else {}:
        agent.api("PUT", f"/v1/agent/service/deregister/{instance}", None)


@pytest.fixture
def layouts(tmp_path: Path) -> tuple[ServiceLayout, ServiceLayout]:
    """hello, and hello-world (a service whose instance names start like hello's)."""
    hello = ServiceLayout("hello", str(tmp_path / "opt"), str(tmp_path / "etc"), str(tmp_path / "units"))
    world = ServiceLayout("hello-world", hello.root, hello.config_root, hello.units_dir)
    leave_instance(hello, "hello-1")
    leave_instance(world, "hello-world-1")
    Path(world.units_dir).mkdir()
    world.unit_file("hello-world-1").write_text(f"[Service]\nWorkingDirectory={world.current_link('hello-world-1')}\n")
    return hello, world


def test_purge_deregisters_and_deletes_the_service_and_leaves_a_similar_name_alone(
    tmp_path: Path, agent: ConsulDev, layouts: tuple[ServiceLayout, ServiceLayout]
) -> None:
    hello, world = layouts
    register(agent, ("hello-1", "hello", ["moorage"]), ("hello-world-1", "hello-world", ["moorage"]), ("hello-x", "hello", []))
    try:
        status, result = purge(tmp_path, agent, "hello", agent.management_token or "")

        assert status == 0, result
        assert result["ok"] is True and result["changed"] is True
        assert [item["instance"] for item in result["instances"]] == ["hello-1"]  # type: ignore[union-attr]
        assert result["removed"] == [str(hello.service_dir), str(hello.config_dir)]
        assert not hello.service_dir.exists() and not hello.config_dir.exists()
        services = agent.api("GET", "/v1/agent/services")
        assert isinstance(services, dict) and set(services) == {"hello-world-1", "hello-x"}  # hello-x: not moorage's
        assert world.current_link("hello-world-1").exists() and world.unit_file("hello-world-1").exists()
        assert world.env_file("hello-world-1").read_text() == "SECRET=value\n"

        again, second = purge(tmp_path, agent, "hello", agent.management_token or "")
        assert again == 0 and second["ok"] is True and second["changed"] is False and second["removed"] == []
    finally:
        deregister_all(agent)


def test_a_purge_that_cannot_deregister_fails_and_keeps_the_files_for_the_next_run(
    tmp_path: Path, agent: ConsulDev, layouts: tuple[ServiceLayout, ServiceLayout]
) -> None:
    hello, _ = layouts
    hello.token_file.unlink()  # no token file and none on stdin: Consul's anonymous token, which may not read the registration
    register(agent, ("hello-1", "hello", ["moorage"]))
    try:
        status, result = purge(tmp_path, agent, "hello", "")
    finally:
        deregister_all(agent)

    assert status == 1 and result["ok"] is False
    [outcome] = result["instances"]  # type: ignore[misc]
    assert outcome["instance"] == "hello-1" and "removing hello-1 on web-1 failed" in outcome["message"]
    assert hello.current_link("hello-1").exists() and hello.env_file("hello-1").exists()
