"""Run a few Ansible tasks on this machine with the moorage.platform collection, and read their results.

For the collection's modules: the tasks run through ``ansible-playbook`` (connection local,
Debian's ``/usr/bin/python3`` as on the hosts), the collection found by FQCN on the same
collections path the moorage CLI uses. Every task gets ``ignore_errors`` so one run can show a
sequence of successes and failures; the results come from the ``ansible.posix.json`` callback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from moorage.paths import collections_search_path

HOST_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def run_tasks(tasks: list[dict[str, Any]], workdir: Path) -> list[dict[str, Any]]:
    """Each task's result on localhost, in order (a task skipped by ``when`` has ``skipped``)."""
    play = [{"name": "moorage.platform modules", "hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}]
    for task in tasks:
        task.setdefault("ignore_errors", True)
    playbook = workdir / "play.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": collections_search_path(),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_NOCOLOR": "1",
    }
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            "-e",
            f"ansible_python_interpreter={HOST_PYTHON}",
            str(playbook),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    try:
        report = json.loads(result.stdout)
    except ValueError as err:
        raise AssertionError(
            f"ansible-playbook said no JSON (exit {result.returncode}): {result.stdout[-2000:]}{result.stderr[-2000:]}"
        ) from err
    return [task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]]
