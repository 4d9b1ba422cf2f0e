"""`moorage platform up` against inventories that fail the preflight play, run for real on this host.

The hosts are `ansible_connection=local` aliases of this machine: the preflight play gathers facts
and asserts, and must stop before any role runs. No lab is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

MOORAGE = str(Path(sys.executable).parent / "moorage")


def write_inventory(tmp_path: Path, groups: dict[str, list[str]], host_vars: str = "") -> Path:
    hosts = sorted({host for members in groups.values() for host in members})
    lines = [f"{host} ansible_connection=local ansible_python_interpreter={sys.executable} {host_vars}" for host in hosts]
    for group, members in groups.items():
        lines += [f"[{group}]", *members]
    path = tmp_path / "hosts.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def platform_up(inventory: Path, tmp_path: Path, *extra: str, password: bool = True) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "MOORAGE_STATE_DIR": str(tmp_path / "state")}
    environment.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
    if password:
        password_file = tmp_path / "vault-password"
        password_file.write_text("the site's password\n")
        environment["ANSIBLE_VAULT_PASSWORD_FILE"] = str(password_file)
    return subprocess.run(
        [MOORAGE, "platform", "up", "-i", str(inventory), *extra], capture_output=True, text=True, env=environment, timeout=300
    )


@pytest.mark.parametrize(
    ("groups", "named"),
    [
        ({"consul_servers": ["a", "b"], "lb": ["a"], "monitoring": ["b"], "logging": ["b"]}, "'consul_servers' has 2 hosts"),
        ({"consul_servers": ["a"], "monitoring": ["a"], "logging": ["a"]}, "group 'lb' is missing"),
        ({"consul_servers": ["a"], "lb": ["a"], "logging": ["a"]}, "group 'monitoring' is missing"),
    ],
    ids=["two-consul-servers", "no-lb", "no-monitoring"],
)
def test_a_bad_inventory_is_one_line_naming_the_group_exit_2_and_no_secrets_minted(
    tmp_path: Path, groups: dict[str, list[str]], named: str
) -> None:
    result = platform_up(write_inventory(tmp_path, groups), tmp_path)
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("moorage: error:")]
    assert len(error_lines) == 1 and named in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("moorage.vault.yml")), "the preflight must stop before the secrets step"


def test_a_role_variable_of_the_wrong_type_is_named_before_any_role_runs(tmp_path: Path) -> None:
    groups = {"consul_servers": ["a"], "lb": ["a"], "monitoring": ["a"], "logging": ["a"]}
    result = platform_up(write_inventory(tmp_path, groups, host_vars="common_time_sync=maybe"), tmp_path)
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("moorage: error:")]
    assert len(error_lines) == 1 and "argument 'common_time_sync'" in error_lines[0], result.stderr
    assert "play Base" not in result.stderr, "no role may start"
    # The consul role's preflight passed, so the site's secrets were minted: next to the inventory,
    # an Ansible Vault file (0600) that the site's password opens, and no secret in any output.
    vault_file = tmp_path / "group_vars" / "all" / "moorage.vault.yml"
    assert vault_file.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256\n") and vault_file.stat().st_mode & 0o777 == 0o600
    opened = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-vault"),
            "view",
            "--vault-password-file",
            str(tmp_path / "vault-password"),
            str(vault_file),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    secrets = yaml.safe_load(opened.stdout)
    assert sorted(secrets) == ["consul_gossip_key", "consul_token_seed"]
    assert not any(value in result.stdout + result.stderr for value in secrets.values())


def test_a_new_site_without_a_vault_password_is_one_line_before_any_run(tmp_path: Path) -> None:
    groups = {"consul_servers": ["a"], "lb": ["a"], "monitoring": ["a"], "logging": ["a"]}
    result = platform_up(write_inventory(tmp_path, groups), tmp_path, password=False)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"moorage: error: {tmp_path / 'group_vars/all/moorage.vault.yml'}: no vault password to open the site's secrets: "
        "pass --vault-password-file or set ANSIBLE_VAULT_PASSWORD_FILE\n"
    )


def test_json_output_is_one_event_per_line_then_the_error(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, {"consul_servers": ["a"], "monitoring": ["a"], "logging": ["a"]})
    result = platform_up(inventory, tmp_path, "--output", "json")
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    events = [json.loads(line) for line in lines if line.startswith('{"event"')]
    # first why it converges (no host holds a record of an earlier converge), then the playbook
    assert events[0] == {"event": "note", "message": "converging every host: a: no record of a converge"}
    assert events[1] == {"event": "play", "play": "Preflight"}
    assert {"event": "host", "host": "a", "task": "Check that every host answers", "status": "ok"} in events
    final = events[-1]
    assert final["event"] == "result" and final["ok"] is False and final["hosts"]["a"]["changed"] == 0
    error = json.loads("\n".join(line for line in lines if not line.startswith('{"event"')))
    assert error["exit_code"] == 2 and "'lb'" in error["error"]
