"""How the deploy reaches Consul and the site's vault for an inventory.

Consul: ``CONSUL_HTTP_ADDR``/``CONSUL_HTTP_TOKEN`` when set, else the hosts of the inventory's
``consul_servers`` group on port 8500 with the management token from the site's vault file in the
inventory's directory (``moorage.vault``), opened with the site's vault password. Every request goes
to the first server that answers and stays with it; a server that is away, or a cluster between two
leaders ("No cluster leader", "rpc error"), is retried on the next server, then again, for up to
``CONSUL_RETRY_SECONDS``: a Consul server killed or restarted during a deploy costs a pause, not the
deploy. The management token also goes, in memory only, to the hosts' deploy agent (over SSH, on its
stdin), which creates the service's own token from it; no secret is ever a command line argument or
a file on the controller.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import consul
import consul.std
import requests

from moorage import vault
from moorage.agents.consul import TRANSIENT_CONSUL_ERRORS
from moorage.errors import BadInput, MoorageError
from moorage.inventory import Inventory

CONSUL_HTTP_PORT = 8500
CONSUL_RETRY_SECONDS = 30.0  # while a command works: long enough for a leader election or a server's restart
CONSUL_FIRST_CONTACT_SECONDS = 5.0  # before it starts: an inventory whose Consul never answers is bad input


class ConsulUnreachable(MoorageError):
    """No Consul server answered within CONSUL_RETRY_SECONDS (exit 1; at the start of a command, bad input)."""


class FailoverHTTPClient(consul.std.HTTPClient):  # type: ignore[misc]
    """py-consul's HTTP client over several Consul servers, retrying what a server's absence or an election causes."""

    def __init__(self, hosts: list[str], port: int, retry_seconds: float) -> None:
        super().__init__(hosts[0], port, "http")
        self.hosts = list(hosts)
        self.retry_seconds = retry_seconds

    def get(self, callback: Callable[..., Any], path: str, params: Any = None, headers: Any = None, raw: bool = False) -> Any:
        return self._send("GET", callback, path, params, headers=headers, raw=raw)

    def put(self, callback: Callable[..., Any], path: str, params: Any = None, data: Any = "", headers: Any = None) -> Any:
        return self._send("PUT", callback, path, params, data=data, headers=headers)

    def delete(self, callback: Callable[..., Any], path: str, params: Any = None, data: Any = "", headers: Any = None) -> Any:
        return self._send("DELETE", callback, path, params, data=data, headers=headers)

    def post(self, callback: Callable[..., Any], path: str, params: Any = None, data: Any = "", headers: Any = None) -> Any:
        return self._send("POST", callback, path, params, data=data, headers=headers)

    def _send(
        self, method: str, callback: Callable[..., Any], path: str, params: Any, *, data: Any = None, headers: Any = None, raw: bool = False
    ) -> Any:
        deadline = time.monotonic() + self.retry_seconds
        problems: dict[str, str] = {}
        while True:
            for host in list(self.hosts):
                uri = f"{self.scheme}://{host}:{self.port}{urllib.parse.quote(path, safe='/:')}"
                if params:
                    uri += f"?{urllib.parse.urlencode(params)}"
                try:
                    response = self.session.request(method, uri, headers=headers, data=data, timeout=self.timeout(params))
                except requests.RequestException as error:
                    problems[host] = f"{type(error).__name__}: {error}"
                    continue
                if response.status_code == 500 and any(words in response.text for words in TRANSIENT_CONSUL_ERRORS):
                    problems[host] = response.text.strip()
                    continue
                self.hosts.remove(host)
                self.hosts.insert(0, host)  # stay with a server that answers
                return callback(self.response(response, raw=raw))
            if time.monotonic() >= deadline:
                tried = "; ".join(f"{host}:{self.port}: {' '.join(problem.split())[:200]}" for host, problem in problems.items())
                raise ConsulUnreachable(f"Consul did not answer {method} {path} within {self.retry_seconds:g}s ({tried})")
            time.sleep(1)


class FailoverConsul(consul.Consul):  # type: ignore[misc]
    """A py-consul client whose requests go to the first of several servers that answers."""

    def __init__(self, hosts: list[str], port: int, token: str, retry_seconds: float = CONSUL_RETRY_SECONDS) -> None:
        self.hosts, self.retry_seconds = hosts, retry_seconds
        super().__init__(host=hosts[0], port=port, token=token)

    def http_connect(self, host: str, port: int, scheme: str, verify: bool | str = True, cert: Any = None) -> FailoverHTTPClient:
        return FailoverHTTPClient(self.hosts, port, self.retry_seconds)


@dataclass(frozen=True)
class SecretsFile:
    """``--secrets FILE --vault-password-file P``: the service's secret values, an Ansible Vault file."""

    vault: Path
    password_file: Path


@dataclass(frozen=True)
class PlatformAccess:
    client: consul.Consul
    management_token: str


def platform_access(inventory: Inventory, passwords: Sequence[Path] = ()) -> PlatformAccess:
    """Consul for ``inventory``; ``passwords`` open the site's vault file (unless CONSUL_HTTP_TOKEN is set)."""
    inventory_path = inventory.path
    token = os.environ.get("CONSUL_HTTP_TOKEN") or _management_token(inventory_path, passwords)
    if os.environ.get("CONSUL_HTTP_ADDR"):
        client = consul.Consul(token=token)
    else:
        servers = [host.address for host in inventory.hosts("consul_servers")]
        if not servers:
            raise BadInput(f"{inventory_path}: no hosts in group consul_servers, and no CONSUL_HTTP_ADDR to reach Consul at")
        try:
            FailoverConsul(servers, CONSUL_HTTP_PORT, token, CONSUL_FIRST_CONTACT_SECONDS).status.leader()
        except ConsulUnreachable as error:
            raise BadInput(f"{inventory_path}: {error}") from None
        client = FailoverConsul(servers, CONSUL_HTTP_PORT, token)
    return PlatformAccess(client=client, management_token=token)


def _management_token(inventory_path: Path, passwords: Sequence[Path]) -> str:
    vault.migrate_legacy_secrets(inventory_path, passwords)
    site = vault.site_vault(inventory_path, passwords)
    if not site.exists:
        raise BadInput(
            f"{inventory_path}: no Consul token: no site secrets in {site.file} "
            f"(run 'moorage platform up -i {inventory_path}', or set CONSUL_HTTP_TOKEN)"
        )
    token = site.read().get("consul_bootstrap_token")
    if not isinstance(token, str) or not token:
        raise BadInput(f"{site.file}: no consul_bootstrap_token yet (run 'moorage platform up -i {inventory_path}')")
    return token
