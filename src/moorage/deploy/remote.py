"""SSH to an inventory host the way Ansible would (user, port, key, common args from its variables).

For commands that stream from hosts, such as ``moorage logs -f``, where a playbook run does not fit.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.manager import VariableManager

from moorage.errors import BadInput


def ssh_argv(inventory_path: Path, host_name: str, command: list[str]) -> list[str]:
    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(inventory_path.resolve())])
    host = manager.get_host(host_name)
    if host is None:
        raise BadInput(f"{inventory_path}: no host {host_name!r}")
    variables = VariableManager(loader=loader, inventory=manager).get_vars(host=host, include_hostvars=False)
    argv = ["ssh", "-o", "BatchMode=yes"]
    key = variables.get("ansible_ssh_private_key_file") or variables.get("ansible_private_key_file")
    if key:
        argv += ["-i", str(key)]
    if variables.get("ansible_port"):
        argv += ["-p", str(variables["ansible_port"])]
    argv += shlex.split(str(variables.get("ansible_ssh_common_args", "")))
    address = str(variables.get("ansible_host", host_name))
    user = variables.get("ansible_user")
    return [*argv, f"{user}@{address}" if user else address, "--", shlex.join(command)]
