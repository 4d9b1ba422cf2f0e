"""An Ansible inventory as moorage needs it: the hosts of each group and their addresses.

ansible-core's own ``InventoryManager`` reads it, so INI, YAML, directories and inventory
plugins all work exactly as they do for ``ansible-playbook``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.manager import VariableManager

from moorage.errors import BadInput
from moorage.lab.paths import inventory_path as lab_inventory_path

NO_INVENTORY_HINT = "no inventory: pass -i INVENTORY or start the lab with 'moorage lab up'"


@dataclass(frozen=True)
class InventoryHost:
    name: str
    address: str  # ansible_host, or the inventory name when unset


@dataclass(frozen=True)
class Inventory:
    path: Path
    groups: Mapping[str, tuple[InventoryHost, ...]]

    def hosts(self, group: str) -> tuple[InventoryHost, ...]:
        """The hosts of ``group`` (children included), sorted by name."""
        if group not in self.groups:
            known = ", ".join(sorted(name for name in self.groups if name not in ("all", "ungrouped")))
            raise BadInput(f"{self.path}: no group {group!r} in the inventory (groups: {known or 'none'})")
        return self.groups[group]


def resolve_inventory(option: Path | None) -> Path:
    """The ``-i`` path when given, else the running lab's inventory."""
    if option is not None:
        return option
    lab_inventory = lab_inventory_path()
    if lab_inventory.exists():
        return lab_inventory
    raise BadInput(NO_INVENTORY_HINT)


def load_inventory(path: Path) -> Inventory:
    if not path.exists():
        raise BadInput(f"{path}: inventory not found")
    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(path)], parse=False)
    ansible_warnings = io.StringIO()
    with contextlib.redirect_stderr(ansible_warnings):
        parsed = manager.parse_source(str(path.resolve()))
    if not parsed:
        raise BadInput(f"{path}: not a readable Ansible inventory ({_first_reason(ansible_warnings.getvalue())})")
    manager.reconcile_inventory()
    variables = VariableManager(loader=loader, inventory=manager)
    addresses = {
        host.name: str(variables.get_vars(host=host, include_hostvars=False).get("ansible_host", host.name))
        for host in manager.get_hosts("all")
    }
    groups = {
        name: tuple(sorted((InventoryHost(host.name, addresses[host.name]) for host in group.get_hosts()), key=lambda h: h.name))
        for name, group in manager.groups.items()
    }
    return Inventory(path=path, groups=groups)


def _first_reason(ansible_output: str) -> str:
    """The first line of Ansible's warnings that says why, without its prefix."""
    for line in ansible_output.splitlines():
        reason = line.removeprefix("[WARNING]: ").strip()
        if reason:
            return reason
    return "no inventory plugin accepted it"
