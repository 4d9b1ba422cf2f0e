"""Placement (moorage.plan) on inventories read by ansible-core (moorage.inventory)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.commands.options import chosen_inventory
from moorage.errors import BadInput
from moorage.inventory import InventoryHost, SshTarget, load_inventory
from moorage.plan import Plan, place, plan_service, with_replicas
from moorage.spec.model import ServiceSpec

INI_INVENTORY = """\
[app]
app1 ansible_host=10.66.0.11
app2 ansible_host=10.66.0.12
app3

[lb]
lb1 ansible_host=10.66.0.2

[web:children]
app
"""

YAML_INVENTORY = """\
all:
  children:
    app:
      hosts:
        node-b: {ansible_host: 10.0.0.2}
        node-a: {ansible_host: 10.0.0.1}
"""


def service(name: str = "hello", replicas: int = 3, max_per_host: int = 1, port: int | None = 8080) -> ServiceSpec:
    body: dict[str, object] = {
        "runtime": "systemd",
        "artifact": "./app",
        "command": ["python3", "app.py"],
        "replicas": replicas,
        "placement": {"group": "app", "maxPerHost": max_per_host},
    }
    if port is not None:
        body["port"] = port
    return ServiceSpec.model_validate({"apiVersion": "moorage/v1", "kind": "Service", "metadata": {"name": name}, "spec": body})


def hosts(count: int) -> list[InventoryHost]:
    return [InventoryHost(f"app{number}", f"10.66.0.{10 + number}") for number in range(1, count + 1)]


# --- inventory -------------------------------------------------------------------------


def test_ini_inventory_gives_groups_children_and_addresses(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(INI_INVENTORY)
    inventory = load_inventory(path)
    assert inventory.hosts("app") == (
        InventoryHost("app1", "10.66.0.11"),
        InventoryHost("app2", "10.66.0.12"),
        InventoryHost("app3", "app3"),  # no ansible_host: the name is the address
    )
    assert [host.name for host in inventory.hosts("web")] == ["app1", "app2", "app3"]  # through children
    assert inventory.hosts("lb") == (InventoryHost("lb1", "10.66.0.2"),)


def test_yaml_inventory_hosts_come_sorted_by_name(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(YAML_INVENTORY)
    assert load_inventory(path).hosts("app") == (InventoryHost("node-a", "10.0.0.1"), InventoryHost("node-b", "10.0.0.2"))


def test_inventory_directory_with_host_vars_is_read_like_ansible_does(tmp_path: Path) -> None:
    (tmp_path / "inventory" / "host_vars").mkdir(parents=True)
    (tmp_path / "inventory" / "hosts.ini").write_text(INI_INVENTORY)
    (tmp_path / "inventory" / "host_vars" / "app3.yml").write_text("ansible_host: 10.66.0.13\n")
    assert load_inventory(tmp_path / "inventory").hosts("app")[2] == InventoryHost("app3", "10.66.0.13")


def test_missing_inventory_is_bad_input_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"^.*/nowhere\.ini: inventory not found$"):
        load_inventory(tmp_path / "nowhere.ini")


def test_unreadable_inventory_is_one_line_of_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text("app:\n  - [broken\n")
    with pytest.raises(BadInput) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a readable Ansible inventory (")
    assert "\n" not in message


def test_unknown_group_is_bad_input_naming_group_file_and_the_groups_there(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(INI_INVENTORY)
    with pytest.raises(BadInput, match=r"hosts\.ini: no group 'workers' in the inventory \(groups: app, lb, web\)$"):
        load_inventory(path).hosts("workers")


def test_the_cli_prefers_the_given_inventory(tmp_path: Path) -> None:
    (tmp_path / "given.ini").write_text(INI_INVENTORY)
    assert chosen_inventory(tmp_path / "given.ini") == tmp_path / "given.ini"


def test_the_cli_falls_back_to_the_running_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("MOORAGE_LAB", "testlab")
    with pytest.raises(BadInput, match=r"^no inventory: pass -i INVENTORY, set MOORAGE_INVENTORY or start the lab with 'moorage lab up'$"):
        chosen_inventory(None)
    lab_inventory = tmp_path / "labs" / "testlab" / "hosts.yml"
    lab_inventory.parent.mkdir(parents=True)
    lab_inventory.write_text(YAML_INVENTORY)
    assert chosen_inventory(None) == lab_inventory


def test_ssh_targets_come_from_the_inventory_like_ansible_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(
        "all:\n  vars: {ansible_user: deploy, ansible_ssh_common_args: '-o StrictHostKeyChecking=no -o LogLevel=ERROR'}\n"
        "  hosts:\n    web1: {ansible_host: 10.0.0.5, ansible_port: 2222, ansible_ssh_private_key_file: /keys/id}\n    web2:\n"
    )
    inventory = load_inventory(path)
    assert inventory.ssh_target("web1") == SshTarget(
        "10.0.0.5", "deploy", 2222, "/keys/id", ("-o", "StrictHostKeyChecking=no", "-o", "LogLevel=ERROR")
    )
    assert inventory.ssh_target("web2").address == "web2"
    assert all(type(host.name) is str and type(host.address) is str for host in inventory.hosts("all"))  # no Ansible str subclasses
    with pytest.raises(BadInput, match=r"hosts\.yml: no host 'web3'$"):
        inventory.ssh_target("web3")


# --- placement -------------------------------------------------------------------------


def test_instances_are_numbered_and_carry_their_host_address() -> None:
    plan = place(service(replicas=3), hosts(3))
    assert [instance.id for instance in plan] == ["hello-1", "hello-2", "hello-3"]
    assert [instance.index for instance in plan] == [1, 2, 3]
    assert sorted(instance.host for instance in plan) == ["app1", "app2", "app3"]
    by_name = {host.name: host.address for host in hosts(3)}
    assert all(instance.address == by_name[instance.host] for instance in plan)


def test_placement_does_not_depend_on_the_order_the_inventory_lists_hosts() -> None:
    assert place(service(replicas=5, max_per_host=2), hosts(3)) == place(service(replicas=5, max_per_host=2), list(reversed(hosts(3))))


def test_first_instance_on_a_host_gets_the_port_and_others_the_next_ports() -> None:
    plan = place(service(replicas=4, max_per_host=2), hosts(2))
    ports_by_host: dict[str, list[int | None]] = {}
    for instance in plan:
        ports_by_host.setdefault(instance.host, []).append(instance.port)
    assert ports_by_host == {"app1": [8080, 8081], "app2": [8080, 8081]}


def test_a_service_without_port_gets_instances_without_port() -> None:
    assert {instance.port for instance in place(service(replicas=2, port=None), hosts(2))} == {None}


def test_too_many_replicas_is_bad_input_naming_group_and_numbers() -> None:
    with pytest.raises(BadInput, match=r"^spec\.replicas: 5 instances do not fit group 'app': 2 host\(s\) x maxPerHost 2 = 4 at most$"):
        place(service(replicas=5, max_per_host=2), hosts(2))
    with pytest.raises(BadInput, match="0 host"):
        place(service(replicas=1), [])


def test_a_count_no_group_of_hosts_holds_is_refused_before_placing_anything() -> None:
    # Valid for Kubernetes (int32), so `validate` takes it; placing 2**31 instances would hang.
    huge = service(replicas=2**31 - 1, max_per_host=2**31 - 1, port=None)
    with pytest.raises(BadInput, match=r"3 host\(s\) x 1000 \(the most instances the classic target runs on one host\) = 3000"):
        place(huge, hosts(3))


def test_zero_replicas_is_an_empty_plan() -> None:
    assert place(service(replicas=0), hosts(2)) == ()


def test_canaries_are_the_next_instances_placed_by_the_same_rule() -> None:
    plan = plan_service(service(replicas=3, max_per_host=2), hosts(3), canaries=2)
    widened = place(service(replicas=5, max_per_host=2), hosts(3))
    assert plan == Plan(group="app", instances=widened[:3], canaries=widened[3:])
    assert [instance.id for instance in plan.all_instances] == [f"hello-{n}" for n in range(1, 6)]
    assert plan.without_canaries() == Plan(group="app", instances=widened[:3])


def test_canaries_that_do_not_fit_name_the_option() -> None:
    with pytest.raises(BadInput, match=r"^--canary 2: spec\.replicas: 5 instances do not fit group 'app'"):
        plan_service(service(replicas=3), hosts(3), canaries=2)


def test_a_scale_replan_keeps_every_instance_where_it_is() -> None:
    deployed = service(replicas=3, max_per_host=2)
    assert with_replicas(deployed, 5).spec.replicas == 5 and deployed.spec.replicas == 3
    assert plan_service(with_replicas(deployed, 5), hosts(3)).instances[:3] == plan_service(deployed, hosts(3)).instances


def test_different_services_do_not_all_start_on_the_same_host() -> None:
    first_hosts = {place(service(name=f"svc-{number}", replicas=1), hosts(3))[0].host for number in range(20)}
    assert len(first_hosts) > 1


@given(
    host_count=st.integers(min_value=1, max_value=7),
    max_per_host=st.integers(min_value=1, max_value=3),
    data=st.data(),
)
def test_placement_is_balanced_capped_and_stable_when_scaling(host_count: int, max_per_host: int, data: st.DataObject) -> None:
    capacity = host_count * max_per_host
    replicas = data.draw(st.integers(min_value=0, max_value=capacity - 1))
    group = hosts(host_count)
    plan = place(service(replicas=replicas, max_per_host=max_per_host), group)
    scaled_up = place(service(replicas=replicas + 1, max_per_host=max_per_host), group)

    per_host = Counter(instance.host for instance in plan)
    loads = [per_host.get(host.name, 0) for host in group]
    assert max(loads) - min(loads) <= 1  # balanced
    assert max(loads) <= max_per_host
    for host_name in per_host:  # ports distinct on each host, starting at spec.port
        ports = sorted(instance.port for instance in plan if instance.host == host_name)
        assert ports == list(range(8080, 8080 + len(ports)))
    assert scaled_up[:replicas] == plan  # scaling up moves nothing; scaling down drops the highest
    assert scaled_up[-1].id == f"hello-{replicas + 1}"
