"""`moorage plan` against a real Consul dev agent (ACLs on): exit 0 no change, 4 changes pending, 2 bad input.

The hosts are only an inventory here: ``plan`` reads Consul and places instances, it touches no host.
Also: how ``moorage logs`` reaches a host (the SSH command line, built from the inventory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import consul
import pytest
from consul_dev import ConsulDev
from release_samples import HELLO_SPEC, HOSTS

from moorage.deploy.identity import spec_hash
from moorage.deploy.logs import journal_command
from moorage.deploy.releases import ReleaseStore, draft
from moorage.deploy.remote import KEEPALIVE, as_root, ssh_argv
from moorage.errors import EXIT_CHANGES_PENDING
from moorage.inventory import SshTarget
from moorage.plan import plan_service
from moorage.spec.loader import load_spec

MOORAGE = str(Path(sys.executable).parent / "moorage")


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.ini"
    path.write_text("[app]\n" + "".join(f"{host.name} ansible_host={host.address}\n" for host in HOSTS))
    return path


def plan(agent: ConsulDev, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CONSUL_HTTP_ADDR": agent.http_addr,
        "CONSUL_HTTP_TOKEN": agent.management_token or "",
        "MOORAGE_STATE_DIR": str(tmp_path / "state"),
    }
    return subprocess.run([MOORAGE, "plan", *args], capture_output=True, text=True, env=env, timeout=120)


def test_plan_exits_4_while_changes_are_pending_and_0_when_none(agent: ConsulDev, inventory: Path, tmp_path: Path) -> None:
    first = plan(agent, tmp_path, str(HELLO_SPEC), "-i", str(inventory), "--version", "1", "--output", "json")
    assert first.returncode == EXIT_CHANGES_PENDING == 4, first.stderr
    document = json.loads(first.stdout)
    assert document["changed"] is True and document["current_release"] is None
    assert {change["action"] for change in document["changes"]} == {"add"}

    spec = load_spec(HELLO_SPEC)
    release = draft("1", spec_hash(spec), spec, plan_service(spec.model, HOSTS))
    client = consul.Consul(host=agent.host, port=agent.port, token=agent.management_token)
    ReleaseStore(client, "hello").create(release, "deployed")

    same = plan(agent, tmp_path, str(HELLO_SPEC), "-i", str(inventory), "--version", "1")
    assert same.returncode == 0, same.stderr
    assert same.stdout.strip().endswith("hello: no change")
    newer = plan(agent, tmp_path, str(HELLO_SPEC), "-i", str(inventory), "--version", "2")
    assert newer.returncode == 4, newer.stderr
    assert newer.stdout.strip().endswith("hello: 3 instance(s) would change") and "replace" in newer.stdout


def test_plan_of_a_bad_spec_is_still_exit_2(agent: ConsulDev, inventory: Path, tmp_path: Path) -> None:
    missing = plan(agent, tmp_path, str(tmp_path / "nowhere.yml"), "-i", str(inventory))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"{tmp_path / 'nowhere.yml'}:1:1: error: no such file"


def test_plan_says_its_exit_codes_in_its_help() -> None:
    help_text = subprocess.run([MOORAGE, "plan", "--help"], capture_output=True, text=True).stdout
    assert "Exit status: 0 no change, 4 changes pending, 2 bad input, 1 failed." in help_text


def test_logs_reaches_a_host_the_way_ansible_does_as_root_or_through_sudo() -> None:
    target = SshTarget("10.0.0.5", "deploy", 2222, "/keys/id", ("-o", "LogLevel=ERROR"))
    line = as_root(journal_command("hello", follow=True, since="10 min ago"))
    assert ssh_argv(target, line) == [
        "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", *KEEPALIVE, "-i", "/keys/id", "-p", "2222", "-o", "LogLevel=ERROR",
        "deploy@10.0.0.5", "--",
        "if [ \"$(id -u)\" = 0 ]; then exec journalctl --no-pager -o short-iso -t hello -f --since '10 min ago'; "
        "else exec sudo -n -- journalctl --no-pager -o short-iso -t hello -f --since '10 min ago'; fi",
    ]  # fmt: skip
    assert ssh_argv(SshTarget("web2"), "journalctl")[-3:] == ["web2", "--", "journalctl"]
