"""moorage-prometheus-targets: Prometheus scrape targets from the Consul catalog (file_sd).

Debian's prometheus package (2.42 in bookworm) is built without Consul service discovery, so
this agent does that part on the monitoring hosts (run by systemd, see the prometheus role): it
writes every instance of every Consul service tagged ``tag`` (default ``metrics``) to a
``file_sd_configs`` JSON file, whatever the instance's health, with these labels:

    job                the Consul service name
    node               the Consul node
    consul_service_id  the instance's service ID
    consul_health      passing | warning | critical (the worst of its checks)
    __metrics_path__   the service's meta ``metrics_path``, when set (default /metrics)

Two blocking queries wake it (``/v1/catalog/services``: services and tags come and go;
``/v1/health/state/any``: a check changes); after a short quiet time it reads the tagged
services and rewrites the file atomically, only when it changed (Prometheus notices by
inotify). While Consul is unreachable it keeps the last file and retries with backoff; it never
exits because of Consul.

Settings: a JSON file (``--config``, keys as in ``Settings``); ``CONSUL_HTTP_ADDR`` and
``CONSUL_HTTP_TOKEN`` override ``consul_addr`` and ``consul_token_file``. The token needs read on
services and nodes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from .consul import ConsulClient, ConsulError, client_from_environment
from .routes import METRICS_TAG
from .settings import SettingsError, load_settings
from .watch import Query, Watcher, WatchOptions, backoff_seconds, wait_for_quiet

LOG = logging.getLogger("moorage-prometheus-targets")
HEALTH_ORDER = ("passing", "warning", "critical")
WAKE_UP_QUERIES = (Query("/v1/catalog/services"), Query("/v1/health/state/any"))
TargetGroup = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    consul_addr: str = "http://127.0.0.1:8500"
    consul_token_file: str = ""
    tag: str = METRICS_TAG
    output: str = "/var/lib/prometheus/consul-targets/consul.json"
    quiet_seconds: float = 0.5
    max_delay_seconds: float = 5.0
    blocking_wait_seconds: int = 300
    backoff_max_seconds: float = 30.0


def worst_health(checks: Sequence[Mapping[str, Any]]) -> str:
    """The worst status among an instance's checks (node and service checks alike)."""
    statuses = [str(check.get("Status", "critical")) for check in checks] or ["passing"]
    return max(statuses, key=lambda status: HEALTH_ORDER.index(status) if status in HEALTH_ORDER else 2)


def targets_for(service: str, entries: Sequence[Mapping[str, Any]]) -> list[TargetGroup]:
    """file_sd target groups for one service from its ``/v1/health/service/NAME`` entries."""
    groups = []
    for entry in entries:
        node, instance = entry["Node"], entry["Service"]
        address = instance.get("Address") or node.get("Address")
        labels = {
            "job": service,
            "node": node.get("Node", ""),
            "consul_service_id": instance.get("ID", service),
            "consul_health": worst_health(entry.get("Checks") or []),
        }
        metrics_path = (instance.get("Meta") or {}).get("metrics_path")
        if metrics_path:
            labels["__metrics_path__"] = metrics_path
        groups.append({"targets": [f"{address}:{instance['Port']}"], "labels": labels})
    return sorted(groups, key=lambda group: (group["labels"]["job"], group["labels"]["consul_service_id"]))


def collect(client: ConsulClient, tag: str) -> list[TargetGroup]:
    """Every instance of every service tagged ``tag``, as target groups. ConsulError when Consul is away."""
    services = client.get("/v1/catalog/services").document
    if not isinstance(services, dict):
        raise ConsulError("/v1/catalog/services: unexpected answer")
    groups: list[TargetGroup] = []
    for name, tags in sorted(services.items()):
        if tag in (tags or []):
            entries = client.get(f"/v1/health/service/{urllib.parse.quote(name, safe='')}", {"tag": tag}).document
            try:
                groups.extend(targets_for(name, entries if isinstance(entries, list) else []))
            except (KeyError, TypeError, AttributeError) as err:
                raise ConsulError(f"/v1/health/service/{name}: unexpected answer ({err!r})") from err
    return groups


def write_if_changed(output: Path, groups: list[TargetGroup]) -> bool:
    """Write the file through a temporary file and a rename; False when it already says this."""
    content = json.dumps(groups, indent=2, sort_keys=True) + "\n"
    if output.exists() and output.read_text() == content:
        return False
    with tempfile.NamedTemporaryFile("w", dir=output.parent, prefix=".targets-", delete=False) as candidate:
        candidate.write(content)
    os.chmod(candidate.name, 0o644)
    os.replace(candidate.name, output)
    return True


def run(settings: Settings, client: ConsulClient) -> None:
    changed = threading.Event()
    changed.set()  # the first collection needs no news
    watcher = Watcher(client, WatchOptions(settings.blocking_wait_seconds, settings.backoff_max_seconds), lambda *_: changed.set(), LOG)
    for query in WAKE_UP_QUERIES:
        watcher.add(query)
    output = Path(settings.output)
    failures = 0
    while True:
        changed.wait()
        wait_for_quiet(changed, settings.quiet_seconds, settings.max_delay_seconds)
        try:
            groups = collect(client, settings.tag)
        except ConsulError as err:
            failures += 1
            LOG.warning("consul at %s: %s; keeping %s, retrying", client.url, err, output)
            time.sleep(backoff_seconds(failures, settings.backoff_max_seconds))
            changed.set()
            continue
        failures = 0
        if write_if_changed(output, groups):
            LOG.info("wrote %d targets to %s", len(groups), output)


def stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    LOG.info("stopping on signal %d", signum)
    sys.exit(0)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="moorage-prometheus-targets", description="Prometheus targets from the Consul catalog.")
    parser.add_argument("--config", type=Path, help="JSON settings file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stdout)
    try:
        settings = load_settings(Settings, args.config)
        try:
            client = client_from_environment(settings.consul_addr, settings.consul_token_file, os.environ)
        except OSError as err:
            raise SettingsError(f"consul_token_file: {err}") from err
        signal.signal(signal.SIGTERM, stop_on_signal)
        run(settings, client)
    except SettingsError as err:
        LOG.error("%s", err)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
