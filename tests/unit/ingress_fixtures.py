"""Real parts for the ingress watcher's tests: NGINX in a temp prefix, the watcher, HTTP backends.

Everything listens on loopback only, on free high ports. NGINX is Debian's ``/usr/sbin/nginx``
run as a non-daemon master with its own main config (pid, logs and temp paths in the prefix);
the watcher is the ``ingress`` agent as the agent role installs it (``agent_layout``), run by
Debian's ``python3`` in isolated mode as on the lb hosts (standard library only). Consul comes
from ``consul_dev``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import jinja2
from agent_layout import agent_command
from consul_dev import ConsulDev, free_port
from ruamel.yaml import YAML
from waiting import stop_process

NGINX = "/usr/sbin/nginx"
# Debian's NGINX Lua module (libnginx-mod-http-lua) and the NDK it needs, by absolute path (NGINX runs in a temp prefix).
LUA_MODULES = "\n".join(f"load_module /usr/share/nginx/modules/{module}.so;" for module in ("ndk_http_module", "ngx_http_lua_module"))

REPO = Path(__file__).resolve().parents[2]
LB_NODE = "lb-test"  # the Consul node name the fixture's watcher acknowledges as


def role_policy_rules(name: str, lb_hosts: list[str]) -> str:
    """The rules of the consul role's policy ``name`` (defaults/main.yml), rendered for these lb hosts."""
    defaults = YAML(typ="safe").load((REPO / "roles/consul/defaults/main.yml").read_text())
    rules = next(policy["rules"] for policy in defaults["consul_acl_policies"] if policy["name"] == name)
    variables = {"groups": {"lb": lb_hosts}, "consul_ingress_acks_group": defaults["consul_ingress_acks_group"]}
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(rules).render(variables)


def token_with_policies(consul: ConsulDev, *rules: str) -> str:
    """A token holding one new policy per rules text, created through the ACL API."""
    policies = []
    for text in rules:
        policy = consul.api("PUT", "/v1/acl/policy", {"Name": f"test-{free_port()}", "Rules": text})
        assert isinstance(policy, dict)
        policies.append({"ID": policy["ID"]})
    token = consul.api("PUT", "/v1/acl/token", {"Policies": policies})
    assert isinstance(token, dict)
    return str(token["SecretID"])


T = TypeVar("T")


def eventually(probe: Callable[[], T], timeout: float = 15.0, interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; fail with its last answer after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, http.client.HTTPException) as err:
            last = err
        else:
            if last:
                return last  # type: ignore[return-value]
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s; last answer: {last!r}")


# --- backends ---------------------------------------------------------------------------------


class Backend:
    """A tiny HTTP/1.1 server that answers GET and POST on every path with ``backend NAME`` (200).

    It keeps connections open (keep-alive, as NGINX's upstream pool wants) and counts, per
    connection, the requests it answered (not Consul's checks of ``/healthz``); ``stop`` closes the
    listener and every open connection.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.requests_by_connection: Counter[tuple[str, int]] = Counter()
        self.open_connections: dict[tuple[str, int], socket.socket] = {}
        answer = f"backend {name}\n".encode()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def setup(self) -> None:
                super().setup()
                with backend.lock:
                    backend.open_connections[self.client_address] = self.connection

            def finish(self) -> None:
                with backend.lock:
                    backend.open_connections.pop(self.client_address, None)
                super().finish()

            def do_GET(self) -> None:
                if self.path != "/healthz":  # Consul's check is not a request through NGINX
                    with backend.lock:
                        backend.requests_by_connection[self.client_address] += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def requests(self) -> int:
        with self.lock:
            return sum(self.requests_by_connection.values())

    def connections_open(self) -> int:
        with self.lock:
            return len(self.open_connections)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            connections = list(self.open_connections.values())
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


@contextmanager
def backends(*names: str) -> Iterator[list[Backend]]:
    started = [Backend(name) for name in names]
    try:
        yield started
    finally:
        for backend in started:
            backend.stop()


def register(consul: ConsulDev, service: str, backend: Backend, tags: list[str]) -> str:
    """Register ``backend`` as an instance of ``service`` with a real HTTP check; returns its ID."""
    service_id = f"{service}-{backend.port}"
    consul.api(
        "PUT",
        "/v1/agent/service/register",
        {
            "ID": service_id,
            "Name": service,
            "Tags": ["moorage", *tags],
            "Address": "127.0.0.1",
            "Port": backend.port,
            "Check": {"HTTP": f"http://127.0.0.1:{backend.port}/healthz", "Interval": "1s", "Timeout": "1s", "Status": "passing"},
        },
    )
    return service_id


def deregister(consul: ConsulDev, service_id: str) -> None:
    consul.api("PUT", f"/v1/agent/service/deregister/{service_id}")


def ingress_token(consul: ConsulDev) -> str:
    """A token with exactly the policies the consul role gives the nginx-ingress token (lb host: LB_NODE)."""
    return token_with_policies(consul, role_policy_rules("catalog-read", [LB_NODE]), role_policy_rules("ingress-acks", [LB_NODE]))


# --- nginx + watcher ------------------------------------------------------------------------------


@dataclass
class Ingress:
    """A running NGINX fed by a running watcher."""

    agents_root: Path
    port: int
    prefix: Path
    config: Path
    output: Path
    error_log: Path
    watcher_log: Path
    nginx: subprocess.Popen[bytes]
    watcher: subprocess.Popen[bytes]

    def get(self, host: str, path: str = "/") -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", path, headers={"Host": host})
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def bodies(self, host: str, requests: int, path: str = "/") -> set[str]:
        return {body for _, body in (self.get(host, path) for _ in range(requests))}

    def reloads(self) -> int:
        """How often NGINX itself logged a reload (SIGHUP, 'reconfiguring')."""
        return self.error_log.read_text().count("(SIGHUP) received")

    def start_nginx(self) -> None:
        """Start NGINX (again): a fresh master, fresh shared memory."""
        self.nginx = start_nginx(self.prefix, self.error_log)

    def stop_nginx(self) -> None:
        stop_process(self.nginx)
        (self.prefix / "logs" / "nginx.pid").unlink(missing_ok=True)

    def settings(self) -> dict[str, object]:
        settings = json.loads(self.config.read_text())
        assert isinstance(settings, dict)
        return settings

    def log(self) -> str:
        return self.watcher_log.read_text()

    def once_args(self) -> list[str]:
        return ["--config", str(self.config), "--once"]

    def run_once(self, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_watcher(self.agents_root, self.once_args(), env)

    def start_once(self) -> subprocess.Popen[str]:
        """A ``--once`` run started, not waited for (stdout and stderr together)."""
        command = agent_command(self.agents_root, "ingress", *self.once_args())
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={})


def run_watcher(agents_root: Path, args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = agent_command(agents_root, "ingress", *args)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env or {}, check=False)


def nginx_main_config(prefix: Path, output: Path) -> str:
    """A main config like the role's: the generated file is included once, by its exact path."""
    temp = prefix / "tmp"
    return f"""\
# Like the role's nginx.conf: the routes come from moorage-ingress, in {output}.
{LUA_MODULES}
worker_processes 2;
error_log {prefix}/logs/error.log notice;
pid {prefix}/logs/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {output};
}}
"""


def watcher_settings(consul: ConsulDev, prefix: Path, port: int, token_file: Path | None) -> dict[str, object]:
    nginx = [NGINX, "-p", str(prefix), "-e", str(prefix / "logs" / "error.log")]
    return {
        "consul_addr": consul.url,
        "consul_token_file": str(token_file) if token_file else "",
        "output": str(prefix / "conf" / "moorage" / "ingress.conf"),
        "nginx_main_config": str(prefix / "conf" / "nginx.conf"),
        "nginx_command": nginx,
        "reload_command": [*nginx, "-c", str(prefix / "conf" / "nginx.conf"), "-s", "reload"],
        "listen": [f"127.0.0.1:{port}"],
        "quiet_seconds": 0.5,
        "max_delay_seconds": 5.0,
        "blocking_wait_seconds": 60,
        "backoff_max_seconds": 1.0,
        "ack_node": LB_NODE,
        "balancer_listen": f"127.0.0.1:{free_port()}",
        "balancer_key_file": str(prefix / "conf" / "balancer.key"),
        "balancer_state_file": str(prefix / "state" / "backends.state"),
        "balancer_shared_dict_size": "1m",
        "balancer_check_seconds": 0.5,
    }


def start_nginx(prefix: Path, error_log: Path) -> subprocess.Popen[bytes]:
    """NGINX in the foreground with the prefix's main config; returns once it wrote its pid file."""
    nginx = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-e", str(error_log), "-c", str(prefix / "conf" / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    eventually((prefix / "logs" / "nginx.pid").exists, timeout=10)
    return nginx


@contextmanager
def start_ingress(agents_root: Path, consul: ConsulDev, prefix: Path, token: str, token_in_env: bool = False) -> Iterator[Ingress]:
    """NGINX on a free loopback port plus the watcher daemon; the token from a 0600 file or the env."""
    for directory in ("conf/moorage", "logs", "tmp"):
        (prefix / directory).mkdir(parents=True, exist_ok=True)
    port = free_port()
    output = prefix / "conf" / "moorage" / "ingress.conf"
    output.write_text("# empty until the watcher renders it\n")
    main_config = prefix / "conf" / "nginx.conf"
    main_config.write_text(nginx_main_config(prefix, output))
    token_file = prefix / "conf" / "consul.token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    config = prefix / "conf" / "ingress.json"
    config.write_text(json.dumps(watcher_settings(consul, prefix, port, None if token_in_env else token_file)))
    error_log = prefix / "logs" / "error.log"
    error_log.touch()
    nginx = start_nginx(prefix, error_log)
    watcher_log = prefix / "logs" / "watcher.log"
    env = {"CONSUL_HTTP_TOKEN": token} if token_in_env else {}
    with open(watcher_log, "wb") as log:
        watcher = subprocess.Popen(
            agent_command(agents_root, "ingress", "--config", str(config)), stdout=log, stderr=subprocess.STDOUT, env=env
        )
    ingress = Ingress(agents_root, port, prefix, config, output, error_log, watcher_log, nginx, watcher)
    try:
        eventually(lambda: "default_server" in output.read_text(), timeout=15)
        eventually(lambda: ingress.get("fixture.invalid"), timeout=10)  # the reload has opened the port
        yield ingress
    finally:
        stop_process(watcher)
        stop_process(ingress.nginx)
