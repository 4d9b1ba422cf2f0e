"""What runs now: every instance of a service as Consul sees it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import consul


@dataclass(frozen=True)
class InstanceState:
    instance: str
    host: str
    address: str
    port: int
    release: str | None
    version: str | None
    health: str  # passing, warning, critical or maintenance
    since: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def instances(client: consul.Consul, service: str) -> list[InstanceState]:
    _, entries = client.health.service(service)
    rows = []
    for entry in entries:
        registered = entry["Service"]
        checks = entry["Checks"]
        in_maintenance = any(check["CheckID"].startswith("_service_maintenance:") for check in checks)
        statuses = {check["Status"] for check in checks if check.get("ServiceID") == registered["ID"]}
        health = "maintenance" if in_maintenance else next((s for s in ("critical", "warning") if s in statuses), "passing")
        meta = registered.get("Meta") or {}
        rows.append(
            InstanceState(
                instance=registered["ID"],
                host=meta.get("host", entry["Node"]["Node"]),
                address=registered["Address"] or entry["Node"]["Address"],
                port=registered["Port"],
                release=meta.get("release"),
                version=meta.get("version"),
                health=health,
                since=meta.get("started"),
            )
        )
    return sorted(rows, key=lambda row: row.instance)


def services(client: consul.Consul) -> list[str]:
    _, catalog = client.catalog.services()
    return sorted(name for name, tags in catalog.items() if "moorage" in (tags or []))
