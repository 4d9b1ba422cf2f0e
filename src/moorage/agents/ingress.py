"""moorage-ingress: NGINX upstreams and server blocks rendered from the Consul catalog.

The agent on the lb hosts (run by systemd, see the nginx_ingress role). Three parts, as in
consul-template:

watch (``watch.py``)
    A blocking query on ``/v1/catalog/services`` finds the routed services (``route=HOST/PATH``
    tags, rules in ``routes.py``); one more per routed service on
    ``/v1/health/service/NAME?passing=1`` follows its passing instances. Views come and go with
    the services.
render (``render.py``)
    Once a burst of changes has settled, the state becomes NGINX config text (pure).
apply (``apply.py``)
    The candidate is tested with ``nginx -t``, swapped in atomically, NGINX reloaded.

What it guarantees
    * Only instances whose checks all pass are upstream servers: a failing check or maintenance
      mode (a critical check) takes an instance out.
    * A route without a passing instance answers 503, a host nobody routes answers 503: an empty
      service never produces an invalid config.
    * Bursts are debounced: it renders once ``quiet_seconds`` pass without a change, and at the
      latest ``max_delay_seconds`` after the first change.
    * A candidate that fails ``nginx -t`` is never swapped in (kept as ``OUTPUT.rejected``).
    * While Consul is unreachable it keeps the last good config and retries with exponential
      backoff (at most ``backoff_max_seconds``); it never exits because of Consul.
    * One bad service never breaks the others: a malformed route tag is ignored and logged with
      the rule it breaks; a route two services claim stays with the first by name (logged).

Settings: a JSON file (``--config``, keys as in ``Settings``); ``CONSUL_HTTP_ADDR`` and
``CONSUL_HTTP_TOKEN`` in the environment override ``consul_addr`` and ``consul_token_file``.
The token needs ``service_prefix "" { policy = "read" }`` and ``node_prefix "" { policy = "read" }``.

``ingress --config FILE`` runs the daemon; ``--once`` renders, tests, swaps and reloads once and
exits 0 when the live config is current, 1 when it could not be made so, 2 on bad settings.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from .apply import Applier, ApplyOptions, Outcome, UnusableMainConfig
from .consul import ConsulClient, ConsulError, client_from_environment
from .render import RenderOptions, RoutedService, render
from .routes import InvalidRoute, Route, is_route_tag, parse_route_tag
from .settings import SettingsError, load_settings
from .watch import Query, Watcher, WatchOptions, wait_for_quiet

LOG = logging.getLogger("moorage-ingress")
CATALOG = Query("/v1/catalog/services")


@dataclass(frozen=True)
class Settings:
    consul_addr: str = "http://127.0.0.1:8500"
    consul_token_file: str = ""
    output: str = "/etc/nginx/moorage/ingress.conf"
    nginx_main_config: str = "/etc/nginx/nginx.conf"
    nginx_command: tuple[str, ...] = ("/usr/sbin/nginx",)
    reload_command: tuple[str, ...] = ("systemctl", "reload", "nginx")
    listen: tuple[str, ...] = ("80",)
    quiet_seconds: float = 1.0
    max_delay_seconds: float = 10.0
    blocking_wait_seconds: int = 300
    backoff_max_seconds: float = 30.0
    upstream_keepalive: int = 16
    proxy_connect_timeout: str = "2s"
    proxy_read_timeout: str = "60s"
    proxy_send_timeout: str = "60s"
    proxy_next_upstream_tries: int = 3

    def render_options(self) -> RenderOptions:
        return RenderOptions(
            listen=self.listen,
            upstream_keepalive=self.upstream_keepalive,
            proxy_connect_timeout=self.proxy_connect_timeout,
            proxy_read_timeout=self.proxy_read_timeout,
            proxy_send_timeout=self.proxy_send_timeout,
            proxy_next_upstream_tries=self.proxy_next_upstream_tries,
        )

    def apply_options(self) -> ApplyOptions:
        return ApplyOptions(Path(self.output), Path(self.nginx_main_config), self.nginx_command, self.reload_command)

    def watch_options(self) -> WatchOptions:
        return WatchOptions(self.blocking_wait_seconds, self.backoff_max_seconds)


def consul_client(settings: Settings, environ: Mapping[str, str]) -> ConsulClient:
    try:
        return client_from_environment(settings.consul_addr, settings.consul_token_file, environ)
    except OSError as err:
        raise SettingsError(f"consul_token_file: {err}") from err


# --- what the catalog says ------------------------------------------------------------------------


def health_query(service: str) -> Query:
    return Query(f"/v1/health/service/{urllib.parse.quote(service, safe='')}", (("passing", "1"),))


def routes_by_service(catalog: Mapping[str, Iterable[str] | None]) -> tuple[dict[str, tuple[Route, ...]], list[str]]:
    """From ``/v1/catalog/services`` (name -> tags): each routed service's routes, and the bad tags with why."""
    routed: dict[str, tuple[Route, ...]] = {}
    bad_tags: list[str] = []
    for name, tags in sorted(catalog.items()):
        routes: set[Route] = set()
        for tag in tags or ():
            if not is_route_tag(tag):
                continue
            try:
                routes.add(parse_route_tag(tag))
            except InvalidRoute as err:
                bad_tags.append(f"{name}: {tag} ({err})")
        if routes:
            routed[name] = tuple(sorted(routes))
    return routed, bad_tags


def passing_instances(entries: Iterable[object]) -> tuple[str, ...]:
    """``address:port`` of each entry of ``/v1/health/service/NAME?passing=1``."""
    instances: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        service, node = entry.get("Service"), entry.get("Node")
        if not isinstance(service, dict) or not isinstance(node, dict):
            continue
        address = str(service.get("Address") or node.get("Address") or "")
        port = service.get("Port")
        if not address or not isinstance(port, int) or port <= 0:
            continue
        instances.add(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
    return tuple(sorted(instances))


def describe(services: list[RoutedService]) -> str:
    routes = sum(len(service.routes) for service in services)
    instances = sum(len(service.instances) for service in services)
    return f"{len(services)} routed services, {routes} routes, {instances} passing instances"


class CatalogState:
    """What the views saw: routed services and their passing instances; signals every change."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.routes: dict[str, tuple[Route, ...]] | None = None
        self.instances: dict[str, tuple[str, ...]] = {}

    def snapshot(self) -> list[RoutedService] | None:
        """All routed services, or None until each has had its first health answer."""
        with self.lock:
            if self.routes is None or any(name not in self.instances for name in self.routes):
                return None
            return [RoutedService(name, routes, self.instances[name]) for name, routes in self.routes.items()]


class CatalogWatch:
    """Keeps ``CatalogState`` current: the catalog view, and one health view per routed service."""

    def __init__(self, client: ConsulClient, settings: Settings, state: CatalogState) -> None:
        self.state = state
        self.watcher = Watcher(client, settings.watch_options(), self.deliver, LOG)
        self.service_of: dict[Query, str] = {}
        self.reported_bad_tags: set[str] = set()

    def start(self) -> None:
        self.watcher.add(CATALOG)

    def deliver(self, query: Query, document: object) -> None:
        if query == CATALOG:
            self.on_catalog(document)
        elif query in self.service_of:
            self.on_health(self.service_of[query], document)

    def on_catalog(self, document: object) -> None:
        if not isinstance(document, dict):
            LOG.warning("unexpected answer from %s ignored", CATALOG)
            return
        routes, bad_tags = routes_by_service(document)
        for bad in sorted(set(bad_tags) - self.reported_bad_tags):
            LOG.warning("ignored invalid route tag (want route=HOST/PATH): %s", bad)
        self.reported_bad_tags = set(bad_tags)
        with self.state.lock:
            if routes == self.state.routes:
                return
            self.state.routes = routes
            for gone in set(self.state.instances) - set(routes):
                del self.state.instances[gone]
        wanted = {health_query(name): name for name in routes}
        for query in set(self.service_of) - set(wanted):
            self.watcher.remove(query)
        self.service_of = wanted
        for query in wanted:
            self.watcher.add(query)
        self.state.changed.set()

    def on_health(self, service: str, document: object) -> None:
        instances = passing_instances(document if isinstance(document, list) else [])
        with self.state.lock:
            if self.state.routes is None or service not in self.state.routes or self.state.instances.get(service) == instances:
                return
            self.state.instances[service] = instances
        self.state.changed.set()


# --- run modes ----------------------------------------------------------------------------------


def apply_and_log(applier: Applier, services: list[RoutedService], settings: Settings) -> Outcome:
    rendering = render(services, settings.render_options())
    for conflict in rendering.conflicts:
        LOG.warning("%s", conflict)
    try:
        outcome = applier.apply(rendering.text)
    except (OSError, subprocess.SubprocessError) as err:
        LOG.error("could not apply the new config (the last good one stays): %s", err)
        return Outcome.FAILED
    if outcome is Outcome.APPLIED:
        LOG.info("applied new config and reloaded nginx: %s", describe(services))
    return outcome


def run_daemon(settings: Settings, client: ConsulClient) -> None:
    state = CatalogState()
    applier = Applier(settings.apply_options())
    CatalogWatch(client, settings, state).start()
    LOG.info("watching %s; writing %s", client.url, settings.output)
    while True:
        state.changed.wait()
        wait_for_quiet(state.changed, settings.quiet_seconds, settings.max_delay_seconds)
        services = state.snapshot()
        if services is not None:
            apply_and_log(applier, services, settings)


def fetch_services(client: ConsulClient) -> list[RoutedService]:
    """The routed services and their passing instances, asked once (no blocking)."""
    catalog = client.get(CATALOG.path, timeout=30).document
    if not isinstance(catalog, dict):
        raise ConsulError(f"{CATALOG}: unexpected answer")
    routes, bad_tags = routes_by_service(catalog)
    for bad in bad_tags:
        LOG.warning("ignored invalid route tag (want route=HOST/PATH): %s", bad)
    services = []
    for name, service_routes in routes.items():
        query = health_query(name)
        entries = client.get(query.path, dict(query.params), timeout=30).document
        services.append(RoutedService(name, service_routes, passing_instances(entries if isinstance(entries, list) else [])))
    return services


def run_once(settings: Settings, client: ConsulClient) -> int:
    try:
        services = fetch_services(client)
    except ConsulError as err:
        LOG.error("consul unreachable (%s); the live config is unchanged", err)
        return 1
    outcome = apply_and_log(Applier(settings.apply_options()), services, settings)
    if outcome is Outcome.UNCHANGED:
        LOG.info("config unchanged: %s", describe(services))
    return 0 if outcome in (Outcome.APPLIED, Outcome.UNCHANGED) else 1


def stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    LOG.info("stopping on signal %d", signum)
    sys.exit(0)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="moorage-ingress", description="NGINX config from the Consul catalog.")
    parser.add_argument("--config", type=Path, help="JSON settings file")
    parser.add_argument("--once", action="store_true", help="render, test, swap and reload once, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stdout)
    try:
        settings = load_settings(Settings, args.config)
        client = consul_client(settings, os.environ)
        if args.once:
            return run_once(settings, client)
        signal.signal(signal.SIGTERM, stop_on_signal)
        run_daemon(settings, client)
    except (SettingsError, UnusableMainConfig) as err:
        LOG.error("%s", err)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
