"""``-i`` naming no inventory: one line naming the path, exit 2, before anything runs (through the real CLI).

"Before anything runs": the commands get a lab-less state root and no Consul, so had they gone on
they would have failed differently (Ansible against a host named like the path, or "no Consul
token"); the one line they print says the inventory is missing and nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MOORAGE = str(Path(sys.executable).parent / "moorage")
SPEC = Path(__file__).resolve().parents[2] / "examples" / "hello" / "moorage.yml"

COMMANDS = {
    "deploy": ["deploy", str(SPEC)],
    "platform up": ["platform", "up"],
    "status": ["status"],
}


def moorage(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "MOORAGE_STATE_DIR": str(tmp_path / "state"), **(env or {})}
    if "MOORAGE_INVENTORY" not in (env or {}):
        environment.pop("MOORAGE_INVENTORY", None)
    return subprocess.run([MOORAGE, *args], capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_missing_inventory_path_is_one_line_and_exit_2(tmp_path: Path, command: str) -> None:
    run = moorage(tmp_path, *COMMANDS[command], "-i", "prod")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == "moorage: error: prod: inventory not found\n"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_directory_without_an_inventory_is_one_line_and_exit_2(tmp_path: Path, command: str) -> None:
    site = tmp_path / "site"
    (site / "group_vars" / "all").mkdir(parents=True)
    (site / "group_vars" / "all" / "main.yml").write_text("consul_datacenter: dc1\n")
    (site / "README.md").write_text("our site\n")
    run = moorage(tmp_path, *COMMANDS[command], "-i", str(site))
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == f"moorage: error: {site}: inventory not found: the directory holds no inventory file (e.g. hosts.yml)\n"


def test_moorage_inventory_naming_no_file_is_refused_the_same_way(tmp_path: Path) -> None:
    run = moorage(tmp_path, "status", env={"MOORAGE_INVENTORY": str(tmp_path / "gone.yml")})
    assert (run.returncode, run.stderr) == (2, f"moorage: error: {tmp_path / 'gone.yml'}: inventory not found\n")
