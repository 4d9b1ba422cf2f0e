"""The classic target: what the deploy playbook gets, derived from a plan and a release.

This is the edge where moorage's typed values become Ansible variables, in one place:
:func:`deploy_variables` (``moorage_service`` and ``moorage_instances``, what ``moorage render
--target classic`` prints) and :func:`playbook_extravars` (those plus the run's phase, batch,
release and vault files, what ``playbooks/deploy.yml`` gets on every run). The names and shapes
are the playbook's contract, documented in docs/concepts.md. Durations come both as Consul/Go
strings (``"2s"``) and as seconds; resources as systemd values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from moorage.inventory import Inventory
from moorage.plan import Instance, Plan, plan_service
from moorage.release import Release
from moorage.spec.loader import SpecFile
from moorage.spec.model import Health, Resources, Stop, Update
from moorage.spec.units import cpu_millicores, format_duration, memory_bytes

Variables = dict[str, Any]
Phase = Literal["prepare", "remove"]


def render(spec: SpecFile, inventory: Inventory) -> tuple[Plan, Variables]:
    """``moorage render --target classic``: the spec placed on the inventory's group, and :func:`deploy_variables`."""
    plan = plan_service(spec.model, inventory.hosts(spec.model.spec.placement.group))
    return plan, deploy_variables(spec, plan.instances)


def playbook_extravars(
    release: Release,
    phase: Phase,
    batch: Sequence[Instance] = (),
    instances: Sequence[Instance] | None = None,
    *,
    consul_vault_file: Path | None = None,
    secrets_file: Path | None = None,
    archive: Mapping[str, str] | None = None,
) -> Variables:
    """One run of ``playbooks/deploy.yml``: ``release`` in ``phase`` (for ``batch``).

    ``instances`` are the instances the run may touch (default: the release's plan and canaries);
    ``archive`` the release's files as built on the controller (``{path, digest, suffix}``).
    """
    extravars = {
        **deploy_variables(release.spec, release.plan.all_instances if instances is None else instances),
        "moorage_group": release.plan.group,
        "moorage_phase": phase,
        "moorage_batch": [instance.id for instance in batch],
        "moorage_release": release.number,
        "moorage_version": release.version,
        "moorage_files_release": release.files_number,
    }
    if archive is not None:
        extravars["moorage_archive"] = dict(archive)
    if consul_vault_file is not None:
        extravars["moorage_consul_vault_file"] = str(consul_vault_file)
    if secrets_file is not None:
        extravars["moorage_secrets_file"] = str(secrets_file.resolve())
    return extravars


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
