"""An Ansible inventory as moorage needs it: the hosts of each group, their addresses, and how to SSH to them.

ansible-core's own ``InventoryManager`` reads it, so INI, YAML, directories and inventory
plugins all work exactly as they do for ``ansible-playbook``. A command reads its inventory once
(:func:`load_inventory`) and hands the :class:`Inventory` on. Which inventory a command uses when
none is named is the CLI's decision (``moorage.commands.options``), not this module's.
"""

from __future__ import annotations

import contextlib
import io
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.manager import VariableManager

from moorage.errors import BadInput
from moorage.ports import DEFAULT_DYNAMIC_PORTS, INVENTORY_VARIABLE, PortRange
from moorage.vault import NO_PASSWORD_HINT, site_vault, vault_secrets


@dataclass(frozen=True)
class InventoryHost:
    name: str
    address: str  # ansible_host, or the inventory name when unset
    ports: PortRange = DEFAULT_DYNAMIC_PORTS  # moorage_dynamic_ports: where instances without a fixed port get theirs


@dataclass(frozen=True)
class SshTarget:
    """How Ansible reaches a host over SSH: address, user, port, key and common arguments."""

    address: str
    user: str | None = None
    port: int | None = None
    private_key: str | None = None
    common_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inventory:
    path: Path
    groups: Mapping[str, tuple[InventoryHost, ...]]
    ssh_targets: Mapping[str, SshTarget]

    def hosts(self, group: str) -> tuple[InventoryHost, ...]:
        """The hosts of ``group`` (children included), sorted by name."""
        if group not in self.groups:
            known = ", ".join(sorted(name for name in self.groups if name not in ("all", "ungrouped")))
            raise BadInput(f"{self.path}: no group {group!r} in the inventory (groups: {known or 'none'})")
        return self.groups[group]

    def ssh_target(self, host: str) -> SshTarget:
        if host not in self.ssh_targets:
            raise BadInput(f"{self.path}: no host {host!r}")
        return self.ssh_targets[host]


def load_inventory(path: Path, passwords: Sequence[Path] = ()) -> Inventory:
    """Read ``path`` as ansible-playbook does; ``passwords`` open its Ansible Vault files (the site's secrets).

    A site vault file that no password opens is one line (exit 2), as is any other vault file.
    """
    if not path.exists():
        raise BadInput(f"{path}: inventory not found")
    site = site_vault(path, passwords)
    if site.exists:
        site.opening_password()
    loader = DataLoader()
    loader.set_vault_secrets(vault_secrets(passwords))
    manager = InventoryManager(loader=loader, sources=[str(path)], parse=False)
    ansible_warnings = io.StringIO()
    with contextlib.redirect_stderr(ansible_warnings):
        parsed = manager.parse_source(str(path.resolve()))
    if not parsed:
        raise BadInput(f"{path}: not a readable Ansible inventory ({_first_reason(ansible_warnings.getvalue())})")
    manager.reconcile_inventory()
    variables = VariableManager(loader=loader, inventory=manager)
    # str(): ansible-core hands out its own str subclasses (tagged with their origin); plain text
    # from here on, so every consumer (YAML and JSON writers included) sees ordinary strings.
    try:
        host_variables = {str(host.name): variables.get_vars(host=host, include_hostvars=False) for host in manager.get_hosts("all")}
    except AnsibleError as error:
        reason = " ".join(str(error.message).split())
        hint = f" ({NO_PASSWORD_HINT})" if "vault" in reason.lower() else ""
        raise BadInput(f"{path}: cannot read the inventory's variables: {reason}{hint}") from None
    ssh_targets = {name: _ssh_target(path, name, host_vars) for name, host_vars in host_variables.items()}
    hosts = {
        name: InventoryHost(name, ssh_targets[name].address, _dynamic_ports(path, name, host_vars))
        for name, host_vars in host_variables.items()
    }
    groups = {
        str(name): tuple(sorted((hosts[str(host.name)] for host in group.get_hosts()), key=lambda h: h.name))
        for name, group in manager.groups.items()
    }
    return Inventory(path=path, groups=groups, ssh_targets=ssh_targets)


def _ssh_target(path: Path, name: str, variables: Mapping[str, Any]) -> SshTarget:
    """As Ansible decides it: the host's variables first, then Ansible's configuration (``ANSIBLE_PRIVATE_KEY_FILE``,
    ``ANSIBLE_REMOTE_USER`` or ansible.cfg), so a CI job can hand in the key and user its credentials store gave it."""
    key = (
        variables.get("ansible_ssh_private_key_file")
        or variables.get("ansible_private_key_file")
        or C.config.get_config_value("DEFAULT_PRIVATE_KEY_FILE")
    )
    port = variables.get("ansible_port")
    user = variables.get("ansible_user") or C.config.get_config_value("DEFAULT_REMOTE_USER")
    if port is not None and not str(port).isdigit():
        raise BadInput(f"{path}: host {name!r}: ansible_port {port!r} is not a port number")
    return SshTarget(
        address=str(variables.get("ansible_host", name)),
        user=str(user) if user else None,
        port=int(port) if port is not None else None,
        private_key=str(key) if key else None,
        common_args=tuple(shlex.split(str(variables.get("ansible_ssh_common_args", "")))),
    )


def _dynamic_ports(path: Path, name: str, variables: Mapping[str, Any]) -> PortRange:
    """The host's range for instances without a fixed port (``moorage_dynamic_ports``, default 20000-29999)."""
    value = variables.get(INVENTORY_VARIABLE)
    if value is None or str(value).strip() == "":
        return DEFAULT_DYNAMIC_PORTS
    try:
        return PortRange.parse(value)
    except ValueError as error:
        raise BadInput(f"{path}: host {name!r}: {INVENTORY_VARIABLE}: {error}") from None


def _first_reason(ansible_output: str) -> str:
    """The first line of Ansible's warnings that says why, without its prefix."""
    for line in ansible_output.splitlines():
        reason = line.removeprefix("[WARNING]: ").strip()
        if reason:
            return reason
    return "no inventory plugin accepted it"
