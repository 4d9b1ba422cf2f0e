"""The deploy lock of a service: a Consul KV key acquired with a session that has a TTL.

The holder renews the session while it works; a deploy that crashes stops renewing, the
session expires (TTL, at most twice as long by Consul's rules) and the key goes with it
(``behavior=delete``), so nobody has to clean up by hand. Whoever is refused sees who holds
the lock, since when and for which version (exit 3).

A renewal that fails (Consul between leaders, a server away) is tried again at the next
interval; only Consul saying the session is gone means the lock is lost. Then the holder's
:class:`LockGuard` says so, and the rollout stops before its next step (exit 1) instead of
working on without the lock.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import consul

from moorage.deploy.keys import lock_key
from moorage.deploy.releases import who
from moorage.errors import Locked, MoorageError

SESSION_TTL = timedelta(seconds=15)  # Consul's minimum is 10 s


@dataclass(frozen=True)
class LockHolder:
    holder: str
    since: str
    version: str
    action: str

    def describe(self) -> str:
        return f"{self.action} of version {self.version} by {self.holder} since {self.since}"


class LockLost(MoorageError):
    """The deploy lock's Consul session expired while the command worked (exit 1)."""


class LockGuard:
    """Whether a command still holds its deploy lock: the lock's renewer reports a loss, the rollout asks."""

    def __init__(self) -> None:
        self.lost: str | None = None

    def check(self) -> None:
        if self.lost is not None:
            raise LockLost(self.lost)


class DeployLock:
    """``with DeployLock(client, "hello", version="2", action="deploy", wait=timedelta(0)):``"""

    def __init__(
        self,
        client: consul.Consul,
        service: str,
        version: str,
        action: str,
        wait: timedelta = timedelta(0),
        guard: LockGuard | None = None,
    ) -> None:
        self.client = client
        self.service = service
        self.wait = wait
        self.guard = guard or LockGuard()
        self.me = LockHolder(holder=who(), since=datetime.now(UTC).isoformat(timespec="seconds"), version=version, action=action)
        self.session_id: str | None = None
        self._stop_renewing = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> DeployLock:
        self.session_id = self.client.session.create(
            name=f"moorage deploy lock {self.service}",
            behavior="delete",
            ttl=int(SESSION_TTL.total_seconds()),
            lock_delay=0,
            checks=[],  # only the TTL decides; a node-health tie would outlive a dead CLI
        )
        # Renewed from the start: a command waiting for the lock (--lock-wait, or a crashed holder's
        # session running out, up to twice its TTL) must not lose its own session meanwhile.
        self._renewer = threading.Thread(target=self._renew, name=f"lock-{self.service}", daemon=True)
        self._renewer.start()
        try:
            self._acquire()
        except BaseException:
            self._stop_renewing.set()
            self._renewer.join()
            self.client.session.destroy(self.session_id)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._stop_renewing.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.session_id is None:
            return
        if self.guard.lost is None:
            try:
                self.client.kv.put(lock_key(self.service), None, release=self.session_id)
            finally:
                self.client.session.destroy(self.session_id)  # behavior=delete: the key goes with it
            return
        # A renewal was told the session is gone; if that answer came from a server between leaders and
        # the session still lives, destroying it frees the lock now rather than after its TTL.
        with contextlib.suppress(consul.ConsulException, MoorageError):
            self.client.session.destroy(self.session_id)

    def _acquire(self) -> None:
        key = lock_key(self.service)
        deadline = time.monotonic() + self.wait.total_seconds()
        while True:
            if self.client.kv.put(key, json.dumps(self.me.__dict__), acquire=self.session_id):
                return
            index, entry = self.client.kv.get(key)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Locked(f"{self.service} is locked: {self._holder_text(entry)}")
            if entry is not None and entry.get("Session"):
                # Blocking query: returns when the key changes (released or expired) or after the wait.
                self.client.kv.get(key, index=index, wait=f"{max(1, int(remaining))}s")

    def _holder_text(self, entry: dict[str, Any] | None) -> str:
        if entry is None or not entry.get("Value"):
            return "held by an unknown holder"
        return LockHolder(**json.loads(entry["Value"])).describe()

    def _renew(self) -> None:
        interval = SESSION_TTL.total_seconds() / 3
        while not self._stop_renewing.wait(interval):
            try:
                self.client.session.renew(self.session_id)
            except consul.NotFound:
                self.guard.lost = (
                    f"{self.service}: the deploy lock was lost at {datetime.now(UTC).isoformat(timespec='seconds')} "
                    f"(its Consul session expired: Consul did not hear from this command for {SESSION_TTL.total_seconds():g}s or more); "
                    "stopped before the next step so that no other deploy works beside this one: run the command again"
                )
                return
            except (consul.ConsulException, MoorageError):
                continue  # Consul away or between leaders: try again at the next interval, the session may still live


def current_holder(client: consul.Consul, service: str) -> LockHolder | None:
    _, entry = client.kv.get(lock_key(service))
    if entry is None or not entry.get("Session") or not entry.get("Value"):
        return None
    return LockHolder(**json.loads(entry["Value"]))
