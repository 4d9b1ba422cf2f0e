"""The lab's bridge and its /24: derived from the lab name, checked against what the host already uses.

The host holds the first address of the /24 on the bridge; machines get static addresses after it.
There is no NAT and no default route in the machines: traffic stays between the lab's machines and
the host.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
from dataclasses import dataclass

from moorage.errors import MoorageError
from moorage.lab.host import run

# The lab picks its /24s inside this private range; nothing else on a typical host uses it.
LAB_RANGE = ipaddress.IPv4Network("10.213.0.0/16")
FIRST_MACHINE_OFFSET = 10  # lab-1 is .11, lab-2 .12, ...
MAX_HOSTS = 200


@dataclass(frozen=True)
class LabNetwork:
    bridge: str
    subnet: str  # e.g. 10.213.42.0/24

    @property
    def gateway(self) -> str:
        """The host's own address on the bridge."""
        return str(ipaddress.ip_network(self.subnet)[1])

    def machine_address(self, index: int) -> str:
        """The address of machine number ``index`` (1-based)."""
        return str(ipaddress.ip_network(self.subnet)[FIRST_MACHINE_OFFSET + index])


def _name_hash(lab_name: str) -> bytes:
    return hashlib.sha256(lab_name.encode()).digest()


def bridge_name(lab_name: str) -> str:
    """``mr-`` and 8 hex digits: unique per lab, within the kernel's 15-character limit."""
    return "mr-" + _name_hash(lab_name).hex()[:8]


def choose_network(lab_name: str) -> LabNetwork:
    """A /24 for a new lab: the one its name hashes to, or the next one no interface or route uses."""
    subnets = list(LAB_RANGE.subnets(new_prefix=24))
    start = int.from_bytes(_name_hash(lab_name)[:4], "big") % len(subnets)
    taken = _networks_in_use()
    for step in range(len(subnets)):
        candidate = subnets[(start + step) % len(subnets)]
        if not any(candidate.overlaps(used) for used in taken):
            return LabNetwork(bridge=bridge_name(lab_name), subnet=str(candidate))
    raise MoorageError(f"no free /24 left in {LAB_RANGE} for lab {lab_name!r}")


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network on an interface or in a route of this host."""
    addresses = json.loads(run(["ip", "-json", "-4", "addr", "show"], what="listing addresses") or "[]")
    routes = json.loads(run(["ip", "-json", "-4", "route", "show", "table", "all"], what="listing routes") or "[]")
    networks = [
        ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
        for link in addresses
        for info in link.get("addr_info", [])
    ]
    networks += [ipaddress.IPv4Network(route["dst"], strict=False) for route in routes if route.get("dst", "default")[0].isdigit()]
    return [network for network in networks if network.prefixlen > 0]


def bridge_exists(bridge: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", bridge], capture_output=True, check=False).returncode == 0


def ensure_bridge(network: LabNetwork) -> None:
    """Create the bridge with the host's address on it; an existing one (earlier run) is reused."""
    if not bridge_exists(network.bridge):
        run(["ip", "link", "add", network.bridge, "type", "bridge"], what=f"creating bridge {network.bridge}")
    gateway = f"{network.gateway}/{ipaddress.ip_network(network.subnet).prefixlen}"
    run(["ip", "addr", "replace", gateway, "dev", network.bridge], what=f"addressing bridge {network.bridge}")
    run(["ip", "link", "set", network.bridge, "up"], what=f"bringing up bridge {network.bridge}")


def remove_bridge(bridge: str) -> None:
    """Delete the bridge (and with it its address and route); a missing one is fine."""
    if bridge_exists(bridge):
        run(["ip", "link", "delete", bridge], what=f"deleting bridge {bridge}")
