"""The lab's Ansible inventory: which machine plays which part, and how Ansible reaches it.

Layout (the same for every size; small labs double up):
  consul_servers  the first three machines (all of them when fewer)
  lb              lab-1, and lab-3 in a lab of 4 or more (two ingress hosts, as a site has)
  monitoring      lab-2 (lab-1 in a one-machine lab)
  logging         lab-2 (lab-1 in a one-machine lab)
  app             every machine
  docker_hosts    the last machine (started so that Docker runs inside it)
"""

from __future__ import annotations

import io
from pathlib import Path

from ruamel.yaml import YAML

from moorage.lab.image import LAB_USER
from moorage.lab.ssh import SSH_OPTIONS

GROUPS = ("consul_servers", "lb", "monitoring", "logging", "app", "docker_hosts")
LB_PAIR_FROM_HOSTS = 4  # labs of this size and larger have two lb hosts


def groups_for(index: int, host_count: int) -> tuple[str, ...]:
    """The inventory groups of machine ``index`` (1-based) in a lab of ``host_count`` machines."""
    second = min(2, host_count)
    membership = {
        "consul_servers": index <= 3,
        "lb": index == 1 or (host_count >= LB_PAIR_FROM_HOSTS and index == 3),
        "monitoring": index == second,
        "logging": index == second,
        "app": True,
        "docker_hosts": index == host_count,
    }
    return tuple(group for group in GROUPS if membership[group])


def render(lab_name: str, hosts: list[tuple[str, str, tuple[str, ...]]], key: Path) -> str:
    """hosts.yml for ``hosts`` given as (hostname, address, groups)."""
    ssh_args = " ".join((*SSH_OPTIONS, "-o", "ControlMaster=auto", "-o", "ControlPersist=60s"))
    document = {
        "all": {
            "vars": {
                "ansible_user": LAB_USER,
                "ansible_become": True,  # the user has passwordless sudo; root does not log in
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": ssh_args,
                "ansible_python_interpreter": "/usr/bin/python3",
                "moorage_lab": lab_name,
            },
            "hosts": {hostname: {"ansible_host": address} for hostname, address, _ in hosts},
            "children": {group: {"hosts": {hostname: None for hostname, _, groups in hosts if group in groups}} for group in GROUPS},
        }
    }
    stream = io.StringIO()
    stream.write(f"# Written by `moorage lab up` for lab {lab_name!r}; rewritten on every run.\n")
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.dump(document, stream)
    return stream.getvalue()
