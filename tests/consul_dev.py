"""A real Consul dev agent on loopback for tests that talk to Consul (no mock).

The binary is Debian bullseye's ``consul`` 1.8.7, the same build the lab installs. It comes
from a lab apt repository already built under the cache root (``moorage lab up`` builds one;
this helper never starts that build), otherwise it is fetched once with ``apt-get download``
through a private sources list (the host's apt configuration is never changed) and cached under
``/var/cache/moorage/consul-dev``. The helper creates every directory it uses, so it works
whichever of the two caches exists (tests/unit/test_consul_dev.py covers each case).

Each agent gets its own free ports and data, so several test sessions (and several
engineers) can run side by side. ``acl=True`` starts it with ACLs on, default policy deny,
and a known management token.

Use it from a test module:  ``from consul_dev import ConsulDev, start_consul_dev``
(``tests/`` is on pytest's ``pythonpath``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from waiting import stop_process

BULLSEYE_SOURCE = (
    "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bullseye\nComponents: main\n"
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
)


def _cache_root() -> Path:
    return Path(os.environ.get("MOORAGE_CACHE_DIR", "/var/cache/moorage"))


def _cache_dir() -> Path:
    return _cache_root() / "consul-dev"


def lab_repo_debs() -> list[Path]:
    """Consul packages of finished lab apt repositories (``apt/KEY/``; a ``KEY.building`` is not finished)."""
    repos = _cache_root() / "apt"
    return sorted(deb for deb in repos.glob("*/consul_*.deb") if not deb.parent.name.endswith(".building"))


def _consul_deb() -> Path:
    found = lab_repo_debs()
    if found:
        return found[-1]
    debs = _cache_dir() / "debs"
    found = sorted(debs.glob("consul_*.deb"))
    if found:
        return found[-1]
    return _download_consul_deb(debs)


def _download_consul_deb(debs: Path) -> Path:
    """``apt-get download consul`` from bullseye without touching the host's apt sources."""
    apt_dir = _cache_dir() / "apt"
    (apt_dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt_dir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    sources = apt_dir / "bullseye.sources"
    sources.write_text(BULLSEYE_SOURCE)
    options = [
        "-o",
        f"Dir::Etc::SourceList={sources}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={apt_dir / 'lists'}",
        "-o",
        f"Dir::Cache={apt_dir / 'cache'}",
    ]
    subprocess.run(["apt-get", *options, "update", "-qq"], check=True)
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", *options, "download", "-qq", "consul"], check=True, cwd=debs)
    return sorted(debs.glob("consul_*.deb"))[-1]


def consul_binary() -> Path:
    """The ``consul`` binary extracted from the Debian package (cached)."""
    deb = _consul_deb()
    root = _cache_dir() / "root" / deb.stem
    binary = root / "usr" / "bin" / "consul"
    if not binary.exists():
        _cache_dir().mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=_cache_dir()))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(root)
        except OSError:
            if not binary.exists():  # not another test session that extracted it meanwhile
                raise
            shutil.rmtree(staging, ignore_errors=True)
    return binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ConsulDev:
    """A running dev agent: ``host``/``port`` of its HTTP API and, with ACLs, the management token."""

    host: str
    port: int
    management_token: str | None
    process: subprocess.Popen[bytes] = field(repr=False)
    data_dir: Path = field(repr=False)

    @property
    def http_addr(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.http_addr}"

    def api(self, method: str, path: str, body: object | None = None, token: str | None = None) -> object:
        """One HTTP API call (for test setup and assertions); JSON in, JSON out."""
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
        )
        chosen = token if token is not None else self.management_token
        if chosen:
            request.add_header("X-Consul-Token", chosen)
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
        return json.loads(text) if text.strip() else None


def _wait_for_leader(agent: ConsulDev, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if agent.process.poll() is not None:
            raise RuntimeError(f"consul dev agent exited with {agent.process.returncode}")
        try:
            if agent.api("GET", "/v1/status/leader"):
                # With ACLs the management token must be usable before tests start.
                agent.api("GET", "/v1/agent/self")
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError("consul dev agent elected no leader within 30 s")


@contextmanager
def start_consul_dev(acl: bool = False, node_meta: dict[str, str] | None = None) -> Iterator[ConsulDev]:
    """Start a dev agent on loopback with free ports; stop it and remove its data afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="consul-dev-"))
    http_port = free_port()
    config: dict[str, object] = {
        "node_name": f"dev-{http_port}",
        "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
        "data_dir": str(data_dir / "data"),
        "enable_local_script_checks": True,
        "ports": {
            "http": http_port,
            "dns": free_port(),
            "server": free_port(),
            "serf_lan": free_port(),
            "serf_wan": free_port(),
            "grpc": -1,
        },
        "node_meta": node_meta or {},
    }
    management_token = None
    if acl:
        management_token = str(uuid.uuid4())
        config["primary_datacenter"] = "dc1"
        config["acl"] = {
            "enabled": True,
            "default_policy": "deny",
            "enable_token_persistence": False,
            "tokens": {"master": management_token, "agent": management_token},
        }
    config_file = data_dir / "dev.json"
    config_file.write_text(json.dumps(config))
    log = open(data_dir / "consul.log", "wb")  # noqa: SIM115 - lives as long as the agent
    process = subprocess.Popen(
        [str(consul_binary()), "agent", "-dev", f"-config-file={config_file}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    agent = ConsulDev("127.0.0.1", http_port, management_token, process, data_dir)
    try:
        _wait_for_leader(agent)
        yield agent
    finally:
        stop_process(process)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)
