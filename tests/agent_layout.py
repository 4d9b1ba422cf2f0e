"""The host agents as the roles install them, here: the agent role's install step run on localhost.

``install_agents(root, collections_path)`` runs ``moorage.platform.agent`` (tasks ``install``),
found by FQCN through ``collections_path``, with ``agent_root=root``, for the ingress and the
Prometheus target bridge. The result is the on-host layout (``ROOT/NAME/__main__.py``,
``ROOT/NAME/moorage/agents/``), run as ``/usr/bin/python3 -I ROOT/NAME COMMAND``: Debian's Python in
isolated mode, so the agents get the standard library and their own package, nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moorage.paths import collections_search_path

AGENTS = {"ingress": "ingress", "prometheus-targets": "prometheus-targets"}  # agent_name -> agent_command
HOST_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable

INSTALL_PLAYBOOK = """\
- name: Install the agents the way the roles do
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
{tasks}
    - name: Stop here (the install step notifies a restart; no service manager runs here)
      ansible.builtin.meta: end_play
"""
INSTALL_TASK = """\
    - name: Install {name}
      ansible.builtin.import_role:
        name: moorage.platform.agent
        tasks_from: install
      vars:
        agent_name: {name}
        agent_command: {command}
        agent_root: {root}
"""


def install_agents(root: Path, collections_path: str, ansible_bin: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the agent role's install step for every agent into ``root`` (fails the caller on a non-zero exit)."""
    root.mkdir(parents=True, exist_ok=True)
    playbook = root.parent / f"install-{root.name}.yml"
    tasks = "".join(INSTALL_TASK.format(name=name, command=command, root=root) for name, command in AGENTS.items())
    playbook.write_text(INSTALL_PLAYBOOK.format(tasks=tasks))
    ansible_playbook = (ansible_bin or Path(sys.executable).parent) / "ansible-playbook"
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": collections_path,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "False",
    }
    env.pop("ANSIBLE_ROLES_PATH", None)
    return subprocess.run(
        [str(ansible_playbook), "-i", "localhost,", "-e", f"ansible_python_interpreter={HOST_PYTHON}", str(playbook)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def agent_command(root: Path, name: str, *args: str) -> list[str]:
    """The command line systemd runs for agent ``name`` (the unit's ExecStart, without --config)."""
    return [HOST_PYTHON, "-I", str(root / name), AGENTS[name], *args]


@pytest.fixture(scope="session")
def agents_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agents installed by the agent role from this checkout (collection found by FQCN), once per session."""
    root = tmp_path_factory.mktemp("agents") / "lib"
    result = install_agents(root, collections_search_path())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root
