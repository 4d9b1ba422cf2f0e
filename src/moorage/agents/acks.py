"""Ingress acknowledgments: which backends each lb's NGINX sends new requests to, per service.

After an lb's ingress watcher has applied a state to NGINX, it writes one Consul KV key per
routed service::

    moorage/ingress/<lb consul node name>/<service>
    {"backends": ["ADDRESS:PORT", ...], "index": <Consul index applied>, "updated": "<RFC 3339 UTC>"}

``backends`` is sorted and is exactly what NGINX routes new requests of the service to on that lb
(``[]``: none). A key is written only when its backends change, and deleted when the service is
routed no more. The lb's node name is its inventory hostname (the consul role sets ``node_name``).

Readers (the deploy): an instance ``ADDRESS:PORT`` is *routed on lb L* when L's key lists it, and
*drained on lb L* when L's key does not list it or L has no key for the service.
``wait_for_acks`` waits for that on a set of lbs with blocking queries on the prefix.

The writer is ``AckWriter`` (the ingress watcher); the key names and the JSON shape are a contract
between the watcher and the deploy (``roles/nginx_ingress/README.md``). Standard library only;
this module is also a module_utils of the Ansible collection.
"""

from __future__ import annotations

import base64
import enum
import json
import math
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .consul import ConsulClient, ConsulError

PREFIX = "moorage/ingress/"
TXN_MAX_OPERATIONS = 64  # Consul's limit per transaction
RETRY_SECONDS = 0.5  # the pause after Consul could not be asked while waiting


def ack_key(lb: str, service: str) -> str:
    return f"{PREFIX}{lb}/{service}"


def utc_now() -> str:
    """The current time in RFC 3339, UTC, to the millisecond (``2024-05-01T12:00:00.123Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Ack:
    """What one lb acknowledged for one service."""

    lb: str
    service: str
    backends: tuple[str, ...]  # sorted "ADDRESS:PORT" ("[v6]:PORT")
    index: int  # the Consul index of the health state that was applied
    updated: str  # RFC 3339, UTC

    def value(self) -> str:
        """The key's JSON value (the contract's shape)."""
        return json.dumps({"backends": sorted(self.backends), "index": self.index, "updated": self.updated}, separators=(",", ":"))


def parse_ack(key: str, value: str) -> Ack | None:
    """The ack of a key under ``PREFIX`` and its JSON value; None when either is not of the contract's shape."""
    lb, _, service = key.removeprefix(PREFIX).partition("/")
    if not key.startswith(PREFIX) or not lb or not service:
        return None
    try:
        document = json.loads(value)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    backends, index, updated = document.get("backends"), document.get("index"), document.get("updated")
    if not isinstance(backends, list) or not all(isinstance(backend, str) for backend in backends):
        return None
    if not isinstance(index, int) or isinstance(index, bool) or not isinstance(updated, str):
        return None
    return Ack(lb, service, tuple(sorted(backends)), index, updated)


class Want(enum.Enum):
    ROUTED = "routed"  # the lb sends new requests to the backend
    DRAINED = "drained"  # the lb sends no new request to the backend


@dataclass(frozen=True)
class AckTable:
    """Every ack under ``PREFIX`` as Consul had them at ``index``."""

    acks: Mapping[tuple[str, str], Ack] = field(default_factory=dict)  # (lb, service) -> ack
    index: int = 0

    def ack(self, lb: str, service: str) -> Ack | None:
        return self.acks.get((lb, service))

    def routed(self, lb: str, service: str, backend: str) -> bool:
        ack = self.ack(lb, service)
        return ack is not None and backend in ack.backends

    def drained(self, lb: str, service: str, backend: str) -> bool:
        ack = self.ack(lb, service)
        return ack is None or backend not in ack.backends

    def lacking(self, lbs: Iterable[str], service: str, backend: str, want: Want) -> list[str]:
        """The lbs (sorted) that do not acknowledge ``want`` for ``backend`` of ``service``."""
        holds = self.routed if want is Want.ROUTED else self.drained
        return sorted(lb for lb in set(lbs) if not holds(lb, service, backend))


def _table(entries: object, index: int) -> AckTable:
    acks: dict[tuple[str, str], Ack] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("Key"), str):
            continue
        try:
            value = base64.b64decode(entry.get("Value") or "").decode()
        except (ValueError, UnicodeDecodeError):
            continue
        ack = parse_ack(entry["Key"], value)
        if ack is not None:
            acks[(ack.lb, ack.service)] = ack
    return AckTable(acks, index)


def read_acks(client: ConsulClient, prefix: str = PREFIX, index: int = 0, wait_seconds: int = 60) -> AckTable:
    """The acks under ``prefix`` (``PREFIX`` or ``ack_key(lb, "")``); with ``index`` > 0 a blocking query.

    Raises ConsulError when Consul cannot be asked (a missing prefix is an empty table, not an error).
    """
    path = f"/v1/kv/{urllib.parse.quote(prefix)}"
    params = {"recurse": "true"}
    try:
        answer = client.blocking_get(path, params, index, wait_seconds) if index > 0 else client.get(path, params)
    except ConsulError as err:
        if err.status == 404:
            return AckTable({}, err.index)
        raise
    return _table(answer.document, answer.index)


def wait_for_acks(
    client: ConsulClient,
    lbs: Iterable[str],
    service: str,
    backend: str,
    want: Want,
    timeout_seconds: float,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Wait until every lb of ``lbs`` acknowledges ``want`` for ``backend`` of ``service``.

    Blocking queries on ``PREFIX`` (no polling); returns the lbs that had not acknowledged when
    ``timeout_seconds`` ran out (``[]``: all did). Consul being away counts as not acknowledged.
    """
    wanted = sorted(set(lbs))
    deadline = clock() + timeout_seconds
    index = 0
    lacking = wanted
    while True:
        remaining = deadline - clock()
        try:
            table = read_acks(client, index=index, wait_seconds=max(1, math.ceil(remaining)))
        except ConsulError:
            index = 0
            if remaining <= 0:
                return lacking
            time.sleep(min(RETRY_SECONDS, remaining))
            continue
        lacking = table.lacking(wanted, service, backend, want)
        if not lacking or deadline - clock() <= 0:
            return lacking
        index = 0 if table.index < index else max(table.index, 1)  # Consul's rules, as in watch.next_index


def describe_lacking(lacking: Iterable[str], service: str, backend: str, want: Want, timeout_seconds: float) -> str:
    """One line for a wait that ran out, naming the lbs."""
    state = "still routed" if want is Want.DRAINED else "not routed"
    return f"no acknowledgment within {timeout_seconds:g}s from lb {', '.join(sorted(lacking))}: {service} {backend} {state}"


class AckWriter:
    """Writes one lb's acks: only keys whose backends changed, deletes keys of services routed no more.

    It learns what Consul holds for this lb on its first call (and again after a failed one), so
    a restarted watcher rewrites nothing that is still true. Raises ConsulError when Consul cannot
    be written; the caller tries again later with the state it has then.
    """

    def __init__(self, client: ConsulClient, lb: str) -> None:
        self.client = client
        self.lb = lb
        self.written: dict[str, tuple[str, ...]] | None = None  # service -> backends as Consul holds them

    def publish(self, backends: Mapping[str, Iterable[str]], indexes: Mapping[str, int]) -> list[str]:
        """Acknowledge ``backends`` (service -> the backends NGINX now routes it to); the services whose key changed."""
        if self.written is None:
            table = read_acks(self.client, prefix=ack_key(self.lb, ""))
            self.written = {ack.service: ack.backends for ack in table.acks.values() if ack.lb == self.lb}
        wanted = {service: tuple(sorted(set(instances))) for service, instances in backends.items()}
        updated = utc_now()
        operations: list[tuple[str, dict[str, str]]] = []
        for service, instances in sorted(wanted.items()):
            if self.written.get(service) != instances:
                value = Ack(self.lb, service, instances, indexes.get(service, 0), updated).value()
                encoded = base64.b64encode(value.encode()).decode()
                operations.append((service, {"Verb": "set", "Key": ack_key(self.lb, service), "Value": encoded}))
        for service in sorted(set(self.written) - set(wanted)):
            operations.append((service, {"Verb": "delete", "Key": ack_key(self.lb, service)}))
        for start in range(0, len(operations), TXN_MAX_OPERATIONS):
            chunk = operations[start : start + TXN_MAX_OPERATIONS]
            try:
                self.client.put("/v1/txn", body=[{"KV": operation} for _, operation in chunk])
            except ConsulError:
                self.written = None  # not known what Consul holds now: read it again next time
                raise
            for service, operation in chunk:
                if operation["Verb"] == "set":
                    self.written[service] = wanted[service]
                else:
                    self.written.pop(service, None)
        return [service for service, _ in operations]
