"""Placement for ``scale``: the deployed spec with another replica count, placed by moorage.plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moorage.deploy.releases import Release
from moorage.inventory import load_inventory
from moorage.plan import place
from moorage.spec.loader import load_spec_text
from moorage.targets.classic import instance_variables


def replan(release: Release, replicas: int, inventory_path: Path) -> list[dict[str, Any]]:
    """Instances for ``replicas`` (placement is stable: existing instances keep host and port)."""
    deployed = load_spec_text(release.variables["spec_text"], Path(release.variables["spec_file"]))
    scaled = deployed.model_copy(update={"spec": deployed.spec.model_copy(update={"replicas": replicas})})
    hosts = load_inventory(inventory_path).hosts(scaled.spec.placement.group)
    return instance_variables(place(scaled, hosts))
