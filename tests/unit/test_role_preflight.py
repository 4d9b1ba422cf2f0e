"""A role applied on its own, as an ops engineer's playbook does, still runs its preflight checks first.

platform.yml runs every role's checks in its preflight play and then imports the roles with
ROLE_preflight: false; a playbook of the engineer's own keeps the default and gets the checks.
Run for real with ansible-playbook from the checkout (its ansible.cfg) against this machine as an
`ansible_connection=local` host; the failing check stops the role before it installs anything.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


@pytest.mark.parametrize(
    ("role", "variables", "failed_check", "first_step_after"),
    [
        (
            "docker",
            {"docker_daemon_options": {"log-driver": "json-file"}},
            "Assert daemon.json sends container output to the journal",
            "Install the Docker engine",
        ),
        (
            "node_exporter",
            {"node_exporter_consul_token": ""},
            "Assert a Consul token is given when node_exporter registers in Consul",
            "Install node_exporter",
        ),
    ],
    ids=["docker", "node_exporter"],
)
def test_a_role_on_its_own_fails_its_preflight_before_it_installs_anything(
    tmp_path: Path, role: str, variables: dict[str, object], failed_check: str, first_step_after: str
) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"here ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    playbook = tmp_path / "site.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "vars": variables, "roles": [role]}]))
    result = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), str(playbook)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-2000:]
    failed_task = result.stdout.split("fatal:")[0].rsplit("TASK [", 1)[-1]
    assert failed_check in failed_task, result.stdout[-3000:]
    assert first_step_after not in result.stdout, result.stdout[-3000:]
