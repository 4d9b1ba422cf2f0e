"""Dynamic ports: the range a host gives out, and which of its ports other services use.

A spec without ``port`` gets a port per instance from its host's range (like Nomad's dynamic
ports), so two services on the same hosts never need their authors to agree on numbers. The
platform sets the range per host with the inventory variable ``moorage_dynamic_ports``
(``"20000-20999"``; a group variable of ``all`` for the whole site), default
:data:`DEFAULT_DYNAMIC_PORTS`. The planner (``moorage.plan.assign_ports``) gives the ports; this
module only holds the values it works with. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

INVENTORY_VARIABLE = "moorage_dynamic_ports"
_RANGE = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")


@dataclass(frozen=True)
class PortRange:
    """Ports ``first`` to ``last``, both included."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not 1 <= self.first <= self.last <= 65535:
            raise ValueError(f"{self.first}-{self.last} is no port range (FIRST-LAST, 1 <= FIRST <= LAST <= 65535)")

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.first, self.last + 1))

    def __len__(self) -> int:
        return self.last - self.first + 1

    @classmethod
    def parse(cls, text: object) -> PortRange:
        """``"20000-29999"`` (ValueError with the reason otherwise)."""
        match = _RANGE.match(str(text))
        if match is None:
            raise ValueError(f"{text!r} is no port range (expected FIRST-LAST, e.g. 20000-29999)")
        return cls(int(match.group(1)), int(match.group(2)))


DEFAULT_DYNAMIC_PORTS = PortRange(20000, 29999)

# Where an instance has a network namespace of its own (a Kubernetes pod, a `moorage dev`
# container), no port is shared: a spec without `port` listens on this one there.
DEFAULT_CONTAINER_PORT = 8080


def container_port(port: int | None) -> int:
    """The port in a container of its own: the spec's, else :data:`DEFAULT_CONTAINER_PORT`."""
    return DEFAULT_CONTAINER_PORT if port is None else port


@dataclass(frozen=True)
class PortUser:
    """An instance of another service that a release (or a deploy under way) puts on a port of a host."""

    instance: str
    release: int | None  # None: claimed by a deploy that has not recorded its release yet

    def describe(self) -> str:
        return f"{self.instance} ({'being deployed' if self.release is None else f'release {self.release}'})"


@dataclass(frozen=True)
class PortBook:
    """What the planner needs to give ports beside placement.

    ``taken``: host -> port -> the other service's instance on it (releases of other services that
    run or are being deployed). ``previous``: instance id -> (host, port) of this service's release
    that runs now, so an instance keeps its port from one release to the next.
    """

    taken: Mapping[str, Mapping[int, PortUser]] = field(default_factory=dict)
    previous: Mapping[str, tuple[str, int | None]] = field(default_factory=dict)

    def user(self, host: str, port: int) -> PortUser | None:
        return self.taken.get(host, {}).get(port)


NO_PORTS_IN_USE = PortBook()
