"""The ports in use on the platform, from Consul KV: what the planner needs to give dynamic ports.

Two sources, both per host:

- the releases of the other services that run or may run: each one's newest deployed release and
  every release after it (a canary, one being deployed). Older releases are not counted: a rollback
  to one re-plans its ports (``moorage.plan.assign_ports``).
- the claims (``moorage/ports/claims``): the ports of the plan each service's last deploy (or scale,
  rollback) made, written before that deploy touches a host. They cover a deploy between planning
  and recording its release. The document is written with check-and-set on its ``ModifyIndex``,
  so of two deploys that planned from the same state only one writes; the other reads again and
  plans around the first one's ports (:func:`claimed_plan`). A service's claim is replaced by its
  next plan, so ports it gave up come free then.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import consul

from moorage.deploy.keys import PORT_CLAIMS, ROOT
from moorage.errors import MoorageError
from moorage.plan import Plan
from moorage.ports import PortBook, PortUser
from moorage.release import Release, release_from_json

CLAIM_ATTEMPTS = 20


@dataclass(frozen=True)
class PortsInUse:
    """One reading of Consul: the book for the planner, and the claims document as it was read."""

    book: PortBook
    claims: dict[str, list[dict[str, Any]]]  # service -> [{instance, host, port}]
    index: int  # the claims key's ModifyIndex (0: no such key yet)


def ports_in_use(client: consul.Consul, service: str, current: Plan | None) -> PortsInUse:
    """Ports other services use per host, and the ports ``service``'s ``current`` plan gives its instances."""
    taken: dict[str, dict[int, PortUser]] = {}
    _, entries = client.kv.get(f"{ROOT}/", recurse=True)
    by_service: dict[str, list[Release]] = {}
    for entry in entries or []:
        parts = entry["Key"].split("/")
        # moorage/services/NAME/releases/N
        if len(parts) != 5 or parts[3] != "releases" or parts[2] == service or not entry["Value"]:
            continue
        by_service.setdefault(parts[2], []).append(release_from_json(entry["Value"], entry["Key"]))
    for releases in by_service.values():
        for release in in_use(releases):
            for instance in release.plan.all_instances:
                if instance.port is not None:
                    taken.setdefault(instance.host, {}).setdefault(instance.port, PortUser(instance.id, release.number))
    _, entry = client.kv.get(PORT_CLAIMS)
    claims: dict[str, list[dict[str, Any]]] = json.loads(entry["Value"]) if entry is not None and entry["Value"] else {}
    for name, claimed in claims.items():
        if name != service:
            for item in claimed:
                taken.setdefault(str(item["host"]), {}).setdefault(int(item["port"]), PortUser(str(item["instance"]), None))
    previous = {} if current is None else {instance.id: (instance.host, instance.port) for instance in current.all_instances}
    return PortsInUse(PortBook(taken=taken, previous=previous), claims, 0 if entry is None else int(entry["ModifyIndex"]))


def in_use(releases: list[Release]) -> list[Release]:
    """The releases of one service whose instances may run: the newest deployed and all after it."""
    ordered = sorted(releases, key=lambda release: release.number)
    deployed = [release.number for release in ordered if release.status == "deployed"]
    since = deployed[-1] if deployed else 0
    return [release for release in ordered if release.number >= since]


def claimed_plan(client: consul.Consul, service: str, current: Plan | None, make_plan: Callable[[PortBook], Plan]) -> Plan:
    """``make_plan`` with the ports in use, its ports claimed for ``service`` (planned again if another deploy claimed first)."""
    for _ in range(CLAIM_ATTEMPTS):
        reading = ports_in_use(client, service, current)
        plan = make_plan(reading.book)
        mine = [
            {"instance": instance.id, "host": instance.host, "port": instance.port}
            for instance in plan.all_instances
            if instance.port is not None
        ]
        claims = {name: claimed for name, claimed in reading.claims.items() if name != service}
        if mine:
            claims[service] = mine
        if claims == reading.claims or client.kv.put(PORT_CLAIMS, json.dumps(claims, sort_keys=True), cas=reading.index):
            return plan
    raise MoorageError(f"{service}: the ports in use changed {CLAIM_ATTEMPTS} times while planning (other deploys); deploy again")


def release_claims(client: consul.Consul, service: str) -> bool:
    """``service``'s port claims go (it was removed): True when it had some."""
    for _ in range(CLAIM_ATTEMPTS):
        _, entry = client.kv.get(PORT_CLAIMS)
        claims: dict[str, Any] = json.loads(entry["Value"]) if entry is not None and entry["Value"] else {}
        if entry is None or service not in claims:
            return False
        del claims[service]
        if client.kv.put(PORT_CLAIMS, json.dumps(claims, sort_keys=True), cas=int(entry["ModifyIndex"])):
            return True
    raise MoorageError(f"{service}: the port claims changed {CLAIM_ATTEMPTS} times while releasing them (other deploys); run it again")
