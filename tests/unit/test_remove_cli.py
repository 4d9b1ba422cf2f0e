"""`moorage remove`: when it refuses, when it asks, what it says of a service it does not know.

The real CLI against a real Consul dev agent (ACLs on) holding a release record of hello on three
hosts that are only an inventory here: every case below stops before any host is reached (the
removal itself runs on the lab, tests/e2e/test_remove.py). The terminal case runs the CLI on a
pseudo-terminal, as a person at a shell would.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import consul
import pytest
from consul_dev import ConsulDev
from release_samples import HOSTS, sample_release

from moorage.deploy.releases import ReleaseStore

MOORAGE = str(Path(sys.executable).parent / "moorage")


@pytest.fixture
def env(agent: ConsulDev, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CONSUL_HTTP_ADDR": agent.http_addr,
        "CONSUL_HTTP_TOKEN": agent.management_token or "",
        "MOORAGE_STATE_DIR": str(tmp_path / "state"),
    }


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.ini"
    path.write_text("[app]\n" + "".join(f"{host.name} ansible_host={host.address}\n" for host in HOSTS))
    return path


@pytest.fixture
def hello(client: consul.Consul) -> Iterator[ReleaseStore]:
    """A deployed release of hello (hello-1..3 on app1..app3) in Consul; gone again after the test."""
    store = ReleaseStore(client, "hello")
    store.create(sample_release("1"), "deployed")
    yield store
    client.kv.delete("moorage/services/hello/", recurse=True)


def remove(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with stdin not a terminal (as in a script or CI)."""
    return subprocess.run([MOORAGE, "remove", *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)


def on_terminal(env: dict[str, str], args: list[str], answer: str) -> tuple[int, str]:
    """The CLI on a pseudo-terminal; ``answer`` typed once it asks. (exit status, everything it wrote)."""
    main, secondary = pty.openpty()
    process = subprocess.Popen([MOORAGE, *args], stdin=secondary, stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    shown = b""
    answered = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break  # the CLI exited and closed the terminal
            if not chunk:
                break
            shown += chunk
        if not answered and b"[y/N]" in shown:
            os.write(main, answer.encode() + b"\r")
            answered = True
        if process.poll() is not None and not ready:
            break
    os.close(main)
    return process.wait(timeout=30), shown.decode(errors="replace").replace("\r\n", "\n")


def test_without_a_terminal_it_refuses_unless_yes_and_touches_nothing(env: dict[str, str], inventory: Path, hello: ReleaseStore) -> None:
    refused = remove(env, "hello", "-i", str(inventory))

    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "moorage: error: remove hello: stdin is not a terminal, so nobody can confirm: pass --yes to remove it"
    ]
    assert refused.stdout == ""
    assert [release.number for release in hello.all()] == [1]


def test_the_refusal_is_a_json_error_with_output_json(env: dict[str, str], inventory: Path, hello: ReleaseStore) -> None:
    refused = remove(env, "hello", "-i", str(inventory), "--output", "json")

    assert refused.returncode == 2
    document = json.loads(refused.stdout)
    assert document["ok"] is False and document["exit_code"] == 2 and "--yes" in document["error"]


def test_on_a_terminal_it_asks_what_it_would_remove_and_no_leaves_everything(
    env: dict[str, str], inventory: Path, hello: ReleaseStore
) -> None:
    status, shown = on_terminal(env, ["remove", "hello", "-i", str(inventory)], "n")

    assert "Remove hello from 3 hosts (app1, app2, app3), instances hello-1, hello-2, hello-3, and its 1 release record(s)? [y/N]" in shown
    assert status == 1
    assert "moorage: error: hello: not removed (not confirmed)" in shown
    assert [release.number for release in hello.all()] == [1]


def test_on_a_terminal_enter_alone_means_no(env: dict[str, str], inventory: Path, hello: ReleaseStore) -> None:
    status, shown = on_terminal(env, ["remove", "hello", "-i", str(inventory)], "")

    assert status == 1 and "not removed (not confirmed)" in shown
    assert [release.number for release in hello.all()] == [1]


def test_an_unknown_service_is_one_line_naming_it(env: dict[str, str], inventory: Path) -> None:
    unknown = remove(env, "ghost", "--yes", "-i", str(inventory))

    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "moorage: error: ghost: no such service: no release in Consul, no instance registered (never deployed, or removed)"
    ]


def test_status_and_releases_say_an_unknown_service_is_unknown(env: dict[str, str], inventory: Path) -> None:
    for command in ("status", "releases"):
        run = subprocess.run([MOORAGE, command, "ghost", "-i", str(inventory)], capture_output=True, text=True, env=env, timeout=60)
        assert run.returncode == 2, (command, run.stderr)
        assert run.stderr.strip().splitlines() == [
            "moorage: error: ghost: no such service: no release in Consul, no instance registered (never deployed, or removed)"
        ]


def test_a_service_registered_without_the_moorage_tag_is_not_removed(env: dict[str, str], inventory: Path, agent: ConsulDev) -> None:
    agent.api("PUT", "/v1/agent/service/register", {"ID": "web-1", "Name": "web", "Port": 80, "Tags": ["other"]})
    try:
        refused = remove(env, "web", "--yes", "-i", str(inventory))

        assert refused.returncode == 2
        assert "web: not a moorage service" in refused.stderr
        assert agent.api("GET", "/v1/agent/service/web-1") is not None
    finally:
        agent.api("PUT", "/v1/agent/service/deregister/web-1", None)
