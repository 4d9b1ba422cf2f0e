"""Start-first planning (moorage.plan.start_beside, moorage.deploy.changes): a new release of an instance
starts beside the old one, so the two need different identities and ports while both run.

What a person notices: which order a spec gets (``update.order``; start-first for a service with
volumes), the instance's identity and port in each release (alternating ``NAME-k`` / ``NAME-kb`` and
two ports), that a re-plan of what runs changes nothing, and what ``moorage plan`` calls it (a
replace, not an add and a remove).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from moorage.deploy.changes import changes, removed_instances, replaced_beside
from moorage.deploy.releases import draft
from moorage.errors import BadInput
from moorage.inventory import InventoryHost
from moorage.plan import Plan, other_side, plan_service, start_beside
from moorage.ports import PortBook, PortUser
from moorage.release import Release
from moorage.spec.loader import SpecFile
from moorage.spec.model import ServiceSpec
from moorage.spec.schema import spec_json_schema

HOSTS = [InventoryHost(f"lab-{number}", f"10.66.0.{10 + number}") for number in range(1, 4)]


def service(
    *, volumes: bool = True, order: str | None = None, port: int | None = 8060, replicas: int = 1, max_per_host: int = 1
) -> ServiceSpec:
    update: dict[str, object] = {"minHealthy": "2s", "healthyDeadline": "30s"}
    if order is not None:
        update["order"] = order
    body: dict[str, object] = {
        "runtime": "systemd",
        "artifact": "./app",
        "command": ["python3", "app.py", "--port", "${PORT}"],
        "replicas": replicas,
        "placement": {"group": "app", "maxPerHost": max_per_host},
        "health": {"http": "/healthz"},
        "routes": [{"host": "notes.example.test"}],
        "update": update,
    }
    if volumes:
        body["volumes"] = [{"name": "data", "path": "/var/lib/notes"}]
    if port is not None:
        body["port"] = port
    return ServiceSpec.model_validate({"apiVersion": "moorage/v1", "kind": "Service", "metadata": {"name": "notes"}, "spec": body})


def running(plan: Plan) -> PortBook:
    """What Consul says when ``plan`` runs: its instances' hosts and ports."""
    return PortBook(previous={instance.id: (instance.host, instance.port) for instance in plan.all_instances})


def ids_and_ports(plan: Plan) -> list[tuple[str, str, int | None]]:
    return [(instance.id, instance.host, instance.port) for instance in plan.instances]


def release(model: ServiceSpec, plan: Plan, version: str) -> Release:
    return draft(version, "spec-" + version, SpecFile(model, Path("notes.yml"), "", None, None), plan)


# --- which order a spec gets ---------------------------------------------------------------------


def test_a_service_with_volumes_starts_first_unless_it_says_stop_first() -> None:
    assert service().spec.starts_first
    assert not service(order="stop-first").spec.starts_first
    assert not service(volumes=False).spec.starts_first  # stateless: drained and replaced in place, as before
    assert service(volumes=False, order="start-first").spec.starts_first


def test_update_order_takes_only_its_two_words_and_the_schema_says_so() -> None:
    with pytest.raises(ValidationError):
        service(order="blue-green")
    order = spec_json_schema()["$defs"]["Update"]["properties"]["order"]
    assert {"enum": ["start-first", "stop-first"], "type": "string"} in order["anyOf"], order


# --- identities and ports ------------------------------------------------------------------------


def test_the_other_identity_of_an_instance_and_back() -> None:
    assert other_side("notes-1") == "notes-1b"
    assert other_side("notes-1b") == "notes-1"
    assert other_side("web-12") == "web-12b"  # a service whose name ends in b: the index part decides


def test_a_fixed_port_instance_alternates_between_two_identities_and_two_ports() -> None:
    model = service()
    first = plan_service(model, HOSTS)
    [(name, host, port)] = ids_and_ports(first)
    assert (name, port) == ("notes-1", 8060)
    second = start_beside(model, plan_service(model, HOSTS, ports=running(first)), HOSTS, running(first))
    assert ids_and_ports(second) == [("notes-1b", host, 8061)]  # beside the old one, on the same host and volume
    third = start_beside(model, plan_service(model, HOSTS, ports=running(second)), HOSTS, running(second))
    assert ids_and_ports(third) == [("notes-1", host, 8060)]


def test_a_plan_keeps_the_identity_an_instance_runs_under_so_a_redeploy_changes_nothing() -> None:
    model = service()
    first = plan_service(model, HOSTS)
    now = start_beside(model, first, HOSTS, running(first))
    again = plan_service(model, HOSTS, ports=running(now))
    assert ids_and_ports(again) == ids_and_ports(now)
    assert not changes(release(model, now, "2"), again, "2", "spec-2").pending


def test_a_dynamic_port_instance_gets_a_port_its_old_self_does_not_hold_like_a_canary() -> None:
    model = service(port=None)
    first = plan_service(model, HOSTS)
    [(_, host, port)] = ids_and_ports(first)
    second = start_beside(model, plan_service(model, HOSTS, ports=running(first)), HOSTS, running(first))
    assert ids_and_ports(second) == [("notes-1b", host, port + 1)]  # type: ignore[operator]
    third = start_beside(model, plan_service(model, HOSTS, ports=running(second)), HOSTS, running(second))
    assert ids_and_ports(third) == [("notes-1", host, port)]


def test_a_stop_first_service_is_replaced_under_the_same_identity_and_port() -> None:
    model = service(order="stop-first")
    first = plan_service(model, HOSTS)
    assert start_beside(model, plan_service(model, HOSTS, ports=running(first)), HOSTS, running(first)) == first


def test_only_instances_that_run_on_their_host_move_aside_and_canaries_stay() -> None:
    model = service(volumes=False, order="start-first", replicas=2)
    one = plan_service(service(volumes=False, order="start-first", replicas=1), HOSTS)
    with_canary = plan_service(model, HOSTS, canaries=1, ports=running(one))
    moved = start_beside(model, with_canary, HOSTS, running(with_canary))
    assert [instance.id for instance in moved.instances] == ["notes-1b", "notes-2b"]
    assert moved.canaries == with_canary.canaries
    fresh = start_beside(model, plan_service(model, HOSTS, ports=running(one)), HOSTS, running(one))
    assert [instance.id for instance in fresh.instances] == ["notes-1b", "notes-2"]  # notes-2 is new: nothing to start beside


def test_scaling_keeps_the_identity_each_instance_runs_under() -> None:
    model = service(volumes=False, order="start-first", replicas=2)
    first = plan_service(model, HOSTS)
    now = start_beside(model, first, HOSTS, running(first))
    scaled = plan_service(service(volumes=False, order="start-first", replicas=3), HOSTS, ports=running(now))
    assert [instance.id for instance in scaled.instances] == ["notes-1b", "notes-2b", "notes-3"]
    assert [instance.port for instance in scaled.instances[:2]] == [instance.port for instance in now.instances]


def test_the_second_port_of_a_fixed_port_is_checked_like_any_port() -> None:
    model = service()
    first = plan_service(model, HOSTS)
    host = first.instances[0].host
    taken = PortBook(taken={host: {8061: PortUser("other-1", 4)}}, previous=running(first).previous)
    with pytest.raises(BadInput, match=r"port 8061 on host lab-\d is already taken by other-1 \(release 4\), needed by notes-1b"):
        start_beside(model, plan_service(model, HOSTS, ports=taken), HOSTS, taken)
    with pytest.raises(BadInput, match=r"start-first release beside the old one.*update\.order: stop-first"):
        plan_service(service(port=65535), HOSTS)
    assert plan_service(service(port=65535, order="stop-first"), HOSTS).instances[0].port == 65535


# --- what the diff calls it ----------------------------------------------------------------------


def test_moving_aside_is_a_replace_and_the_old_identity_goes_in_its_batch_not_at_the_end() -> None:
    model = service()
    first = plan_service(model, HOSTS)
    current = release(model, first, "1")
    second = start_beside(model, plan_service(model, HOSTS, ports=running(first)), HOSTS, running(first))
    diff = changes(current, second, "2", "spec-2")
    assert [(row.instance, row.port, row.action) for row in diff.instances] == [("notes-1b", 8061, "replace")]
    assert removed_instances(current, second) == []
    assert replaced_beside(current, second.instances) == {"notes-1b": first.instances[0]}


def test_an_instance_on_another_host_is_not_replaced_beside() -> None:
    model = service()
    first = plan_service(model, HOSTS)
    moved = replace(first.instances[0], id="notes-1b", host="lab-9")
    assert replaced_beside(release(model, first, "1"), [moved]) == {}
    assert [instance.id for instance in removed_instances(release(model, first, "1"), replace(first, instances=(moved,)))] == ["notes-1"]
