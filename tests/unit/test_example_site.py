"""inventory/example: the documented real site parses as Ansible reads it, and every variable it sets is a role's.

Every variable in its group_vars is either one of Ansible's connection variables (``ansible_*``) or
declared in some role's ``meta/argument_specs.yml``, and its value passes that declaration (type,
choices), as the platform's preflight play would check it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from moorage.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example"
GROUPS = {
    "consul_servers": ["app-1", "edge-1", "ops-1"],
    "lb": ["edge-1"],
    "monitoring": ["ops-1"],
    "logging": ["ops-1"],
    "app": ["app-1", "app-2", "docker-1"],
    "docker_hosts": ["docker-1"],
}


def role_options() -> dict[str, dict[str, dict[str, Any]]]:
    """role -> option name -> declaration, over every entry point of every role."""
    roles: dict[str, dict[str, dict[str, Any]]] = {}
    for specs in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        for entry_point in yaml.safe_load(specs.read_text())["argument_specs"].values():
            roles.setdefault(specs.parents[1].name, {}).update(entry_point.get("options") or {})
    return roles


def example_variables() -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for path in sorted(EXAMPLE.glob("group_vars/**/*.yml")):
        variables |= yaml.safe_load(path.read_text()) or {}
    return variables


def test_the_example_inventory_parses_with_ansible_inventory() -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    environment |= {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(EXAMPLE), "--list"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=True,
    )
    inventory = json.loads(listed.stdout)
    assert {group: sorted(inventory[group]["hosts"]) for group in GROUPS} == GROUPS
    hostvars = inventory["_meta"]["hostvars"]
    assert len(hostvars) == 5 and all(host["ansible_become"] is True for host in hostvars.values())
    assert hostvars["edge-1"]["consul_datacenter"] == "fra1"
    # moorage reads it the same way (a directory inventory; no vault file: no password needed).
    assert [host.name for host in load_inventory(EXAMPLE).hosts("lb")] == ["edge-1"]


def test_every_variable_the_example_sets_is_declared_by_a_role_and_passes_its_declaration() -> None:
    roles = role_options()
    variables = {name: value for name, value in example_variables().items() if not name.startswith("ansible_")}
    undeclared = sorted(name for name in variables if not any(name in options for options in roles.values()))
    assert undeclared == []
    for role, options in roles.items():
        mine = {name: value for name, value in variables.items() if name in options}
        if not mine:
            continue
        spec = {
            name: {key: value for key, value in options[name].items() if key not in ("description", "default", "required")} for name in mine
        }
        result = ArgumentSpecValidator(spec).validate(mine)
        assert result.error_messages == [], f"roles/{role}: {result.error_messages}"


def test_the_example_sets_what_every_site_decides() -> None:
    variables = example_variables()
    for name in ("consul_datacenter", "consul_install_source", "nginx_ingress_listen", "prometheus_retention_time", "logging_server_group"):
        assert name in variables, name
