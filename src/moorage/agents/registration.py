"""An instance's registration with its host's Consul agent: the body, and the calls that change it.

The tags follow moorage's route rules (``routes.py``, the same code as ``moorage validate`` and
the ingress watcher): ``moorage``, one ``route=HOST/PATH`` per route, ``metrics`` when Prometheus
scrapes it. The health check is the spec's (http, tcp or command) as Consul runs it; the deploy
registers an instance only once its own gate has seen it healthy, so the check starts out
``passing`` (Consul would otherwise report it critical until its first run, up to an interval).
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from .consul import MAINTENANCE_CHECK_PREFIX, ConsulClient, ConsulError
from .routes import instance_tags, route

DIGEST_META_KEY = "moorage_registration"  # the digest of everything but the start time
STARTED_META_KEY = "started"


def health_check(name: str, address: str, port: int, health: Mapping[str, Any] | None) -> dict[str, Any]:
    """Consul's check definition for the instance's health (empty: no check)."""
    if not health:
        return {}
    check: dict[str, Any] = {
        "Name": f"{name} {health['kind']}",
        "Interval": health["interval"],
        "Timeout": health["timeout"],
        "DeregisterCriticalServiceAfter": health["deregister_after"],
    }
    if health["kind"] == "http":
        check["HTTP"] = f"http://{address}:{port}{health.get('http') or '/'}"
    elif health["kind"] == "tcp":
        check["TCP"] = f"{address}:{port}"
    else:
        check["Args"] = list(health.get("command") or [])
    return check


def registration_body(
    *,
    instance_id: str,
    name: str,
    address: str,
    port: int,
    routes: Sequence[Mapping[str, str]],
    metrics_path: str | None,
    health: Mapping[str, Any] | None,
    meta: Mapping[str, str],
) -> dict[str, Any]:
    """The registration, with the digest of its content in its meta. InvalidRoute on a bad route."""
    checked_routes = [route(item["host"], item.get("path") or "/") for item in routes]
    all_meta = {str(key): str(value) for key, value in meta.items()}
    if metrics_path:
        all_meta["metrics_path"] = metrics_path
    body: dict[str, Any] = {
        "ID": instance_id,
        "Name": name,
        "Address": address,
        "Port": port,
        "Tags": instance_tags(checked_routes, metrics=bool(metrics_path)),
        "Meta": all_meta,
    }
    check = health_check(name, address, port, health)
    if check:
        body["Check"] = check
    body["Meta"][DIGEST_META_KEY] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return body


def _quoted(service_id: str) -> str:
    return urllib.parse.quote(service_id, safe="")


def registered(client: ConsulClient, service_id: str) -> dict[str, Any] | None:
    """What the local agent holds for ``service_id`` (None: not registered)."""
    try:
        document = client.get(f"/v1/agent/service/{_quoted(service_id)}", timeout=5).document
    except ConsulError as err:
        if err.status == 404:
            return None
        raise
    return document if isinstance(document, dict) else None


def is_current(current: Mapping[str, Any] | None, body: Mapping[str, Any]) -> bool:
    """Whether the agent holds this very registration already."""
    meta = (current or {}).get("Meta") or {}
    return current is not None and meta.get(DIGEST_META_KEY) == body["Meta"][DIGEST_META_KEY]


def register(client: ConsulClient, body: Mapping[str, Any], *, passing: bool) -> None:
    """(Re)register with the start time in the meta; ``passing``: the check starts out passing."""
    sent: dict[str, Any] = {**body, "Meta": {**body["Meta"], STARTED_META_KEY: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
    if passing and "Check" in sent:
        sent["Check"] = {**sent["Check"], "Status": "passing"}
    client.put("/v1/agent/service/register", body=sent)


def deregister(client: ConsulClient, service_id: str) -> None:
    client.put(f"/v1/agent/service/deregister/{_quoted(service_id)}")


def in_maintenance(client: ConsulClient, service_id: str) -> bool:
    checks = client.get("/v1/agent/checks", timeout=5).document
    return isinstance(checks, dict) and f"{MAINTENANCE_CHECK_PREFIX}{service_id}" in checks


def set_maintenance(client: ConsulClient, service_id: str, enabled: bool, reason: str = "moorage") -> None:
    """Maintenance on (a critical check: discovery and the ingress stop sending traffic) or off."""
    params = {"enable": "true", "reason": reason} if enabled else {"enable": "false"}
    client.put(f"/v1/agent/service/maintenance/{_quoted(service_id)}", params=params)
