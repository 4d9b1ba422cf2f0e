"""Placement: which instance of a service runs on which host, on which port.

The rule, simple enough to do by hand:

1. The hosts of ``spec.placement.group`` are put in a per-service order: sorted by
   ``sha256(service name + host name)`` (rendezvous order), so different services start on
   different hosts instead of all piling onto the first one.
2. Instance ``k`` (1-based) goes to host ``(k - 1) mod H`` of that order, in slot
   ``(k - 1) div H`` of that host. Hosts therefore differ by at most one instance.
3. Slot ``s`` listens on ``spec.port + s``: the first instance on a host gets ``spec.port``.

Instance ``k``'s host and port depend only on ``k`` and the group, never on ``replicas``:
scaling 3 -> 4 adds ``NAME-4`` and moves nothing; scaling down removes the highest-numbered
instances. ``maxPerHost`` caps the slots per host, so at most ``H * maxPerHost`` instances fit.

Canaries are the next indexes after the planned instances (``NAME-(replicas+1)`` ...), placed by
the same rule. Everything here is pure: hosts in, a :class:`Plan` out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from moorage.errors import BadInput
from moorage.inventory import InventoryHost
from moorage.spec.model import ServiceSpec


@dataclass(frozen=True)
class Instance:
    id: str  # NAME-INDEX, e.g. hello-2
    index: int  # 1-based
    host: str  # inventory host name
    address: str  # the host's ansible_host
    port: int | None  # None when the service listens on no port


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


def plan_service(service: ServiceSpec, hosts: Sequence[InventoryHost], canaries: int = 0) -> Plan:
    """``spec.replicas`` instances on ``hosts``, and ``canaries`` more beside them."""
    instances = place(service, hosts)
    extra: tuple[Instance, ...] = ()
    if canaries:
        try:
            extra = place(with_replicas(service, service.spec.replicas + canaries), hosts)[service.spec.replicas :]
        except BadInput as error:
            raise BadInput(f"--canary {canaries}: {error}") from None
    return Plan(group=service.spec.placement.group, instances=instances, canaries=extra)


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
