"""Dynamic ports (moorage.plan.assign_ports, moorage.ports): a spec without `port` gets a free one per instance.

The planner is pure, so most tests hand it what Consul would say (a PortBook: the ports other
services' releases use per host, and the ports of this service's running release) and check what
a person notices: the ports in the plan, the same ones on a re-plan, and one-line errors. The last
ones read and claim ports in a real Consul dev agent (moorage.deploy.ports), as deploys do.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import consul
import pytest
from hypothesis import given
from hypothesis import strategies as st
from release_samples import sample_release

from moorage.deploy.keys import PORT_CLAIMS, ROOT
from moorage.deploy.ports import claimed_plan, ports_in_use
from moorage.deploy.releases import ReleaseStore
from moorage.errors import BadInput
from moorage.inventory import InventoryHost, load_inventory
from moorage.plan import Plan, assign_ports, plan_service
from moorage.ports import DEFAULT_DYNAMIC_PORTS, PortBook, PortRange, PortUser
from moorage.spec.model import ServiceSpec


def service(name: str = "portless-a", replicas: int = 2, max_per_host: int = 2, port: int | None = None) -> ServiceSpec:
    body: dict[str, object] = {
        "runtime": "systemd",
        "artifact": "./app",
        "command": ["python3", "app.py", "--port", "${PORT}"],
        "replicas": replicas,
        "placement": {"group": "app", "maxPerHost": max_per_host},
        "health": {"http": "/healthz"},
        "routes": [{"host": f"{name}.example.test"}],
        "metrics": {},
    }
    if port is not None:
        body["port"] = port
    return ServiceSpec.model_validate({"apiVersion": "moorage/v1", "kind": "Service", "metadata": {"name": name}, "spec": body})


def hosts(count: int, ports: PortRange = DEFAULT_DYNAMIC_PORTS) -> list[InventoryHost]:
    return [InventoryHost(f"lab-{number}", f"10.66.0.{10 + number}", ports) for number in range(1, count + 1)]


def book_of(*plans: Plan, previous: Plan | None = None) -> PortBook:
    """What moorage.deploy.ports reads from Consul: other services' instances per host, this one's last plan."""
    taken: dict[str, dict[int, PortUser]] = {}
    for plan in plans:
        for instance in plan.all_instances:
            assert instance.port is not None
            taken.setdefault(instance.host, {})[instance.port] = PortUser(instance.id, 1)
    previous_ports = {} if previous is None else {instance.id: (instance.host, instance.port) for instance in previous.all_instances}
    return PortBook(taken=taken, previous=previous_ports)


def ports_on(plan: Plan) -> dict[str, list[int | None]]:
    by_host: dict[str, list[int | None]] = {}
    for instance in plan.all_instances:
        by_host.setdefault(instance.host, []).append(instance.port)
    return by_host


# --- the spec ---------------------------------------------------------------------------


def test_a_spec_with_routes_metrics_and_http_health_needs_no_port() -> None:
    assert service().spec.port is None


# --- giving ports -----------------------------------------------------------------------


def test_instances_without_a_fixed_port_get_the_lowest_free_ports_of_their_hosts_range() -> None:
    plan = plan_service(service(replicas=4), hosts(2))
    assert sorted(ports_on(plan).items()) == [("lab-1", [20000, 20001]), ("lab-2", [20000, 20001])]


def test_two_services_on_the_same_hosts_never_share_a_port() -> None:
    first = plan_service(service("portless-a", replicas=4), hosts(2))
    second = plan_service(service("portless-b", replicas=4), hosts(2), ports=book_of(first))
    for host in ("lab-1", "lab-2"):
        assert not set(ports_on(first)[host]) & set(ports_on(second)[host])
    assert sorted(port for port in ports_on(second)["lab-1"] if port is not None) == [20002, 20003]


def test_a_dynamic_service_steers_clear_of_a_fixed_port_in_its_range() -> None:
    fixed = plan_service(service("fixed", replicas=2, max_per_host=1, port=20000), hosts(2))
    dynamic = plan_service(service("portless-a", replicas=2, max_per_host=1), hosts(2), ports=book_of(fixed))
    assert {instance.port for instance in dynamic.instances} == {20001}


def test_a_fixed_port_another_service_uses_on_a_host_is_refused_naming_both() -> None:
    dynamic = plan_service(service("portless-a", replicas=2, max_per_host=1), hosts(2))
    with pytest.raises(BadInput) as refused:
        plan_service(service("fixed", replicas=1, max_per_host=1, port=20000), hosts(2), ports=book_of(dynamic))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("port 20000 on host lab-") and "already taken by portless-a-" in message and "needed by fixed-1" in message


def test_a_replan_keeps_every_instance_on_its_port_even_when_lower_ports_came_free() -> None:
    group = hosts(2)
    other = plan_service(service("portless-b", replicas=2, max_per_host=1), group)
    first = plan_service(service(replicas=4), group, ports=book_of(other))
    # portless-b is removed: 20000 comes free on both hosts; portless-a keeps what it has.
    again = plan_service(service(replicas=4), group, ports=book_of(previous=first))
    assert again == first
    assert sorted(port for port in ports_on(again)["lab-1"] if port is not None) == [20001, 20002]


def test_scaling_up_keeps_the_ports_and_new_instances_take_free_ones() -> None:
    group = hosts(2)
    first = plan_service(service(replicas=2), group)
    scaled = plan_service(service(replicas=4), group, ports=book_of(previous=first))
    assert scaled.instances[:2] == first.instances
    assert all(ports.count(port) == 1 for ports in ports_on(scaled).values() for port in ports)


def test_a_new_instance_does_not_take_the_port_of_one_being_removed() -> None:
    group = hosts(1)
    first = plan_service(service(replicas=2), group)  # portless-a-1: 20000, portless-a-2: 20001
    # An instance that moves (here: its old record says another port) never reuses a port still running.
    moved = Plan(group="app", instances=(first.instances[0],), canaries=())
    book = PortBook(previous={"portless-a-1": ("lab-1", 20000), "portless-a-9": ("lab-1", 20001)})
    assert assign_ports(service(replicas=1), moved, group, book).instances[0].port == 20000
    grown = plan_service(service(replicas=2), group, ports=book)
    assert [instance.port for instance in grown.instances] == [20000, 20002]


def test_a_canary_beside_its_primary_gets_a_port_of_its_own() -> None:
    group = hosts(1)
    current = plan_service(service(replicas=1), group)
    canary = plan_service(service(replicas=1), group, canaries=1, ports=book_of(previous=current))
    assert canary.instances == current.instances
    assert [instance.port for instance in canary.canaries] == [20001]


def test_an_instance_whose_port_another_service_took_gets_a_free_one() -> None:
    group = hosts(1)
    first = plan_service(service(replicas=1), group)
    intruder = PortBook(taken={"lab-1": {20000: PortUser("portless-b-1", 3)}}, previous={"portless-a-1": ("lab-1", 20000)})
    assert plan_service(service(replicas=1), group, ports=intruder).instances[0].port == 20001
    assert first.instances[0].port == 20000


def test_an_instance_that_had_a_fixed_port_outside_the_range_gets_one_in_it() -> None:
    group = hosts(1)
    fixed = plan_service(service(replicas=1, port=8080), group)
    dynamic = plan_service(service(replicas=1), group, ports=book_of(previous=fixed))
    assert dynamic.instances[0].port == 20000


def test_a_rollback_keeps_ports_even_on_a_host_that_left_the_group() -> None:
    older = plan_service(service(replicas=3, max_per_host=1), hosts(3))
    again = assign_ports(service(replicas=3, max_per_host=1), older, hosts(2), book_of(previous=older))
    assert again == older


def test_a_full_range_is_one_line_naming_the_host_and_the_range() -> None:
    group = hosts(1, PortRange(20000, 20002))
    other = plan_service(service("portless-b", replicas=2), group)
    with pytest.raises(BadInput) as refused:
        plan_service(service(replicas=2), group, ports=book_of(other))
    message = str(refused.value)
    assert "\n" not in message
    assert message == (
        "no free port on host lab-1 for portless-a-2: all 3 ports of its range 20000-20002 (moorage_dynamic_ports) "
        "are in use (2 by other services, 1 by portless-a)"
    )


@given(
    host_count=st.integers(min_value=1, max_value=4),
    replicas=st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=5),
)
def test_any_number_of_services_deployed_one_after_another_share_no_port_on_any_host(host_count: int, replicas: list[int]) -> None:
    group = hosts(host_count)
    plans: list[Plan] = []
    for number, count in enumerate(replicas):
        plans.append(plan_service(service(f"svc-{number}", replicas=count, max_per_host=6), group, ports=book_of(*plans)))
    used = Counter((instance.host, instance.port) for plan in plans for instance in plan.all_instances)
    assert all(count == 1 for count in used.values())
    assert all(port in DEFAULT_DYNAMIC_PORTS for _, port in used)


# --- the range, from the inventory --------------------------------------------------------


def test_the_range_comes_from_the_inventory_per_host_with_a_default(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[app]\nlab-1\nlab-2 moorage_dynamic_ports=30000-30009\n\n[all:vars]\nmoorage_dynamic_ports=20000-20999\n")
    (tmp_path / "default.ini").write_text("[app]\nlab-1\n")
    assert [host.ports for host in load_inventory(inventory).hosts("app")] == [PortRange(20000, 20999), PortRange(30000, 30009)]
    assert load_inventory(tmp_path / "default.ini").hosts("app")[0].ports == PortRange(20000, 29999)


@pytest.mark.parametrize("value", ["20000", "30000-20000", "0-10", "20000-70000", "a-b"])
def test_a_bad_range_in_the_inventory_is_one_line_of_bad_input_naming_host_and_variable(tmp_path: Path, value: str) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"[app]\nlab-1 moorage_dynamic_ports={value}\n")
    with pytest.raises(BadInput) as refused:
        load_inventory(inventory)
    assert str(refused.value).startswith(f"{inventory}: host 'lab-1': moorage_dynamic_ports: ")
    assert "\n" not in str(refused.value)


# --- the ports in use, from a real Consul (moorage.deploy.ports) -------------------------------


@pytest.fixture
def empty_kv(client: consul.Consul) -> consul.Consul:
    client.kv.delete(f"{ROOT}/", recurse=True)
    client.kv.delete(PORT_CLAIMS)
    return client


def test_the_ports_of_another_services_running_release_are_in_use(empty_kv: consul.Consul) -> None:
    store = ReleaseStore(empty_kv, "hello")
    release = store.create(sample_release("1"), "deployed")  # examples/hello: fixed port 8080 on app1..app3
    book = ports_in_use(empty_kv, "portless-a", None).book
    assert {(host, port, user.instance) for host, ports in book.taken.items() for port, user in ports.items()} == {
        (instance.host, instance.port, instance.id) for instance in release.plan.instances
    }
    assert all(user.describe().endswith(f"(release {release.number})") for ports in book.taken.values() for user in ports.values())
    assert ports_in_use(empty_kv, "hello", release.plan).book.taken == {}  # its own ports are its previous ones
    assert ports_in_use(empty_kv, "hello", release.plan).book.previous["hello-1"] == (release.plan.instances[0].host, 8080)


def test_a_deploy_that_planned_from_the_same_state_as_another_plans_again_around_its_ports(empty_kv: consul.Consul) -> None:
    group = hosts(2)
    calls: list[int] = []
    b_plan: list[Plan] = []

    def plan_a(book: PortBook) -> Plan:
        calls.append(1)
        if len(calls) == 1:  # portless-b's deploy claims its ports between portless-a's reading and its write
            b_plan.append(claimed_plan(empty_kv, "portless-b", None, lambda ports: plan_service(service("portless-b"), group, ports=ports)))
        return plan_service(service("portless-a"), group, ports=book)

    a_plan = claimed_plan(empty_kv, "portless-a", None, plan_a)
    assert len(calls) == 2
    used = [(instance.host, instance.port) for plan in (a_plan, *b_plan) for instance in plan.all_instances]
    assert len(used) == len(set(used)) == 4
    claimed = ports_in_use(empty_kv, "portless-c", None).book
    assert {(host, port) for host, ports in claimed.taken.items() for port in ports} == set(used)
    assert {user.describe() for ports in claimed.taken.values() for user in ports.values()} == {
        f"portless-{name}-{n} (being deployed)" for name in "ab" for n in (1, 2)
    }


def test_a_services_next_plan_replaces_its_claim(empty_kv: consul.Consul) -> None:
    group = hosts(1)
    claimed_plan(empty_kv, "portless-a", None, lambda ports: plan_service(service(replicas=2), group, ports=ports))
    claimed_plan(empty_kv, "portless-a", None, lambda ports: plan_service(service(replicas=0), group, ports=ports))
    assert ports_in_use(empty_kv, "portless-b", None).book.taken == {}
