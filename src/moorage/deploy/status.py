"""What runs now: every instance of a service as Consul sees it, and what a new spec would change."""

from __future__ import annotations

from typing import Any

import consul

from moorage.deploy.releases import Release


def instances(client: consul.Consul, service: str) -> list[dict[str, Any]]:
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
            {
                "instance": registered["ID"],
                "host": meta.get("host", entry["Node"]["Node"]),
                "address": registered["Address"] or entry["Node"]["Address"],
                "port": registered["Port"],
                "release": meta.get("release"),
                "version": meta.get("version"),
                "health": health,
                "since": meta.get("started"),
            }
        )
    return sorted(rows, key=lambda row: row["instance"])


def services(client: consul.Consul) -> list[str]:
    _, catalog = client.catalog.services()
    return sorted(name for name, tags in catalog.items() if "moorage" in (tags or []))


def changes(current: Release | None, variables: dict[str, Any], version: str, spec_hash: str) -> list[dict[str, Any]]:
    """Per instance: add, replace (new release), remove or keep."""
    before = {instance["id"]: instance for instance in current.variables["moorage_instances"]} if current else {}
    same_release = current is not None and current.version == version and current.spec_hash == spec_hash
    rows = []
    for instance in variables["moorage_instances"]:
        old = before.pop(instance["id"], None)
        action = "add" if old is None else ("keep" if same_release and old == instance else "replace")
        rows.append({"host": instance["host"], "instance": instance["id"], "port": instance["port"], "action": action})
    rows += [{"host": old["host"], "instance": old["id"], "port": old["port"], "action": "remove"} for old in before.values()]
    return sorted(rows, key=lambda row: (row["host"], row["instance"]))
