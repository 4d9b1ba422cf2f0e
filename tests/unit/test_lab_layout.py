"""The lab's layout: which machine plays which part (docs/lab.md, the table under Inventory)."""

from __future__ import annotations

from moorage.lab.inventory import groups_for


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
