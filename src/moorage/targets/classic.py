"""The classic target: the plan and the variables the deploy playbook gets.

``render`` returns ``{"moorage_service": {...}, "moorage_instances": [...]}``; these are the
extra variables of ``playbooks/deploy.yml`` (documented in docs/concepts.md). Durations come
both as Consul/Go strings (``"2s"``) and as seconds; resources as systemd values.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

from moorage.inventory import load_inventory
from moorage.plan import Plan, place
from moorage.spec.loader import artifact_path, image_archive_path
from moorage.spec.model import Health, Resources, ServiceSpec, Stop, Update
from moorage.spec.units import cpu_millicores, format_duration, memory_bytes

Variables = dict[str, Any]


def render(service: ServiceSpec, spec_file: Path, inventory_path: Path) -> Variables:
    inventory = load_inventory(inventory_path)
    plan = place(service, inventory.hosts(service.spec.placement.group))
    return {"moorage_service": service_variables(service, spec_file), "moorage_instances": instance_variables(plan)}


def instance_variables(plan: Plan) -> list[Variables]:
    return [dataclasses.asdict(instance) for instance in plan]


def service_variables(service: ServiceSpec, spec_file: Path) -> Variables:
    body = service.spec
    return {
        "name": service.name,
        "labels": dict(service.metadata.labels),
        "runtime": body.runtime,
        "artifact": _text(artifact_path(service, spec_file)),
        "command": list(body.command) if body.command is not None else None,
        "image": body.image,
        "image_archive": _text(image_archive_path(service, spec_file)),
        "replicas": body.replicas,
        "group": body.placement.group,
        "port": body.port,
        "env": dict(body.env),
        "secrets": list(body.secrets),
        "health": _health(body.health),
        "routes": [{"host": route.host, "path": route.path} for route in body.routes],
        "metrics": None if body.metrics is None else {"path": body.metrics.path},
        "resources": _resources(body.resources),
        "volumes": [{"name": volume.name, "path": volume.path} for volume in body.volumes],
        "update": _update(body.update),
        "stop": _stop(body.stop),
    }


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _duration(key: str, value: timedelta) -> Variables:
    """``interval`` -> ``{"interval": "2s", "interval_seconds": 2}``."""
    seconds = value.total_seconds()
    return {key: format_duration(value), f"{key}_seconds": int(seconds) if seconds.is_integer() else seconds}


def _health(health: Health | None) -> Variables | None:
    if health is None:
        return None
    return {
        "kind": health.kind,
        "http": health.http,
        "tcp": health.tcp,
        "command": list(health.command) if health.command is not None else None,
        **_duration("interval", health.interval),
        **_duration("timeout", health.timeout),
        **_duration("deregister_after", health.deregister_after),
    }


def _resources(resources: Resources) -> Variables:
    """Limits as systemd wants them (MemoryMax= bytes, CPUQuota= percent) and Docker (--cpus)."""
    millicores = None if resources.cpu is None else cpu_millicores(resources.cpu)
    return {
        "memory": resources.memory,
        "memory_max": None if resources.memory is None else memory_bytes(resources.memory),
        "cpu": resources.cpu,
        "cpu_quota": None if millicores is None else f"{millicores / 10:g}%",
        "cpus": None if millicores is None else millicores / 1000,
    }


def _update(update: Update) -> Variables:
    return {
        "max_parallel": update.max_parallel,
        **_duration("min_healthy", update.min_healthy),
        **_duration("healthy_deadline", update.healthy_deadline),
        "auto_revert": update.auto_revert,
        "canary": update.canary,
    }


def _stop(stop: Stop) -> Variables:
    return {"signal": stop.signal, **_duration("grace_period", stop.grace_period)}
