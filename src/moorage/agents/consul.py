"""A small Consul HTTP API client: JSON in and out, ACL tokens, blocking queries, one error type.

Shared by every host agent and by the collection's modules (this file is also a module_utils of
the Ansible collection): standard library only, no import of another moorage module. Consul is
always asked directly; a proxy from the environment never applies.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ADDRESS = "http://127.0.0.1:8500"
TOKEN_HEADER = "X-Consul-Token"
MAINTENANCE_CHECK_PREFIX = "_service_maintenance:"  # the check ID of an instance in maintenance, then its ID
Params = Mapping[str, str | int]
# Words of a Consul server's HTTP 500 while its cluster has no leader or lost its way to it (an
# election after a server died): worth asking again, for up to TRANSIENT_RETRY_SECONDS.
TRANSIENT_CONSUL_ERRORS = ("No cluster leader", "rpc error", "leadership lost", "connection refused", "EOF", "i/o timeout")
TRANSIENT_RETRY_SECONDS = 60.0


class ConsulError(Exception):
    """Consul could not be asked, or refused: unreachable, ACL denied, not found, a bad answer."""

    def __init__(self, message: str, status: int | None = None, index: int = 0) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status when Consul answered, else None
        self.index = index  # the X-Consul-Index it answered with (a 404 of a blocking query has one), else 0


def is_transient(error: ConsulError) -> bool:
    """Whether ``error`` is what an election does to a request, so asking again is worth it.

    A server's 500 in its own words (no leader, a lost RPC), or no answer in time at all: even a
    local agent's endpoint (maintenance, registration) waits for its ACL token to be resolved by
    the servers, and while they elect a leader that takes longer than one request's timeout.
    """
    if error.status is None:
        return "timed out" in str(error)
    return error.status == 500 and any(words in str(error) for words in TRANSIENT_CONSUL_ERRORS)


@dataclass(frozen=True)
class Answer:
    """A JSON document and the ``X-Consul-Index`` it came with (0 when Consul sent none)."""

    document: object
    index: int


def base_url(address: str) -> str:
    """``127.0.0.1:8500`` or ``http://127.0.0.1:8500/`` -> ``http://127.0.0.1:8500``."""
    return (address if "://" in address else f"http://{address}").rstrip("/")


def consul_index(header: str | None) -> int:
    """The ``X-Consul-Index`` header as a number (0 when missing or not a number)."""
    try:
        return max(int(header or 0), 0)
    except ValueError:
        return 0


def read_token(environ: Mapping[str, str], token_file: str = "") -> str:
    """The ACL token: ``CONSUL_HTTP_TOKEN``, else the first line of ``token_file``, else none.

    OSError when the token file cannot be read.
    """
    if environ.get("CONSUL_HTTP_TOKEN"):
        return environ["CONSUL_HTTP_TOKEN"]
    if not token_file:
        return ""
    return Path(token_file).read_text().strip()


def client_from_environment(address: str, token_file: str, environ: Mapping[str, str]) -> ConsulClient:
    """A client for an agent: ``CONSUL_HTTP_ADDR`` and ``CONSUL_HTTP_TOKEN`` override its settings.

    OSError when the token file cannot be read.
    """
    return ConsulClient(environ.get("CONSUL_HTTP_ADDR") or address, read_token(environ, token_file))


@dataclass(frozen=True)
class ConsulClient:
    address: str = DEFAULT_ADDRESS
    token: str = ""

    @property
    def url(self) -> str:
        return base_url(self.address)

    def get(self, path: str, params: Params | None = None, timeout: float = 10.0) -> Answer:
        """GET ``path`` (``/v1/...``): its JSON document and index."""
        return self._request("GET", path, params, None, timeout)

    def blocking_get(self, path: str, params: Params | None, index: int, wait_seconds: int) -> Answer:
        """GET ``path`` once its index passes ``index``, or after about ``wait_seconds``.

        Consul adds up to wait/16 of jitter; the socket waits that and ten seconds more.
        """
        query = {**(params or {}), "index": index, "wait": f"{wait_seconds}s"}
        return self._request("GET", path, query, None, wait_seconds * 1.1 + 10)

    def put(self, path: str, params: Params | None = None, body: object = None, timeout: float = 10.0) -> object:
        """PUT ``path`` with ``body`` as JSON (nothing when None); Consul's JSON answer."""
        return self._request("PUT", path, params, body, timeout).document

    def _request(self, method: str, path: str, params: Params | None, body: object, timeout: float) -> Answer:
        """One request; one that a cluster between leaders failed is asked again until TRANSIENT_RETRY_SECONDS passed."""
        deadline = time.monotonic() + TRANSIENT_RETRY_SECONDS
        while True:
            try:
                return self._request_once(method, path, params, body, timeout)
            except ConsulError as error:
                if not is_transient(error) or time.monotonic() >= deadline:
                    raise
            time.sleep(1)

    def _request_once(self, method: str, path: str, params: Params | None, body: object, timeout: float) -> Answer:
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header(TOKEN_HEADER, self.token)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                text = response.read().decode()
                index = consul_index(response.headers.get("X-Consul-Index"))
        except urllib.error.HTTPError as err:
            detail = err.read(300).decode(errors="replace").strip()
            index = consul_index(err.headers.get("X-Consul-Index") if err.headers else None)
            raise ConsulError(f"{method} {path}: HTTP {err.code} {detail}".rstrip(), err.code, index) from err
        except urllib.error.URLError as err:
            raise ConsulError(f"{method} {path}: {err.reason}") from err
        except (OSError, ValueError) as err:
            raise ConsulError(f"{method} {path}: {err}") from err
        try:
            document = json.loads(text) if text.strip() else None
        except ValueError as err:
            raise ConsulError(f"{method} {path}: not JSON: {text[:100]!r}") from err
        return Answer(document, index)
