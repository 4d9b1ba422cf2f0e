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

MOORAGE = str(Path(sys.executable).parent / "moorage")


def write_inventory(tmp_path: Path, groups: dict[str, list[str]], host_vars: str = "") -> Path:
    hosts = sorted({host for members in groups.values() for host in members})
    lines = [f"{host} ansible_connection=local ansible_python_interpreter={sys.executable} {host_vars}" for host in hosts]
    for group, members in groups.items():
        lines += [f"[{group}]", *members]
    path = tmp_path / "hosts.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def platform_up(inventory: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "MOORAGE_STATE_DIR": str(tmp_path / "state")}
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
    assert not list((tmp_path / "state").rglob("consul.vault.yml")), "the preflight must stop before the secrets step"


def test_a_role_variable_of_the_wrong_type_is_named_before_any_role_runs(tmp_path: Path) -> None:
    groups = {"consul_servers": ["a"], "lb": ["a"], "monitoring": ["a"], "logging": ["a"]}
    result = platform_up(write_inventory(tmp_path, groups, host_vars="common_time_sync=maybe"), tmp_path)
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("moorage: error:")]
    assert len(error_lines) == 1 and "argument 'common_time_sync'" in error_lines[0], result.stderr
    assert "play Base" not in result.stderr, "no role may start"


def test_json_output_is_one_event_per_line_then_the_error(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, {"consul_servers": ["a"], "monitoring": ["a"], "logging": ["a"]})
    result = platform_up(inventory, tmp_path, "--output", "json")
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    events = [json.loads(line) for line in lines if line.startswith('{"event"')]
    assert events[0] == {"event": "play", "play": "Preflight"}
    assert {"event": "host", "host": "a", "task": "Check that every host answers", "status": "ok"} in events
    final = events[-1]
    assert final["event"] == "result" and final["ok"] is False and final["hosts"]["a"]["changed"] == 0
    error = json.loads("\n".join(line for line in lines if not line.startswith('{"event"')))
    assert error["exit_code"] == 2 and "'lb'" in error["error"]
