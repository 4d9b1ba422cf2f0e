"""Where a service's deploy state lives in Consul KV (one place, so every module agrees)."""

from __future__ import annotations

ROOT = "moorage/services"


def service_prefix(service: str) -> str:
    return f"{ROOT}/{service}/"


def releases_prefix(service: str) -> str:
    return f"{ROOT}/{service}/releases/"


def release_key(service: str, number: int) -> str:
    return f"{releases_prefix(service)}{number}"


def lock_key(service: str) -> str:
    return f"{ROOT}/{service}/lock"


# Ports claimed by the deploy that planned them, one JSON document for the whole platform, written
# with check-and-set (moorage.deploy.ports): two deploys planned at the same moment never share a port.
PORT_CLAIMS = "moorage/ports/claims"
