"""The lab's layout: which machine plays which part (docs/lab.md, the table under Inventory), and how Ansible reaches it."""

from __future__ import annotations

from pathlib import Path

import yaml

from moorage.inventory import load_inventory
from moorage.lab.inventory import groups_for, render


def hosts_of(group: str, host_count: int) -> list[str]:
    return [f"lab-{index}" for index in range(1, host_count + 1) if group in groups_for(index, host_count)]


def test_labs_of_four_machines_and_more_have_two_lb_hosts() -> None:
    assert [hosts_of("lb", count) for count in (1, 2, 3, 4, 10)] == [
        ["lab-1"],
        ["lab-1"],
        ["lab-1"],
        ["lab-1", "lab-3"],
        ["lab-1", "lab-3"],
    ]


def test_the_other_groups_keep_their_places() -> None:
    assert hosts_of("consul_servers", 4) == ["lab-1", "lab-2", "lab-3"]
    assert hosts_of("monitoring", 4) == hosts_of("logging", 4) == ["lab-2"]
    assert hosts_of("monitoring", 1) == ["lab-1"]
    assert hosts_of("docker_hosts", 4) == ["lab-4"]
    assert hosts_of("app", 4) == ["lab-1", "lab-2", "lab-3", "lab-4"]


def test_ansible_logs_in_as_the_lab_user_and_becomes_root(tmp_path: Path) -> None:
    hosts = [(f"lab-{index}", f"10.0.0.{10 + index}", groups_for(index, 2)) for index in (1, 2)]
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(render("mylab", hosts, tmp_path / "id_ed25519"))

    variables = yaml.safe_load(inventory.read_text())["all"]["vars"]
    assert (variables["ansible_user"], variables["ansible_become"]) == ("moorage", True)  # root does not log in
    target = load_inventory(inventory).ssh_target("lab-2")  # as moorage's own commands reach it (sudo -n for root)
    assert (target.user, target.address) == ("moorage", "10.0.0.12")
