"""Placement: which instance of a service runs on which host, on which port.

The rule, simple enough to do by hand:

1. The hosts of ``spec.placement.group`` are put in a per-service order: sorted by
   ``sha256(service name + host name)`` (rendezvous order), so different services start on
   different hosts instead of all piling onto the first one.
2. Instance ``k`` (1-based) goes to host ``(k - 1) mod H`` of that order, in slot
   ``(k - 1) div H`` of that host. Hosts therefore differ by at most one instance.
3. Ports. With a fixed ``spec.port``, slot ``s`` listens on ``spec.port + s``: the first instance
   on a host gets ``spec.port``. Without one (dynamic ports), every instance gets a port of its
   host's range (``moorage_dynamic_ports``, :mod:`moorage.ports`): the port it had in the release
   that runs now when it stays on the same host (and the port is still in the range and no other
   service's), else the lowest port of the range that no other service's release uses on that host
   and no other instance of this service has there.

Instance ``k``'s host depends only on ``k`` and the group, never on ``replicas``: scaling 3 -> 4
adds ``NAME-4`` and moves nothing; scaling down removes the highest-numbered instances.
``maxPerHost`` caps the slots per host, so at most ``H * maxPerHost`` instances fit.

Canaries are the next indexes after the planned instances (``NAME-(replicas+1)`` ...), placed by
the same rule; with dynamic ports a canary on its primary's host gets a port of its own.

Start-first (``update.order``, the default for a service with volumes): a new release of an
instance starts beside the old one on the same host, so the two need different identities and
ports while both run. Instance ``k`` therefore has two identities, ``NAME-k`` and ``NAME-kb``
(:func:`other_side`), and a deploy that replaces it uses the one that does not run now
(:func:`start_beside`): with dynamic ports it gets a port the way a canary does (none its service
holds on the host); with a fixed ``spec.port`` the ``b`` side listens on ``spec.port + maxPerHost
+ slot``, so it alternates between two ports. A plan keeps the identity each instance runs under
now (:func:`plan_service`), so a deploy of what runs changes nothing.

Everything here is pure: hosts and the ports in use (a :class:`moorage.ports.PortBook`) in, a
:class:`Plan` out.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from moorage.errors import BadInput
from moorage.inventory import InventoryHost
from moorage.ports import DEFAULT_DYNAMIC_PORTS, INVENTORY_VARIABLE, NO_PORTS_IN_USE, PortBook, PortRange
from moorage.spec.model import ServiceSpec


@dataclass(frozen=True)
class Instance:
    id: str  # NAME-INDEX, e.g. hello-2
    index: int  # 1-based
    host: str  # inventory host name
    address: str  # the host's ansible_host
    port: int | None  # None when the service listens on no port


BESIDE_SUFFIX = "b"  # NAME-kb: instance k's second identity, for a start-first release beside NAME-k


def other_side(instance_id: str) -> str:
    """The instance's other identity: ``notes-api-1`` <-> ``notes-api-1b``."""
    return instance_id.removesuffix(BESIDE_SUFFIX) if instance_id.endswith(BESIDE_SUFFIX) else instance_id + BESIDE_SUFFIX


# A unit, an env file and (usually) a port per instance: a VM runs hundreds, never millions.
# Kubernetes accepts any int32 replica count, so the spec does too; the classic target refuses
# what no group of hosts can hold before it plans a single instance.
MAX_INSTANCES_PER_HOST = 1000


def host_order(service_name: str, hosts: Sequence[InventoryHost]) -> list[InventoryHost]:
    """The service's own order of the hosts (rendezvous order, ties by name)."""
    return sorted(hosts, key=lambda host: (hashlib.sha256(f"{service_name}/{host.name}".encode()).hexdigest(), host.name))


@dataclass(frozen=True)
class Plan:
    """Where a release's instances run: the planned ones, and any canaries beside them."""

    group: str  # the inventory group the instances were placed on
    instances: tuple[Instance, ...]
    canaries: tuple[Instance, ...] = ()

    @property
    def all_instances(self) -> tuple[Instance, ...]:
        """The planned instances, then the canaries."""
        return (*self.instances, *self.canaries)

    def without_canaries(self) -> Plan:
        return replace(self, canaries=())


def plan_service(service: ServiceSpec, hosts: Sequence[InventoryHost], canaries: int = 0, ports: PortBook = NO_PORTS_IN_USE) -> Plan:
    """``spec.replicas`` instances on ``hosts``, and ``canaries`` more beside them, each with its port."""
    instances = place(service, hosts)
    extra: tuple[Instance, ...] = ()
    if canaries:
        try:
            extra = place(with_replicas(service, service.spec.replicas + canaries), hosts)[service.spec.replicas :]
        except BadInput as error:
            raise BadInput(f"--canary {canaries}: {error}") from None
    plan = Plan(
        group=service.spec.placement.group,
        instances=tuple(_as_running(service, instance, ports) for instance in instances),
        canaries=tuple(_as_running(service, instance, ports) for instance in extra),
    )
    return assign_ports(service, plan, hosts, ports)


def start_beside(service: ServiceSpec, plan: Plan, hosts: Sequence[InventoryHost], ports: PortBook) -> Plan:
    """``plan`` for a release that replaces its instances start-first (else ``plan`` as it is).

    Every planned instance that runs now on its host (``ports.previous``) gets its other identity
    and a port other than the ones its service holds there, so the new release can start beside the
    old one. Canaries are left as they are (they run beside the planned instances already).
    """
    if not service.spec.starts_first:
        return plan
    moved = tuple(_toggled(service, instance) if _runs_here(instance, ports) else instance for instance in plan.instances)
    return assign_ports(service, replace(plan, instances=moved), hosts, ports)


def _runs_here(instance: Instance, ports: PortBook) -> bool:
    running = ports.previous.get(instance.id)
    return running is not None and running[0] == instance.host


def _as_running(service: ServiceSpec, instance: Instance, ports: PortBook) -> Instance:
    """``instance`` (as placed: ``NAME-k``) under the identity it runs under now on its host."""
    if _runs_here(instance, ports) or not _runs_here(replace(instance, id=other_side(instance.id)), ports):
        return instance
    return _toggled(service, instance)


def _toggled(service: ServiceSpec, instance: Instance) -> Instance:
    """``instance`` under its other identity; a fixed port moves by ``maxPerHost`` with it (a dynamic one is given again)."""
    port = instance.port
    if service.spec.port is not None and port is not None:
        per_host = min(service.spec.placement.max_per_host, MAX_INSTANCES_PER_HOST)
        port = port - per_host if instance.id.endswith(BESIDE_SUFFIX) else port + per_host
    return replace(instance, id=other_side(instance.id), port=port)


def assign_ports(service: ServiceSpec, plan: Plan, hosts: Sequence[InventoryHost], ports: PortBook) -> Plan:
    """``plan`` with every instance's port: fixed ones checked against other services', dynamic ones given.

    Also for a plan made earlier (a rollback re-runs an older release's plan): a dynamic instance
    keeps the port it has now, so only ports another service took meanwhile change.
    """
    if service.spec.port is not None:
        for instance in plan.all_instances:
            user = None if instance.port is None else ports.user(instance.host, instance.port)
            if user is not None:
                raise BadInput(
                    f"port {instance.port} on host {instance.host} is already taken by {user.describe()}, needed by {instance.id}; "
                    "leave 'port' out of the spec to get a free one"
                )
        return plan
    # A host an older plan names that left the group (a rollback) has the default range.
    ranges = defaultdict(lambda: DEFAULT_DYNAMIC_PORTS, {host.name: host.ports for host in hosts})
    given: dict[str, int] = {}
    in_plan: dict[str, set[int]] = {}
    # Ports this service's running instances hold on each host: a new instance takes none of them.
    own: dict[str, set[int]] = {}
    for host, port in ports.previous.values():
        if port is not None:
            own.setdefault(host, set()).add(port)
    # First every instance that can keep its port, then the others, so none takes a port another keeps.
    for instance in plan.all_instances:
        previous = ports.previous.get(instance.id)
        if previous is None or previous[0] != instance.host or previous[1] is None:
            continue
        port = previous[1]
        if port in ranges[instance.host] and ports.user(instance.host, port) is None and port not in in_plan.get(instance.host, set()):
            given[instance.id] = port
            in_plan.setdefault(instance.host, set()).add(port)
    for instance in plan.all_instances:
        if instance.id not in given:
            given[instance.id] = _free_port(service.name, instance, ranges[instance.host], ports, own, in_plan)
            in_plan.setdefault(instance.host, set()).add(given[instance.id])
    return replace(
        plan,
        instances=tuple(replace(instance, port=given[instance.id]) for instance in plan.instances),
        canaries=tuple(replace(instance, port=given[instance.id]) for instance in plan.canaries),
    )


def _free_port(
    service: str, instance: Instance, span: PortRange, ports: PortBook, own: dict[str, set[int]], in_plan: dict[str, set[int]]
) -> int:
    """The lowest port of the host's range that nobody uses there."""
    host = instance.host
    taken = ports.taken.get(host, {})
    mine = own.get(host, set()) | in_plan.get(host, set())
    for port in span:
        if port not in taken and port not in mine:
            return port
    others = sum(1 for port in taken if port in span)
    raise BadInput(
        f"no free port on host {host} for {instance.id}: all {len(span)} ports of its range {span} "
        f"({INVENTORY_VARIABLE}) are in use ({others} by other services, {len(span) - others} by {service})"
    )


def with_replicas(service: ServiceSpec, replicas: int) -> ServiceSpec:
    """The same service with another replica count (``scale``; placement keeps every other instance where it is)."""
    return service.model_copy(update={"spec": service.spec.model_copy(update={"replicas": replicas})})


def place(service: ServiceSpec, hosts: Sequence[InventoryHost]) -> tuple[Instance, ...]:
    """The planned instances (no canaries), in index order."""
    body = service.spec
    per_host = min(body.placement.max_per_host, MAX_INSTANCES_PER_HOST)
    capacity = len(hosts) * per_host
    if body.replicas > capacity:
        limit = (
            f"maxPerHost {per_host}"
            if per_host == body.placement.max_per_host
            else f"{per_host} (the most instances the classic target runs on one host)"
        )
        raise BadInput(
            f"spec.replicas: {body.replicas} instances do not fit group {body.placement.group!r}: "
            f"{len(hosts)} host(s) x {limit} = {capacity} at most"
        )
    order = host_order(service.name, hosts)
    highest_slot = (body.replicas - 1) // len(order) if body.replicas else 0
    if body.port is not None and body.port + highest_slot > 65535:
        raise BadInput(f"spec.port: {body.port} + {highest_slot} (instances sharing a host) is beyond port 65535")
    if body.port is not None and body.starts_first and body.port + per_host + highest_slot > 65535:
        raise BadInput(
            f"spec.port: {body.port} + {per_host + highest_slot} (a start-first release beside the old one) is beyond port 65535; "
            "use a lower port, or update.order: stop-first"
        )
    instances = []
    for index in range(1, body.replicas + 1):
        slot, position = divmod(index - 1, len(order))
        host = order[position]
        instances.append(
            Instance(
                id=f"{service.name}-{index}",
                index=index,
                host=host.name,
                address=host.address,
                port=None if body.port is None else body.port + slot,
            )
        )
    return tuple(instances)
