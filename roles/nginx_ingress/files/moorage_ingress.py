#!/usr/bin/python3
"""moorage-ingress: NGINX upstreams and server blocks rendered from the Consul catalog.

A small daemon for the lb hosts (Python standard library only: it runs on Debian's python3).
It watches the Consul catalog with blocking queries and, after a burst of changes has settled,
renders one NGINX file (``output``), tests it with ``nginx -t`` inside a full candidate main
config, swaps it in atomically and reloads NGINX.

Routing convention (how a service asks for traffic)
    A Consul service is routed when it carries one or more tags of the form::

        route=HOST/PATH        e.g.  route=hello.example.test/   route=hello.example.test/api

    HOST is a DNS name (a leading ``*.`` wildcard is allowed), PATH a URL path prefix; without a
    PATH the route is ``/``. A path prefix matches itself and everything below it (``/api``
    matches ``/api`` and ``/api/v1``, not ``/apiary``). moorage's deploy also adds the plain tag
    ``moorage``; it is not needed for routing. A tag that breaks the convention is ignored and
    logged. When two services claim the same HOST/PATH, the first by name wins (logged).

What it guarantees
    * Only instances whose checks all pass are upstream servers (``/v1/health/service/NAME
      ?passing=1``): a failing check or maintenance mode (a critical check) takes it out.
    * A route without a passing instance answers ``503 no healthy instance for HOST/PATH``; a
      host nobody routes answers ``503 no service routed for this host`` (the default server),
      so an empty service never produces an invalid config.
    * Bursts are debounced: it renders once ``quiet_seconds`` pass without a change, and at
      the latest ``max_delay_seconds`` after the first change.
    * A candidate that fails ``nginx -t`` is never swapped in; it is kept as ``OUTPUT.rejected``
      for inspection and NGINX keeps serving the last good config.
    * When Consul is unreachable it keeps the last good config and retries with exponential
      backoff (capped at ``backoff_max_seconds``); it never exits because of Consul.

Configuration: a JSON file (``--config``, keys as in ``Settings``); ``CONSUL_HTTP_ADDR`` and
``CONSUL_HTTP_TOKEN`` in the environment override ``consul_addr`` and ``consul_token_file``.
The token needs ``service_prefix "" { policy = "read" }`` and ``node_prefix "" { policy =
"read" }``.

Usage: ``moorage_ingress.py --config FILE`` (daemon) or ``--once`` (render, test, swap,
reload and exit: 0 when the live config is current, 1 when it could not be made so).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import FrameType

LOG = logging.getLogger("moorage-ingress")

ROUTE_TAG_PREFIX = "route="
DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_PATTERN = re.compile(rf"^(?:\*\.)?{DNS_LABEL}(?:\.{DNS_LABEL})*$")
PATH_PATTERN = re.compile(r"^/[A-Za-z0-9._~/-]*$")
MAX_HOST_LENGTH = 253


class ConfigError(Exception):
    """The watcher's own configuration is unusable (exit status 2)."""


class ConsulError(Exception):
    """Consul could not be asked (unreachable, refused, ACL denied, bad answer)."""


# --- settings -----------------------------------------------------------------------------


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


def load_settings(config_path: Path | None, environ: Mapping[str, str]) -> Settings:
    """Settings from the JSON file (unknown keys are an error), then the environment."""
    values: dict[str, object] = {}
    if config_path is not None:
        try:
            values = json.loads(config_path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{config_path}: {err}") from err
        if not isinstance(values, dict):
            raise ConfigError(f"{config_path}: expected a JSON object")
    known = {field.name: field for field in fields(Settings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{config_path}: unknown setting(s) {', '.join(unknown)}")
    defaults = Settings()
    for name, value in values.items():
        expected = type(getattr(defaults, name))
        if expected is tuple:
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise ConfigError(f"{config_path}: {name}: expected a list of strings")
            values[name] = tuple(value)
        elif expected is float and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
        elif not isinstance(value, expected) or isinstance(value, bool):
            raise ConfigError(f"{config_path}: {name}: expected {expected.__name__}")
    if "CONSUL_HTTP_ADDR" in environ:
        values["consul_addr"] = environ["CONSUL_HTTP_ADDR"]
    return Settings(**values)  # type: ignore[arg-type]


def consul_base_url(addr: str) -> str:
    return (addr if "://" in addr else f"http://{addr}").rstrip("/")


def read_token(settings: Settings, environ: Mapping[str, str]) -> str:
    """The ACL token: ``CONSUL_HTTP_TOKEN``, else the (root-only) token file, else none."""
    if environ.get("CONSUL_HTTP_TOKEN"):
        return environ["CONSUL_HTTP_TOKEN"]
    if not settings.consul_token_file:
        return ""
    try:
        return Path(settings.consul_token_file).read_text().strip()
    except OSError as err:
        raise ConfigError(f"consul_token_file: {err}") from err


# --- consul -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsulClient:
    base_url: str
    token: str

    def get(self, path: str, params: Mapping[str, str | int], timeout: float) -> tuple[object, int]:
        """GET a JSON document and its ``X-Consul-Index``."""
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"{self.base_url}{path}?{query}")
        if self.token:
            request.add_header("X-Consul-Token", self.token)
        # Consul is asked directly: a proxy from the environment never applies.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                document = json.load(response)
                index = int(response.headers.get("X-Consul-Index", "0"))
        except urllib.error.HTTPError as err:
            detail = err.read(200).decode(errors="replace").strip()
            raise ConsulError(f"{path}: HTTP {err.code} {detail}") from err
        except urllib.error.URLError as err:
            raise ConsulError(f"{path}: {err.reason}") from err
        except (OSError, ValueError) as err:
            raise ConsulError(f"{path}: {err}") from err
        return document, index


def catalog_path() -> str:
    return "/v1/catalog/services"


def health_path(service: str) -> str:
    return f"/v1/health/service/{urllib.parse.quote(service, safe='')}"


HEALTH_PARAMS: dict[str, str | int] = {"passing": 1}


# --- model: routes and instances ------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Route:
    host: str
    path: str

    def __str__(self) -> str:
        return f"{self.host}{self.path}"


@dataclass(frozen=True)
class RoutedService:
    name: str
    routes: tuple[Route, ...]
    instances: tuple[str, ...]  # "address:port", sorted


def parse_route_tag(tag: str) -> Route | None:
    """``route=HOST/PATH`` as a Route; None when the tag is no valid route."""
    spec = tag[len(ROUTE_TAG_PREFIX) :]
    host, slash, rest = spec.partition("/")
    host = host.lower()
    path = "/" + rest.strip("/") if slash else "/"
    if len(host) > MAX_HOST_LENGTH or not HOST_PATTERN.match(host) or not PATH_PATTERN.match(path):
        return None
    return Route(host, path)


def routes_by_service(catalog: Mapping[str, Iterable[str]]) -> tuple[dict[str, tuple[Route, ...]], list[str]]:
    """From ``/v1/catalog/services`` (name -> tags): each routed service's routes, and bad tags."""
    routed: dict[str, tuple[Route, ...]] = {}
    bad_tags: list[str] = []
    for name, tags in sorted(catalog.items()):
        routes: set[Route] = set()
        for tag in tags or ():
            if not tag.startswith(ROUTE_TAG_PREFIX):
                continue
            route = parse_route_tag(tag)
            if route is None:
                bad_tags.append(f"{name}: {tag}")
            else:
                routes.add(route)
        if routes:
            routed[name] = tuple(sorted(routes))
    return routed, bad_tags


def passing_instances(entries: Iterable[Mapping[str, object]]) -> tuple[str, ...]:
    """``address:port`` of each entry of ``/v1/health/service/NAME?passing=1``."""
    instances: set[str] = set()
    for entry in entries:
        service = entry.get("Service")
        node = entry.get("Node")
        if not isinstance(service, dict) or not isinstance(node, dict):
            continue
        address = str(service.get("Address") or node.get("Address") or "")
        port = service.get("Port")
        if not address or not isinstance(port, int) or port <= 0:
            continue
        instances.add(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
    return tuple(sorted(instances))


# --- render ---------------------------------------------------------------------------------


def upstream_name(position: int, service: str) -> str:
    return f"moorage_{position}_{re.sub(r'[^A-Za-z0-9_]', '_', service)}"


def claim_routes(services: Iterable[RoutedService]) -> dict[Route, RoutedService]:
    """Each route to one service: the first by name wins a contested route."""
    owners: dict[Route, RoutedService] = {}
    for service in sorted(services, key=lambda item: item.name):
        for route in service.routes:
            if route in owners:
                LOG.warning("route %s is claimed by %s and %s; %s keeps it", route, owners[route].name, service.name, owners[route].name)
                continue
            owners[route] = service
    return owners


def render_upstream(name: str, service: RoutedService, settings: Settings) -> list[str]:
    lines = [f"upstream {name} {{  # service {service.name}"]
    lines += [f"    server {instance};" for instance in service.instances]
    lines += [f"    keepalive {settings.upstream_keepalive};", "}", ""]
    return lines


def render_proxy_settings(settings: Settings) -> list[str]:
    return [
        "    proxy_http_version 1.1;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
        f"    proxy_connect_timeout {settings.proxy_connect_timeout};",
        f"    proxy_read_timeout {settings.proxy_read_timeout};",
        f"    proxy_send_timeout {settings.proxy_send_timeout};",
        "    proxy_next_upstream error timeout http_502 http_503;",
        f"    proxy_next_upstream_tries {settings.proxy_next_upstream_tries};",
    ]


def render_location(route: Route, upstream: str | None) -> list[str]:
    """One route: exact path plus everything below it (``/`` is a plain prefix)."""
    action = f'return 503 "no healthy instance for {route}\\n";' if upstream is None else f"proxy_pass http://{upstream};"
    if route.path == "/":
        return [f"    location / {{ {action} }}"]
    return [
        f"    location = {route.path} {{ {action} }}",
        f"    location {route.path}/ {{ {action} }}",
    ]


def render_default_server(settings: Settings) -> list[str]:
    lines = ["server {"]
    lines += [f"    listen {listen} default_server;" for listen in settings.listen]
    lines += [
        "    server_name _;",
        "    default_type text/plain;",
        '    location / { return 503 "no service routed for this host\\n"; }',
        "}",
        "",
    ]
    return lines


def render_host_server(host: str, locations: list[str], has_root: bool, settings: Settings) -> list[str]:
    lines = ["server {"]
    lines += [f"    listen {listen};" for listen in settings.listen]
    lines += [f"    server_name {host};", "    default_type text/plain;"]
    lines += render_proxy_settings(settings)
    lines += locations
    if not has_root:
        lines.append('    location / { return 404 "no service routed for this path\\n"; }')
    lines += ["}", ""]
    return lines


def render(services: Iterable[RoutedService], settings: Settings) -> str:
    """The whole generated file: upstreams, the default server, one server per route host."""
    owners = claim_routes(services)
    upstreams: dict[str, str] = {}
    lines = [
        "# Generated by moorage-ingress from the Consul catalog; every change rewrites it.",
        f"# routes: {len(owners)}",
        "",
    ]
    for position, service in enumerate(sorted({owner.name: owner for owner in owners.values()}.values(), key=lambda s: s.name)):
        if service.instances:
            upstreams[service.name] = upstream_name(position, service.name)
            lines += render_upstream(upstreams[service.name], service, settings)
    lines += render_default_server(settings)
    hosts = sorted({route.host for route in owners})
    for host in hosts:
        locations: list[str] = []
        host_routes = sorted(route for route in owners if route.host == host)
        for route in host_routes:
            locations += render_location(route, upstreams.get(owners[route].name))
        has_root = any(route.path == "/" for route in host_routes)
        lines += render_host_server(host, locations, has_root, settings)
    return "\n".join(lines)


# --- test, swap, reload -------------------------------------------------------------------------


def write_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def candidate_main_config(settings: Settings, candidate: Path) -> Path:
    """The main nginx config with the live include pointing at ``candidate`` (same directory)."""
    main = Path(settings.nginx_main_config)
    try:
        text = main.read_text()
    except OSError as err:
        raise ConfigError(f"nginx_main_config: {err}") from err
    include = re.compile(rf"(\binclude\s+){re.escape(settings.output)}(\s*;)")
    if len(include.findall(text)) != 1:
        raise ConfigError(f"{main} must have exactly one 'include {settings.output};'")
    candidate_main = main.with_name(f".moorage-ingress-candidate-{main.name}")
    candidate_main.write_text(include.sub(lambda match: f"{match[1]}{candidate}{match[2]}", text))
    return candidate_main


def test_config(settings: Settings, candidate: Path) -> tuple[bool, str]:
    """``nginx -t`` on a full main config that includes the candidate: (passed, nginx's words)."""
    candidate_main = candidate_main_config(settings, candidate)
    try:
        result = subprocess.run(
            [*settings.nginx_command, "-t", "-q", "-c", str(candidate_main)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        candidate_main.unlink(missing_ok=True)
    return result.returncode == 0, (result.stderr or result.stdout).strip()


def reload_nginx(settings: Settings) -> tuple[bool, str]:
    result = subprocess.run(list(settings.reload_command), capture_output=True, text=True, timeout=60, check=False)
    return result.returncode == 0, (result.stderr or result.stdout).strip()


class Outcome:
    UNCHANGED = "unchanged"
    APPLIED = "applied"
    REJECTED = "rejected"
    RELOAD_FAILED = "reload failed"
    FAILED = "failed"


class Applier:
    """Brings the live file to a rendered text: test, swap, reload; remembers a refused text."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.output = Path(settings.output)
        self.rejected_digest = ""

    def live_text(self) -> str | None:
        try:
            return self.output.read_text()
        except FileNotFoundError:
            return None

    def apply(self, text: str) -> str:
        if self.live_text() == text:
            return Outcome.UNCHANGED
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self.rejected_digest:
            return Outcome.REJECTED
        candidate = self.output.with_name(f"{self.output.name}.candidate")
        candidate.write_text(text)
        passed, words = test_config(self.settings, candidate)
        if not passed:
            rejected = self.output.with_name(f"{self.output.name}.rejected")
            os.replace(candidate, rejected)
            self.rejected_digest = digest
            LOG.error("candidate refused by nginx -t, kept as %s; still serving the last good config: %s", rejected, one_line(words))
            return Outcome.REJECTED
        os.replace(candidate, self.output)
        reloaded, words = reload_nginx(self.settings)
        if not reloaded:
            LOG.error("new config in place but the reload failed: %s", one_line(words))
            return Outcome.RELOAD_FAILED
        return Outcome.APPLIED


def one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


# --- watching the catalog -------------------------------------------------------------------------


def backoff_seconds(failures: int, cap: float) -> float:
    return min(cap, 0.5 * 2 ** min(failures - 1, 16))


def blocking_watch(
    client: ConsulClient,
    path: str,
    params: Mapping[str, str | int],
    deliver: Callable[[object], None],
    stop: threading.Event,
    settings: Settings,
) -> None:
    """Long-poll ``path`` until ``stop``; every answer goes to ``deliver``. Never raises on Consul."""
    index = 0
    failures = 0
    last_error = ""
    wait = settings.blocking_wait_seconds
    while not stop.is_set():
        try:
            document, new_index = client.get(path, {**params, "index": index, "wait": f"{wait}s"}, timeout=wait * 1.1 + 10)
        except ConsulError as err:
            failures += 1
            index = 0  # a restarted Consul starts its indexes anew: ask afresh
            if str(err) != last_error:
                LOG.warning("consul unreachable (%s); keeping the last good config, retrying with backoff", err)
                last_error = str(err)
            stop.wait(backoff_seconds(failures, settings.backoff_max_seconds))
            continue
        if failures:
            LOG.info("consul answers again: %s", path)
        failures, last_error = 0, ""
        index = new_index if new_index > index else (0 if new_index < index else max(index, 1))
        deliver(document)


class CatalogState:
    """What the watches saw: routed services and their passing instances; signals changes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.routes: dict[str, tuple[Route, ...]] | None = None
        self.instances: dict[str, tuple[str, ...]] = {}

    def snapshot(self) -> list[RoutedService] | None:
        """All routed services, or None until every one has had its first health answer."""
        with self.lock:
            if self.routes is None or any(name not in self.instances for name in self.routes):
                return None
            return [RoutedService(name, routes, self.instances[name]) for name, routes in self.routes.items()]


class CatalogWatcher:
    """One blocking watch on the service list, one per routed service on its passing instances."""

    def __init__(self, client: ConsulClient, settings: Settings, state: CatalogState) -> None:
        self.client = client
        self.settings = settings
        self.state = state
        self.health_stops: dict[str, threading.Event] = {}
        self.reported_bad_tags: set[str] = set()

    def start(self) -> None:
        self.spawn(catalog_path(), {}, self.on_catalog, threading.Event(), "catalog")

    def spawn(
        self, path: str, params: Mapping[str, str | int], deliver: Callable[[object], None], stop: threading.Event, name: str
    ) -> None:
        thread = threading.Thread(
            target=blocking_watch, args=(self.client, path, params, deliver, stop, self.settings), name=name, daemon=True
        )
        thread.start()

    def on_catalog(self, document: object) -> None:
        if not isinstance(document, dict):
            LOG.warning("unexpected answer from %s ignored", catalog_path())
            return
        routes, bad_tags = routes_by_service(document)
        for bad in sorted(set(bad_tags) - self.reported_bad_tags):
            LOG.warning("ignored invalid route tag (want route=HOST/PATH): %s", bad)
        self.reported_bad_tags = set(bad_tags)
        with self.state.lock:
            if routes == self.state.routes:
                return
            self.state.routes = routes
            for gone in set(self.health_stops) - set(routes):
                self.health_stops.pop(gone).set()
                self.state.instances.pop(gone, None)
            new_services = [name for name in routes if name not in self.health_stops]
            for name in new_services:
                self.health_stops[name] = threading.Event()
        for name in new_services:
            stop = self.health_stops[name]
            self.spawn(health_path(name), HEALTH_PARAMS, self.health_deliverer(name, stop), stop, f"health:{name}")
        self.state.changed.set()

    def health_deliverer(self, name: str, stop: threading.Event) -> Callable[[object], None]:
        def deliver(document: object) -> None:
            instances = passing_instances(document if isinstance(document, list) else [])
            with self.state.lock:
                if stop.is_set() or self.state.instances.get(name) == instances:
                    return
                self.state.instances[name] = instances
            self.state.changed.set()

        return deliver


# --- run modes ---------------------------------------------------------------------------------


def wait_for_quiet(changed: threading.Event, quiet: float, max_delay: float) -> None:
    """Return once ``quiet`` seconds pass without a signal, or ``max_delay`` after the call."""
    deadline = time.monotonic() + max_delay
    while True:
        changed.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not changed.wait(min(quiet, remaining)):
            return


def describe(services: list[RoutedService]) -> str:
    routes = sum(len(service.routes) for service in services)
    instances = sum(len(service.instances) for service in services)
    return f"{len(services)} routed services, {routes} routes, {instances} passing instances"


def apply_and_log(applier: Applier, services: list[RoutedService], settings: Settings) -> str:
    try:
        outcome = applier.apply(render(services, settings))
    except (OSError, subprocess.SubprocessError) as err:
        LOG.error("could not apply the new config (the last good one stays): %s", err)
        return Outcome.FAILED
    if outcome == Outcome.APPLIED:
        LOG.info("applied new config and reloaded nginx: %s", describe(services))
    return outcome


def run_daemon(settings: Settings, client: ConsulClient) -> None:
    state = CatalogState()
    applier = Applier(settings)
    CatalogWatcher(client, settings, state).start()
    LOG.info("watching %s; writing %s", client.base_url, settings.output)
    while True:
        state.changed.wait()
        wait_for_quiet(state.changed, settings.quiet_seconds, settings.max_delay_seconds)
        services = state.snapshot()
        if services is not None:
            apply_and_log(applier, services, settings)


def fetch_services(client: ConsulClient) -> list[RoutedService]:
    """The routed services and their passing instances, asked once (no blocking)."""
    catalog, _ = client.get(catalog_path(), {}, timeout=30)
    if not isinstance(catalog, dict):
        raise ConsulError(f"{catalog_path()}: unexpected answer")
    routes, bad_tags = routes_by_service(catalog)
    for bad in bad_tags:
        LOG.warning("ignored invalid route tag (want route=HOST/PATH): %s", bad)
    services = []
    for name, service_routes in routes.items():
        entries, _ = client.get(health_path(name), HEALTH_PARAMS, timeout=30)
        services.append(RoutedService(name, service_routes, passing_instances(entries if isinstance(entries, list) else [])))
    return services


def run_once(settings: Settings, client: ConsulClient) -> int:
    try:
        services = fetch_services(client)
    except ConsulError as err:
        LOG.error("consul unreachable (%s); the live config is unchanged", err)
        return 1
    outcome = apply_and_log(Applier(settings), services, settings)
    if outcome == Outcome.UNCHANGED:
        LOG.info("config unchanged: %s", describe(services))
    return 0 if outcome in (Outcome.APPLIED, Outcome.UNCHANGED) else 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="moorage-ingress", description="NGINX config from the Consul catalog.")
    parser.add_argument("--config", type=Path, help="JSON settings file")
    parser.add_argument("--once", action="store_true", help="render, test, swap and reload once, then exit")
    return parser.parse_args(argv)


def stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    LOG.info("stopping on signal %d", signum)
    sys.exit(0)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stdout)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings(args.config, os.environ)
        client = ConsulClient(consul_base_url(settings.consul_addr), read_token(settings, os.environ))
        if args.once:
            return run_once(settings, client)
        signal.signal(signal.SIGTERM, stop_on_signal)
        run_daemon(settings, client)
    except ConfigError as err:
        LOG.error("%s", err)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
