"""A bounded load generator: a few threads sending requests through NGINX while something changes.

Each thread sends a GET to the lb host (``http.client``, ``Host`` header set to the route's
host name) every ``interval`` seconds, each on a new connection: an idle keep-alive connection
that NGINX closes on a reload would fail the next request on it before it is sent (the race
every HTTP client retries), which says nothing about the deploy; a fresh connection per request
makes every failure one a user would see. Every answer is counted by status; a non-2xx answer
and a connection error (refused, reset, timeout, closed before the answer) count as failures.
The answer bodies' ``version N`` parts are collected, so a test can see which versions served.
The pace is bounded (threads / interval requests per second) so the 2-core host still has room
for the deploy itself.

    with HttpLoad("10.213.13.11", "hello.example.test") as load:
        ...deploy...
    load.summary.failed == 0

``KeepAliveLoad`` is the other kind of client: each thread keeps one connection open and sends
GET and POST in turn on it, as a browser or a pooled HTTP client does. A connection the server
closes under it (a reset, or an idle connection closed between two requests) fails the request
that meets it, and is counted as a connection error: nothing is retried, so every failure is one
a pooled client would see. Each request is recorded (method, status or error, version served), and
``summary.connections`` counts the TCP connections opened, so a test can see they were reused.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

VERSION_IN_BODY = re.compile(r"version (\S+)")


@dataclass
class LoadSummary:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # connection errors by exception name
    versions: Counter[str] = field(default_factory=Counter)
    failure_samples: list[str] = field(default_factory=list)  # the first few failures, for the report
    seconds: float = 0.0
    connections: int = 0  # TCP connections opened (KeepAliveLoad; HttpLoad opens one per request)

    @property
    def failed(self) -> int:
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300) + sum(self.errors.values())

    def describe(self) -> str:
        return (
            f"{self.sent} requests in {self.seconds:.1f}s on {self.connections} connections, statuses {dict(self.statuses)}, "
            f"connection errors {dict(self.errors)}, versions {dict(self.versions)}, first failures {self.failure_samples}"
        )


@dataclass(frozen=True)
class Answer:
    """One request of a KeepAliveLoad: its method, and its status or the connection error that ended it."""

    method: str
    status: int | None
    error: str | None  # the exception's name (ConnectionResetError, RemoteDisconnected, TimeoutError, ...)
    version: str | None  # the ``version N`` of a 2xx answer's body


class _Load:
    """What both clients share: ``threads`` threads sending until the ``with`` block ends (or
    ``limit_seconds``), and the tally of their answers in ``summary``."""

    def __init__(
        self, address: str, host_header: str, *, path: str, threads: int, interval: float, port: int, timeout: float, limit_seconds: float
    ) -> None:
        self.address, self.host_header, self.path, self.port = address, host_header, path, port
        self.interval, self.timeout, self.limit_seconds = interval, timeout, limit_seconds
        self.summary = LoadSummary()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(index,), daemon=True) for index in range(threads)]
        self._started = 0.0

    def __enter__(self) -> Self:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self.summary.seconds = time.monotonic() - self._started

    def _sending(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._started + self.limit_seconds

    def _connected(self) -> None:
        with self._lock:
            self.summary.connections += 1

    def _send(self, index: int) -> None:
        raise NotImplementedError

    def _tally(self, status: int | None, body: str, error: str | None, label: str = "") -> str | None:
        """One answer (a status and body, or the connection error's name) counted; the version it served. Call under ``_lock``."""
        found = VERSION_IN_BODY.search(body)
        version = found.group(1) if found and status is not None and 200 <= status < 300 else None
        self.summary.sent += 1
        if error is not None:
            self.summary.errors[error] += 1
        else:
            assert status is not None
            self.summary.statuses[status] += 1
            if version is not None:
                self.summary.versions[version] += 1
        failed = error is not None or not 200 <= (status or 0) < 300
        if failed and len(self.summary.failure_samples) < 5:
            self.summary.failure_samples.append(label + (error or f"{status}: {body.strip()[:120]}"))
        return version


class HttpLoad(_Load):
    """Constant traffic from ``threads`` threads, a new connection per request.

    ``methods`` are sent in turn by each thread (default GET only; ``("GET", "POST")`` alternates,
    a POST carrying a short text body); every request is also kept in ``answers`` with its method.
    """

    def __init__(
        self,
        address: str,
        host_header: str,
        *,
        path: str = "/",
        threads: int = 4,
        interval: float = 0.02,
        port: int = 80,
        limit_seconds: float = 900,
        methods: tuple[str, ...] = ("GET",),
    ) -> None:
        super().__init__(
            address, host_header, path=path, threads=threads, interval=interval, port=port, timeout=10, limit_seconds=limit_seconds
        )
        self.methods = methods
        self.answers: list[Answer] = []

    def _send(self, index: int) -> None:
        number = 0
        while self._sending():
            method = self.methods[number % len(self.methods)]
            number += 1
            body = f"new-connection probe {index}.{number}\n".encode() if method == "POST" else None
            headers = {"Host": self.host_header, "Connection": "close"} | ({"Content-Type": "text/plain"} if body is not None else {})
            connection = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
            self._connected()
            try:
                connection.request(method, self.path, body=body, headers=headers)
                response = connection.getresponse()
                answer: tuple[int | None, str, str | None] = (response.status, response.read().decode(errors="replace"), None)
            except (OSError, http.client.HTTPException) as failure:
                answer = (None, "", type(failure).__name__)
            finally:
                connection.close()
            with self._lock:
                version = self._tally(*answer, f"{method} ")
                self.answers.append(Answer(method, answer[0], answer[2], version))
            self._stop.wait(self.interval)


class _CountedConnection(http.client.HTTPConnection):
    """An HTTPConnection that reports each TCP connection it opens (also its own reconnects after ``Connection: close``)."""

    def __init__(self, address: str, port: int, timeout: float, on_connect: Callable[[], None]) -> None:
        super().__init__(address, port, timeout=timeout)
        self._on_connect = on_connect

    def connect(self) -> None:
        super().connect()
        self._on_connect()


class KeepAliveLoad(_Load):
    """``threads`` persistent connections, each sending GET and POST in turn every ``interval`` seconds, until the block ends."""

    def __init__(
        self,
        address: str,
        host_header: str,
        *,
        path: str = "/",
        threads: int = 4,
        interval: float = 0.05,
        port: int = 80,
        timeout: float = 10,
        limit_seconds: float = 900,
    ) -> None:
        super().__init__(
            address, host_header, path=path, threads=threads, interval=interval, port=port, timeout=timeout, limit_seconds=limit_seconds
        )
        self.answers: list[Answer] = []

    def _send(self, index: int) -> None:
        connection: _CountedConnection | None = None
        number = 0
        while self._sending():
            number += 1
            method = "POST" if number % 2 == 0 else "GET"
            body = f"keep-alive probe {index}.{number}\n".encode() if method == "POST" else None
            if connection is None:
                connection = _CountedConnection(self.address, self.port, self.timeout, self._connected)
            try:
                headers = {"Host": self.host_header} | ({"Content-Type": "text/plain"} if body is not None else {})
                connection.request(method, self.path, body=body, headers=headers)
                response = connection.getresponse()
                self._record(method, response.status, response.read().decode(errors="replace"), None)
            except (OSError, http.client.HTTPException) as failure:
                self._record(method, None, "", type(failure).__name__)
                connection.close()
                connection = None  # the next request opens a new one, as a pool replaces a broken connection
            self._stop.wait(self.interval)
        if connection is not None:
            connection.close()

    def _record(self, method: str, status: int | None, body: str, error: str | None) -> None:
        with self._lock:
            version = self._tally(status, body, error, f"{method} ")
            self.answers.append(Answer(method, status, error, version))


class NotesLoad(_Load):
    """examples/notes-api's reads and writes as one signed-in user: each thread writes a note
    (``POST /notes``, 201) and reads it back (``GET /notes/ID``, 200 with the same text) in turn,
    a new connection per request like :class:`HttpLoad`. A read that answers another text counts as
    a failure too. ``written``: id -> text of every note the API said it stored, to look for later;
    the versions come from the ``X-Version`` header; ``failed_at``: when each failed request was sent,
    so a test can tell how long a gap lasted."""

    @property
    def gap_seconds(self) -> float:
        """From the first failed request to the last one (0: none failed)."""
        return max(self.failed_at) - min(self.failed_at) if self.failed_at else 0.0

    def __init__(
        self,
        address: str,
        host_header: str,
        token: str,
        *,
        threads: int = 4,
        interval: float = 0.05,
        port: int = 80,
        limit_seconds: float = 900,
    ) -> None:
        super().__init__(
            address, host_header, path="/notes", threads=threads, interval=interval, port=port, timeout=10, limit_seconds=limit_seconds
        )
        self.token = token
        self.written: dict[int, str] = {}
        self.failed_at: list[float] = []  # when each failed request was sent (time.monotonic())

    def _send(self, index: int) -> None:
        number = 0
        last: tuple[int, str] | None = None  # the note this thread wrote, read back next
        while self._sending():
            number += 1
            text = f"load note {index}.{number}"
            method, path, body = (
                ("POST", self.path, json.dumps({"text": text})) if last is None else ("GET", f"{self.path}/{last[0]}", None)
            )
            sent = time.monotonic()
            connection = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
            self._connected()
            status: int | None = None
            answer, version, error = "", None, None  # type: tuple[str, str | None, str | None]
            try:
                headers = {"Host": self.host_header, "Connection": "close", "Authorization": f"Bearer {self.token}"}
                connection.request(method, path, body=body, headers=headers | ({"Content-Type": "application/json"} if body else {}))
                response = connection.getresponse()
                status, answer, version = response.status, response.read().decode(errors="replace"), response.getheader("X-Version")
            except (OSError, http.client.HTTPException) as failure:
                error = type(failure).__name__
            finally:
                connection.close()
            stored = _note(answer) if status in (200, 201) else None
            if method == "GET" and status == 200 and stored != last:
                error = "WrongNote"  # the API answered, but not with the note it stored
            with self._lock:
                self._tally(status, answer, error, f"{method} {path} ")
                if error is None and version is not None and status is not None and 200 <= status < 300:
                    self.summary.versions[version] += 1
                if method == "POST" and status == 201 and stored is not None:
                    self.written[stored[0]] = stored[1]
                if error is not None or status is None or not 200 <= status < 300:
                    self.failed_at.append(sent)
            last = stored if method == "POST" and status == 201 else None
            self._stop.wait(self.interval)


def _note(body: str) -> tuple[int, str] | None:
    """``{"id", "text"}`` of a note-api answer (None: not such an answer)."""
    try:
        document = json.loads(body)
        return int(document["id"]), str(document["text"])
    except (ValueError, KeyError, TypeError):
        return None
