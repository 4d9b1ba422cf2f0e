"""Real parts for the ingress watcher's tests: NGINX in a temp prefix, the watcher, HTTP backends.

Everything listens on loopback only, on free high ports. NGINX is Debian's ``/usr/sbin/nginx``
run as a non-daemon master with its own main config (pid, logs and temp paths in the prefix);
the watcher is the ``ingress`` agent as the agent role installs it (``agent_layout``), run by
Debian's ``python3`` in isolated mode as on the lb hosts (standard library only). Consul comes
from ``consul_dev``.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

from agent_layout import agent_command
from consul_dev import ConsulDev, free_port
from waiting import stop_process

NGINX = "/usr/sbin/nginx"

# The read-only policy the role's README asks for.
INGRESS_POLICY_RULES = 'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }\n'

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
    """A tiny HTTP server that answers every path with ``backend NAME`` (200)."""

    def __init__(self, name: str) -> None:
        self.name = name
        answer = f"backend {name}\n".encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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


def read_only_token(consul: ConsulDev) -> str:
    """A token with exactly the ingress policy (catalog and health read), created through the ACL API."""
    policy = consul.api("PUT", "/v1/acl/policy", {"Name": f"ingress-{free_port()}", "Rules": INGRESS_POLICY_RULES})
    assert isinstance(policy, dict)
    token = consul.api("PUT", "/v1/acl/token", {"Policies": [{"ID": policy["ID"]}]})
    assert isinstance(token, dict)
    return str(token["SecretID"])


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

    def log(self) -> str:
        return self.watcher_log.read_text()

    def run_once(self, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_watcher(self.agents_root, ["--config", str(self.config), "--once"], env)


def run_watcher(agents_root: Path, args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = agent_command(agents_root, "ingress", *args)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env or {}, check=False)


def nginx_main_config(prefix: Path, output: Path) -> str:
    """A main config like the role's: the generated file is included once, by its exact path."""
    temp = prefix / "tmp"
    return f"""\
# Like the role's nginx.conf: the routes come from moorage-ingress, in {output}.
worker_processes 1;
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
    }


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
    nginx = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-e", str(error_log), "-c", str(main_config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watcher_log = prefix / "logs" / "watcher.log"
    env = {"CONSUL_HTTP_TOKEN": token} if token_in_env else {}
    with open(watcher_log, "wb") as log:
        eventually((prefix / "logs" / "nginx.pid").exists, timeout=10)
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
        stop_process(nginx)
