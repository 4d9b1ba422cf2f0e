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
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from .acks import AckWriter
from .apply import Applier, ApplyOptions, Outcome, UnusableMainConfig, one_line, reload_nginx
from .balancer import (
    BalancerError,
    BalancerFeed,
    BalancerOptions,
    ensure_key,
    is_ip_backend,
    is_loopback_listen,
    state_text,
    write_state_file,
)
from .consul import Answer, ConsulClient, ConsulError, client_from_environment
from .render import Rendering, RenderOptions, RoutedService, backends_comment, live_config_id, render, upstream_services
from .routes import InvalidRoute, Route, is_route_tag, parse_route_tag
from .settings import SettingsError, load_settings
from .watch import Query, Watcher, WatchOptions, backoff_seconds

LOG = logging.getLogger("moorage-ingress")
CATALOG = Query("/v1/catalog/services")
ROUTABLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a routed service's name: an NGINX upstream, a Lua string


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
    ack_node: str = ""  # this lb's Consul node name: acks go to moorage/ingress/NODE/ (empty: no acks)
    balancer_listen: str = "127.0.0.1:10247"  # the balancer's feed (a loopback address)
    balancer_key_file: str = "/etc/moorage/ingress/balancer.key"
    balancer_state_file: str = "/var/lib/moorage/ingress/backends.state"
    balancer_shared_dict_size: str = "8m"
    balancer_check_seconds: float = 5.0  # how often the fed state is compared with what NGINX holds
    reload_settle_seconds: float = 10.0  # the longest wait for NGINX to run a reloaded config

    def render_options(self) -> RenderOptions:
        return RenderOptions(
            listen=self.listen,
            upstream_keepalive=self.upstream_keepalive,
            proxy_connect_timeout=self.proxy_connect_timeout,
            proxy_read_timeout=self.proxy_read_timeout,
            proxy_send_timeout=self.proxy_send_timeout,
            proxy_next_upstream_tries=self.proxy_next_upstream_tries,
            balancer=self.balancer_options(),
        )

    def balancer_options(self) -> BalancerOptions:
        return BalancerOptions(
            self.balancer_listen,
            self.balancer_key_file,
            self.balancer_state_file,
            self.balancer_shared_dict_size,
            self.proxy_next_upstream_tries,
        )

    def check(self) -> None:
        """SettingsError unless the balancer's feed is on a loopback address."""
        if not is_loopback_listen(self.balancer_listen):
            raise SettingsError(f"balancer_listen: want a loopback ADDRESS:PORT (127.0.0.1:10247), got {self.balancer_listen!r}")

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
    """From ``/v1/catalog/services`` (name -> tags): each routed service's routes, and what was ignored and why."""
    routed: dict[str, tuple[Route, ...]] = {}
    ignored: list[str] = []
    for name, tags in sorted(catalog.items()):
        routes: set[Route] = set()
        for tag in tags or ():
            if not is_route_tag(tag):
                continue
            try:
                routes.add(parse_route_tag(tag))
            except InvalidRoute as err:
                ignored.append(f"ignored invalid route tag (want route=HOST/PATH): {name}: {tag} ({err})")
        if routes and not ROUTABLE_NAME.fullmatch(name):
            ignored.append(f"ignored service {name!r}: a routed service's name has letters, digits, '.', '_' and '-' only")
        elif routes:
            routed[name] = tuple(sorted(routes))
    return routed, ignored


def instance_address(entry: object) -> str | None:
    """``address:port`` of one entry of ``/v1/health/service/NAME`` (None: it has none)."""
    if not isinstance(entry, dict):
        return None
    service, node = entry.get("Service"), entry.get("Node")
    if not isinstance(service, dict) or not isinstance(node, dict):
        return None
    address = str(service.get("Address") or node.get("Address") or "")
    port = service.get("Port")
    if not address or not isinstance(port, int) or port <= 0:
        return None
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def passing_instances(entries: Iterable[object], service: str = "") -> tuple[str, ...]:
    """``address:port`` of each entry of ``/v1/health/service/NAME?passing=1`` with an IP address.

    The balancer resolves no names: an instance registered with a host name is left out (logged).
    """
    instances: set[str] = set()
    for entry in entries:
        address = instance_address(entry)
        if address is None:
            continue
        if not is_ip_backend(address):
            LOG.warning("ignored instance %s of %s: the ingress routes to IP addresses only", address, service or "a service")
            continue
        instances.add(address)
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
        self.indexes: dict[str, int] = {}  # the Consul index of each service's health answer

    def snapshot(self) -> tuple[list[RoutedService], dict[str, int]] | None:
        """All routed services and their health indexes, or None until each has had its first health answer."""
        with self.lock:
            if self.routes is None or any(name not in self.instances for name in self.routes):
                return None
            services = [RoutedService(name, routes, self.instances[name]) for name, routes in self.routes.items()]
            return services, {name: self.indexes.get(name, 0) for name in self.routes}


class CatalogWatch:
    """Keeps ``CatalogState`` current: the catalog view, and one health view per routed service."""

    def __init__(self, client: ConsulClient, settings: Settings, state: CatalogState) -> None:
        self.state = state
        self.watcher = Watcher(client, settings.watch_options(), self.deliver, LOG)
        self.service_of: dict[Query, str] = {}
        self.reported: set[str] = set()  # what was ignored and logged already

    def start(self) -> None:
        self.watcher.add(CATALOG)

    def deliver(self, query: Query, answer: Answer) -> None:
        if query == CATALOG:
            self.on_catalog(answer.document)
        elif query in self.service_of:
            self.on_health(self.service_of[query], answer.document, answer.index)

    def on_catalog(self, document: object) -> None:
        if not isinstance(document, dict):
            LOG.warning("unexpected answer from %s ignored", CATALOG)
            return
        routes, ignored = routes_by_service(document)
        for message in sorted(set(ignored) - self.reported):
            LOG.warning("%s", message)
        self.reported = set(ignored)
        with self.state.lock:
            if routes == self.state.routes:
                return
            self.state.routes = routes
            for gone in set(self.state.instances) - set(routes):
                del self.state.instances[gone]
                self.state.indexes.pop(gone, None)
        wanted = {health_query(name): name for name in routes}
        for query in set(self.service_of) - set(wanted):
            self.watcher.remove(query)
        self.service_of = wanted
        for query in wanted:
            self.watcher.add(query)
        self.state.changed.set()

    def on_health(self, service: str, document: object, index: int) -> None:
        instances = passing_instances(document if isinstance(document, list) else [], service)
        with self.state.lock:
            if self.state.routes is None or service not in self.state.routes or self.state.instances.get(service) == instances:
                return
            self.state.instances[service] = instances
            self.state.indexes[service] = index
        self.state.changed.set()


# --- bringing NGINX to the catalog ---------------------------------------------------------------


class Acknowledger:
    """Writes this lb's acks (``acks.py``) after NGINX took a state; keeps a failed write to try again."""

    def __init__(self, client: ConsulClient, node: str) -> None:
        self.writer = AckWriter(client, node) if node else None
        self.pending: tuple[Mapping[str, tuple[str, ...]], Mapping[str, int]] | None = None
        self.failures = 0

    def publish(self, backends: Mapping[str, tuple[str, ...]], indexes: Mapping[str, int]) -> None:
        if self.writer is None:
            return
        try:
            changed = self.writer.publish(backends, indexes)
        except ConsulError as err:
            self.pending = (backends, indexes)
            self.failures += 1
            if self.failures == 1:
                LOG.warning("could not write the acknowledgments (retrying): %s", one_line(str(err)))
            return
        if changed:
            LOG.info("acknowledged %s", ", ".join(f"{name}={len(backends.get(name, ()))}" for name in changed))
        self.pending, self.failures = None, 0

    def retry(self) -> None:
        if self.pending is not None:
            self.publish(*self.pending)

    def retry_seconds(self, cap: float) -> float | None:
        """How long the loop may wait before ``retry`` (None: nothing to retry)."""
        return None if self.pending is None else backoff_seconds(self.failures, cap)


class Balancer:
    """NGINX's balancer as the watcher feeds it: the state file, then the feed endpoint."""

    def __init__(self, options: BalancerOptions) -> None:
        self.options = options
        self.feed = BalancerFeed(options, ensure_key(Path(options.key_file)))
        self.state_written: str | None = None  # the text in the state file (None: not written by this process)
        self.fed: str | None = None  # the text NGINX took last (None: not known)
        self.failing = False

    def take(self, backends: Mapping[str, Iterable[str]]) -> bool:
        """Make NGINX route each service to these servers; False when NGINX could not be fed (logged once)."""
        text = state_text(backends)
        if text == self.fed:
            return True
        if text != self.state_written:
            write_state_file(Path(self.options.state_file), text)
            self.state_written = text
        try:
            self.feed.feed(text)
        except BalancerError as err:
            self.fed = None
            if not self.failing:
                LOG.warning("could not feed NGINX's balancer (retrying; NGINX loads the state file when it starts): %s", err)
            self.failing = True
            return False
        if self.failing:
            LOG.info("fed NGINX's balancer again")
        self.fed, self.failing = text, False
        return True

    def verify(self) -> str | None:
        """Compare what NGINX holds with what was fed (feed again on a difference); the config id NGINX runs."""
        try:
            reported = self.feed.report()
        except BalancerError:
            self.fed = None  # NGINX away: feed again once it answers
            return None
        if self.fed is not None and reported.state != self.fed:
            LOG.warning("NGINX's balancer does not hold the fed state (NGINX restarted?); feeding it again")
            self.fed = None
        return reported.config_id

    def wait_for_config(self, config_id: str, seconds: float) -> bool:
        """Wait until NGINX runs the configuration ``config_id`` (a reload takes a moment to take effect)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                if self.feed.report().config_id == config_id:
                    return True
            except BalancerError:
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


@dataclass(frozen=True)
class Converged:
    outcome: Outcome  # of the configuration: UNCHANGED when only the balancer changed
    reload_pending: bool  # the configuration differs from the live one and was not tried (debounce)
    routed: bool  # NGINX routes what the catalog says (balancer fed, configuration current)


class Ingress:
    """Brings NGINX to the catalog: the balancer at once, the configuration (a reload) only when it changed."""

    def __init__(self, settings: Settings, client: ConsulClient) -> None:
        self.settings = settings
        self.applier = Applier(settings.apply_options())
        self.balancer = Balancer(settings.balancer_options())
        self.acknowledger = Acknowledger(client, settings.ack_node)
        self.reported: set[str] = set()

    def converge(self, services: list[RoutedService], indexes: Mapping[str, int], *, reload_allowed: bool) -> Converged:
        """Feed the balancer; with ``reload_allowed``, test, swap and reload a changed configuration; acknowledge."""
        rendering = render(services, self.settings.render_options())
        for conflict in sorted(set(rendering.conflicts) - self.reported):
            LOG.warning("%s", conflict)
        self.reported = set(rendering.conflicts)
        live = self.applier.live_config()
        outcome = Outcome.UNCHANGED
        changed = rendering.text != live
        refused = changed and self.applier.refused(rendering.text)
        if changed and reload_allowed and not refused:
            if live is not None and live_config_id(live):
                # First the servers of every service either configuration routes: new workers find theirs at once.
                routable = {name: rendering.backends.get(name, ()) for name in upstream_services(live)}
                self.balancer.take({**routable, **{name: servers for name, servers in rendering.backends.items() if servers}})
            outcome = self.apply(rendering, services)
            live = self.applier.live_config()
        elif refused:
            outcome = Outcome.REJECTED
        if live is None or not live_config_id(live):
            return Converged(outcome, changed and not reload_allowed, routed=False)  # not a config of ours yet: nothing to feed
        routed_backends = {name: rendering.backends.get(name, ()) for name in upstream_services(live)}
        fed = self.balancer.take(routed_backends)
        if fed:
            self.applier.note(backends_comment(routed_backends))
            self.acknowledger.publish({service.name: routed_backends.get(service.name, ()) for service in services}, indexes)
        pending = changed and not reload_allowed and not refused
        return Converged(outcome, pending, routed=fed and live == rendering.text)  # another process may have applied it

    def apply(self, rendering: Rendering, services: list[RoutedService]) -> Outcome:
        try:
            outcome = self.applier.apply(rendering.text, backends_comment(rendering.backends))
        except (OSError, subprocess.SubprocessError) as err:
            LOG.error("could not apply the new config (the last good one stays): %s", err)
            return Outcome.FAILED
        if outcome is Outcome.APPLIED:
            settle = self.settings.reload_settle_seconds
            if not self.balancer.wait_for_config(rendering.config_id, settle):
                LOG.warning("NGINX did not report config %s within %gs of the reload", rendering.config_id, settle)
            LOG.info("applied new config and reloaded nginx: %s", describe(services))
        return outcome

    def housekeeping(self) -> None:
        """Between changes: NGINX holds the fed state and runs the live config; failed acknowledgments are written."""
        running = self.balancer.verify()
        live = self.applier.live_config()
        expected = live_config_id(live or "")
        if running and expected and running != expected:
            LOG.warning("NGINX runs config %s, not the live %s (a failed reload?); reloading", running, expected)
            reloaded, words = reload_nginx(self.applier.options)
            if not reloaded:
                LOG.error("reload failed: %s", one_line(words))
        self.acknowledger.retry()


def run_daemon(settings: Settings, client: ConsulClient) -> None:
    """Watch the catalog; the balancer follows every change at once, a reload waits for quiet (debounce)."""
    state = CatalogState()
    ingress = Ingress(settings, client)
    CatalogWatch(client, settings, state).start()
    LOG.info("watching %s; writing %s; feeding NGINX's balancer on %s", client.url, settings.output, settings.balancer_listen)
    first_change: float | None = None  # of a burst whose configuration change waits for quiet
    last_change = 0.0
    next_check = time.monotonic() + settings.balancer_check_seconds
    while True:
        now = time.monotonic()
        reload_at = None if first_change is None else min(last_change + settings.quiet_seconds, first_change + settings.max_delay_seconds)
        retry = ingress.acknowledger.retry_seconds(settings.backoff_max_seconds)
        waits = [next_check - now, *([] if reload_at is None else [reload_at - now]), *([] if retry is None else [retry])]
        changed = state.changed.wait(max(min(waits), 0.0))
        state.changed.clear()
        now = time.monotonic()
        if changed:
            last_change = now
            first_change = now if first_change is None else first_change
        if now >= next_check:
            ingress.housekeeping()
            next_check = now + settings.balancer_check_seconds
        elif retry is not None and not changed:
            ingress.acknowledger.retry()
        snapshot = state.snapshot()
        if snapshot is None or not (changed or first_change is not None or ingress.balancer.fed is None):
            continue
        due = first_change is not None and now >= min(last_change + settings.quiet_seconds, first_change + settings.max_delay_seconds)
        if not ingress.converge(*snapshot, reload_allowed=due).reload_pending:
            first_change = None


def fetch_services(client: ConsulClient) -> tuple[list[RoutedService], dict[str, int]]:
    """The routed services with their passing instances, and their health indexes, asked once (no blocking)."""
    catalog = client.get(CATALOG.path, timeout=30).document
    if not isinstance(catalog, dict):
        raise ConsulError(f"{CATALOG}: unexpected answer")
    routes, ignored = routes_by_service(catalog)
    for message in ignored:
        LOG.warning("%s", message)
    services, indexes = [], {}
    for name, service_routes in routes.items():
        query = health_query(name)
        answer = client.get(query.path, dict(query.params), timeout=30)
        entries = answer.document if isinstance(answer.document, list) else []
        services.append(RoutedService(name, service_routes, passing_instances(entries, name)))
        indexes[name] = answer.index
    return services, indexes


def run_once(settings: Settings, client: ConsulClient) -> int:
    """Bring NGINX to the catalog once: 0 when it routes what the catalog says, else 1."""
    try:
        services, indexes = fetch_services(client)
    except ConsulError as err:
        LOG.error("consul unreachable (%s); the live config is unchanged", err)
        return 1
    ingress = Ingress(settings, client)
    converged = ingress.converge(services, indexes, reload_allowed=True)
    if converged.outcome is Outcome.UNCHANGED and converged.routed:
        LOG.info("config unchanged: %s", describe(services))
    if not converged.routed:
        LOG.error("NGINX does not route what the catalog says (see above)")
        return 1
    return 0 if ingress.acknowledger.pending is None else 1


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
        settings.check()
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
