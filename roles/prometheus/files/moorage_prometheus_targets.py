#!/usr/bin/python3
"""moorage-prometheus-targets: Prometheus scrape targets from the Consul catalog (file_sd).

Debian's prometheus package (2.42 in bookworm) is built without Consul service discovery
("Disable Consul SD until its Debian package is back in shape"), so this small daemon does that
part: it writes every instance of every Consul service tagged ``tag`` (default ``metrics``) to
a ``file_sd_configs`` JSON file, whatever the instance's health, with these labels:

    job                the Consul service name
    node               the Consul node
    consul_service_id  the instance's service ID
    consul_health      passing | warning | critical (the worst of its checks)
    __metrics_path__   the service's meta ``metrics_path``, when set (default /metrics)

It wakes on Consul blocking queries (any health change, any catalog change, at the latest every
``wait``), rewrites the file atomically and only when it changed (Prometheus notices by inotify),
and when Consul is unreachable keeps the last file and retries with backoff; it never exits
because of Consul. Python standard library only. Configuration: a JSON file (``--config``) with
``consul_addr``, ``consul_token`` (read on services and nodes), ``tag``, ``output``, ``wait``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LOG = logging.getLogger("moorage-prometheus-targets")
HEALTH_ORDER = ("passing", "warning", "critical")
BACKOFF_MAX_SECONDS = 30.0


def worst_health(checks: Sequence[Mapping[str, Any]]) -> str:
    """The worst status among an instance's checks (node and service checks alike)."""
    statuses = [check.get("Status", "critical") for check in checks] or ["passing"]
    return max(statuses, key=lambda status: HEALTH_ORDER.index(status) if status in HEALTH_ORDER else 2)


def targets_for(service: str, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """file_sd target groups for one service from its ``/v1/health/service/NAME`` entries."""
    groups = []
    for entry in entries:
        node, instance = entry["Node"], entry["Service"]
        address = instance.get("Address") or node.get("Address")
        labels = {
            "job": service,
            "node": node.get("Node", ""),
            "consul_service_id": instance.get("ID", service),
            "consul_health": worst_health(entry.get("Checks", [])),
        }
        metrics_path = (instance.get("Meta") or {}).get("metrics_path")
        if metrics_path:
            labels["__metrics_path__"] = metrics_path
        groups.append({"targets": [f"{address}:{instance['Port']}"], "labels": labels})
    return sorted(groups, key=lambda group: (group["labels"]["job"], group["labels"]["consul_service_id"]))


class Consul:
    def __init__(self, addr: str, token: str) -> None:
        self.addr = addr.rstrip("/")
        self.token = token

    def get(self, path: str, params: Mapping[str, Any] | None = None, timeout: float = 10) -> tuple[Any, int]:
        url = f"{self.addr}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        request = urllib.request.Request(url, headers={"X-Consul-Token": self.token})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response), int(response.headers.get("X-Consul-Index", "0"))


def collect(consul: Consul, tag: str) -> list[dict[str, Any]]:
    services, _ = consul.get("/v1/catalog/services")
    groups: list[dict[str, Any]] = []
    for name, tags in sorted(services.items()):
        if tag in (tags or []):
            entries, _ = consul.get(f"/v1/health/service/{urllib.parse.quote(name)}", {"tag": tag})
            groups.extend(targets_for(name, entries))
    return groups


def write_if_changed(output: Path, groups: list[dict[str, Any]]) -> bool:
    content = json.dumps(groups, indent=2, sort_keys=True) + "\n"
    if output.exists() and output.read_text() == content:
        return False
    with tempfile.NamedTemporaryFile("w", dir=output.parent, prefix=".targets-", delete=False) as candidate:
        candidate.write(content)
    os.chmod(candidate.name, 0o644)
    os.replace(candidate.name, output)
    return True


def run(settings: Mapping[str, Any]) -> None:
    consul = Consul(settings.get("consul_addr", "http://127.0.0.1:8500"), settings.get("consul_token", ""))
    output = Path(settings["output"])
    tag = settings.get("tag", "metrics")
    wait = settings.get("wait", "30s")
    health_index = 0
    backoff = 1.0
    while True:
        try:
            groups = collect(consul, tag)
            if write_if_changed(output, groups):
                LOG.info("wrote %d targets to %s", len(groups), output)
            # Block until any check changes (a service registered with checks, a status change)
            # or `wait` passes (which also catches services registered without checks).
            _, health_index = consul.get("/v1/health/state/any", {"index": health_index, "wait": wait}, timeout=600)
            backoff = 1.0
            time.sleep(0.5)  # debounce a burst of changes
        except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
            LOG.warning("consul at %s: %s; keeping %s, retrying in %.0fs", consul.addr, error, output, backoff)
            health_index = 0
            time.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--config", required=True, type=Path)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    run(json.loads(arguments.config.read_text()))


if __name__ == "__main__":
    main()
