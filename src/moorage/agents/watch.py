"""Watching Consul: one blocking-query loop per dependency, in the way of consul-template.

A ``View`` long-polls one query (consul-template's ``watch/view.go``): it asks with the index of
its last answer, so Consul answers when the data changes or the wait runs out, and hands every
answer on. When Consul cannot be asked it never gives up: it keeps quiet about a repeated error,
waits with exponential backoff, and asks afresh (index 0) once Consul answers again. A ``Watcher``
runs a set of views, one thread each (consul-template's ``watch/watcher.go``); the agent adds and
removes views as the data tells it what else to watch.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from .consul import ConsulClient, ConsulError

FIRST_BACKOFF_SECONDS = 0.5


@dataclass(frozen=True)
class Query:
    """One dependency: a Consul endpoint and its parameters."""

    path: str
    params: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.path}?{urllib.parse.urlencode(self.params)}" if self.params else self.path


@dataclass(frozen=True)
class WatchOptions:
    wait_seconds: int = 300  # the longest a blocking query waits for a change
    backoff_max_seconds: float = 30.0  # the longest pause between retries while Consul is away


Deliver = Callable[[Query, object], None]


def backoff_seconds(failures: int, cap: float) -> float:
    """0.5 s after the first failure, doubling with each further one, at most ``cap``."""
    return min(cap, FIRST_BACKOFF_SECONDS * float(2 ** min(failures - 1, 16)))


def next_index(previous: int, answered: int) -> int:
    """The index to ask with next (Consul's rules: reset when it goes backwards, never 0 after an answer)."""
    if answered < previous:
        return 0
    return max(answered, 1)


def wait_for_quiet(changed: threading.Event, quiet: float, max_delay: float) -> None:
    """Debounce: return once ``quiet`` seconds pass without ``changed`` being set, at the latest after ``max_delay``."""
    deadline = time.monotonic() + max_delay
    while True:
        changed.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not changed.wait(min(quiet, remaining)):
            return


class View:
    """Polls one query until stopped; every answer goes to ``deliver``. Never raises because of Consul."""

    def __init__(self, client: ConsulClient, query: Query, deliver: Deliver, options: WatchOptions, log: logging.Logger) -> None:
        self.client = client
        self.query = query
        self.deliver = deliver
        self.options = options
        self.log = log
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        index = 0
        failures = 0
        last_error = ""
        while not self.stopped.is_set():
            try:
                answer = self.client.blocking_get(self.query.path, dict(self.query.params), index, self.options.wait_seconds)
            except ConsulError as err:
                failures += 1
                index = 0  # a restarted Consul counts its indexes anew: ask afresh
                if str(err) != last_error:
                    self.log.warning("consul unreachable (%s); keeping the last good state, retrying with backoff", err)
                    last_error = str(err)
                self.stopped.wait(backoff_seconds(failures, self.options.backoff_max_seconds))
                continue
            if failures:
                self.log.info("consul answers again: %s", self.query)
            failures, last_error = 0, ""
            index = next_index(index, answer.index)
            if not self.stopped.is_set():
                self.deliver(self.query, answer.document)


class Watcher:
    """A set of views, each in its own daemon thread; safe to change from any thread."""

    def __init__(self, client: ConsulClient, options: WatchOptions, deliver: Deliver, log: logging.Logger) -> None:
        self.client = client
        self.options = options
        self.deliver = deliver
        self.log = log
        self._views: dict[Query, View] = {}
        self._lock = threading.Lock()

    def add(self, query: Query) -> bool:
        """Start watching ``query``; False when it is watched already."""
        with self._lock:
            if query in self._views:
                return False
            view = self._views[query] = View(self.client, query, self.deliver, self.options, self.log)
        threading.Thread(target=view.run, name=str(query), daemon=True).start()
        return True

    def remove(self, query: Query) -> bool:
        """Stop watching ``query`` (an answer already on its way may still arrive); False when not watched."""
        with self._lock:
            view = self._views.pop(query, None)
        if view is None:
            return False
        view.stop()
        return True

    def watching(self) -> frozenset[Query]:
        with self._lock:
            return frozenset(self._views)

    def stop(self) -> None:
        for query in self.watching():
            self.remove(query)
