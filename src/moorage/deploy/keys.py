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
