"""The classic target: what the hosts get, derived from a plan and a release.

This is the edge where moorage's typed values become Ansible variables, in one place:
:func:`deploy_variables` (``moorage_service`` and ``moorage_instances``, what ``moorage render
--target classic`` prints and ``playbooks/deploy.yml`` takes) and :func:`release_parameters`
(those for one host plus the release, what the ``moorage.platform.release`` module and the deploy
agent take). The names and shapes are the playbook's contract, documented in docs/concepts.md.
Durations come both as Consul/Go strings (``"2s"``) and as seconds; resources as systemd values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from moorage.inventory import Inventory
from moorage.plan import Instance, Plan, plan_service
from moorage.release import Release
from moorage.spec.loader import SpecFile
from moorage.spec.model import Health, Resources, Stop, Update
from moorage.spec.units import cpu_millicores, format_duration, memory_bytes

Variables = dict[str, Any]


def render(spec: SpecFile, inventory: Inventory) -> tuple[Plan, Variables]:
    """``moorage render --target classic``: the spec placed on the inventory's group, and :func:`deploy_variables`."""
    plan = plan_service(spec.model, inventory.hosts(spec.model.spec.placement.group))
    return plan, deploy_variables(spec, plan.instances)


def release_parameters(
    release: Release,
    host: str,
    *,
    archive: Mapping[str, str] | None,
    secrets: Mapping[str, str],
    management_token: str,
    lbs: Sequence[str],
) -> Variables:
    """What the deploy agent on ``host`` gets to put ``release`` there (``moorage.platform.release``'s parameters).

    ``archive``: the digest and suffix of the archive its files come in (None: already on the host).
    Holds secret values: it goes to the host over SSH on the agent's stdin, never anywhere else.
    """
    return {
        "service": service_variables(release.spec),
        "instances": instance_variables([instance for instance in release.plan.all_instances if instance.host == host]),
        "release": release.number,
        "version": release.version,
        "files_release": release.files_number,
        "archive": None if archive is None else {"digest": archive["digest"], "suffix": archive["suffix"]},
        "secrets": dict(secrets),
        "lbs": list(lbs),
        "management_token": management_token,
        "host": host,
    }


def deploy_variables(spec: SpecFile, instances: Sequence[Instance]) -> Variables:
    """``{"moorage_service": ..., "moorage_instances": [...]}``."""
    return {"moorage_service": service_variables(spec), "moorage_instances": instance_variables(instances)}


def instance_variables(instances: Sequence[Instance]) -> list[Variables]:
    return [
        {"id": instance.id, "index": instance.index, "host": instance.host, "address": instance.address, "port": instance.port}
        for instance in instances
    ]


def service_variables(spec: SpecFile) -> Variables:
    service = spec.model
    body = service.spec
    return {
        "name": service.name,
        "labels": dict(service.metadata.labels),
        "runtime": body.runtime,
        "artifact": _text(spec.artifact),
        "command": list(body.command) if body.command is not None else None,
        "image": body.image,
        "image_archive": _text(spec.image_archive),
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
