"""notes-api: a small real REST API for moorage's examples and tests (tornado, passlib, PyJWT, sqlite).

    JWT_SECRET=... DATA_DIR=/var/lib/notes-api python3 app.py --port 8060     (or PORT=8060)

POST   /signup      {"username", "password"} -> 201 {"username"}; 409 when the name is taken
POST   /login       {"username", "password"} -> 200 {"token": JWT}; 401 when wrong
With ``Authorization: Bearer JWT`` (else 401):
POST   /notes       {"text"} -> 201 {"id", "text"}
GET    /notes       -> 200 {"notes": [{"id", "text"}, ...]} (oldest first)
GET    /notes/ID    -> 200 {"id", "text"}; 404 when it is not yours or not there
DELETE /notes/ID    -> 204
GET    /healthz     200 {"status": "ok", "version"} when the database answers
GET    /metrics     Prometheus text format: requests by route/method/code, durations, in flight

Every answer carries the version (MOORAGE_VERSION) in the ``X-Version`` header; errors are
``{"error": WHY}``.

Configuration, from the environment (moorage sets PORT and MOORAGE_*; the spec sets the rest):
  DATA_DIR                 directory of the sqlite file notes.sqlite3 (a volume; must exist)
  JWT_SECRET               key that signs the tokens, at least 32 characters (a secret); required
  TOKEN_TTL_SECONDS        how long a token is good for (default 3600)
  DB_BUSY_TIMEOUT_SECONDS  how long a write waits for another writer's lock (default 10)
  STOP_TIMEOUT_SECONDS     how long SIGTERM waits for requests in flight (default 25)

Several processes may serve from one database file at once: the file is in WAL mode and every
connection waits for locks (busy timeout), so a new release can start beside the old one.
SIGTERM (or SIGINT) stops accepting connections, lets requests in flight finish, exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sqlite3
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import jwt
import tornado.httpserver
import tornado.netutil
import tornado.web
from passlib.context import CryptContext

VERSION = os.environ.get("MOORAGE_VERSION", "dev")
INSTANCE = os.environ.get("MOORAGE_INSTANCE", "local")
DATABASE_FILE = "notes.sqlite3"
MIN_SECRET_LENGTH = 32
USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
MAX_NOTE_LENGTH = 10_000
MAX_BODY_BYTES = 64 * 1024
TOKEN_ALGORITHM = "HS256"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PASSWORDS = CryptContext(schemes=["pbkdf2_sha256"])  # type: ignore[no-untyped-call]  # passlib has no type hints
T = TypeVar("T")

log = logging.getLogger("notes-api")


class ConfigError(Exception):
    """The environment or the arguments are wrong: the app does not start (exit 2)."""


@dataclass(frozen=True)
class Config:
    port: int
    bind: str
    database: Path
    jwt_secret: str = field(repr=False)
    token_ttl: int
    busy_timeout: float
    stop_timeout: float


def _number(environ: dict[str, str], name: str, default: float) -> float:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={text!r} must be more than 0")
    return value


def load_config(arguments: list[str], environ: dict[str, str]) -> Config:
    parser = argparse.ArgumentParser(description="notes-api: notes behind a login, for moorage")
    parser.add_argument("--port", type=int, default=None, help="port to listen on (default: $PORT)")
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on (default: all)")
    options = parser.parse_args(arguments)
    port = options.port if options.port is not None else int(_number(environ, "PORT", 0)) or None
    if port is None:
        raise ConfigError("no port: pass --port or set PORT")
    secret = environ.get("JWT_SECRET", "")
    if not secret:
        raise ConfigError("JWT_SECRET is not set: the tokens need a signing key")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"JWT_SECRET is too short: at least {MIN_SECRET_LENGTH} characters")
    data_dir = environ.get("DATA_DIR", "")
    if not data_dir:
        raise ConfigError("DATA_DIR is not set: the directory (a volume) that holds the database")
    if not Path(data_dir).is_dir():
        raise ConfigError(f"DATA_DIR {data_dir} is no directory")
    return Config(
        port=port,
        bind=options.bind,
        database=Path(data_dir) / DATABASE_FILE,
        jwt_secret=secret,
        token_ttl=int(_number(environ, "TOKEN_TTL_SECONDS", 3600)),
        busy_timeout=_number(environ, "DB_BUSY_TIMEOUT_SECONDS", 10),
        stop_timeout=_number(environ, "STOP_TIMEOUT_SECONDS", 25),
    )


SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id),
    text TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_by_user ON notes(user_id, id);
"""


class Database:
    """The sqlite file, one connection per worker thread, shareable with other processes.

    WAL lets readers go on while one process writes; every write takes the lock up front
    (BEGIN IMMEDIATE) and waits up to the busy timeout for another writer, in this process or
    another one, instead of failing at once.
    """

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # isolation_level=None: no implicit transactions, each write says BEGIN IMMEDIATE.
            connection = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA synchronous = NORMAL")  # durable at each checkpoint; safe in WAL mode
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def migrate(self) -> None:
        """WAL mode (kept in the file) and the tables; safe when another process does the same."""
        mode = self._connection().execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"{self.path}: journal mode is {mode!r}, not WAL (a network file system?)")
        with self._writing() as connection:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)

    def ping(self) -> None:
        self._connection().execute("SELECT count(*) FROM users").fetchone()

    def add_user(self, username: str, password_hash: str) -> bool:
        """False when the name is taken."""
        try:
            with self._writing() as connection:
                connection.execute(
                    "INSERT INTO users (username, password_hash, created) VALUES (?, ?, ?)", (username, password_hash, time.time())
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def user(self, username: str) -> tuple[int, str] | None:
        """(id, password hash) of a user."""
        row = self._connection().execute("SELECT id, password_hash FROM users WHERE username = ?", (username,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def add_note(self, user_id: int, text: str) -> int:
        with self._writing() as connection:
            cursor = connection.execute("INSERT INTO notes (user_id, text, created) VALUES (?, ?, ?)", (user_id, text, time.time()))
            return int(cursor.lastrowid or 0)

    def notes(self, user_id: int) -> list[tuple[int, str]]:
        rows = self._connection().execute("SELECT id, text FROM notes WHERE user_id = ? ORDER BY id", (user_id,)).fetchall()
        return [(int(row[0]), str(row[1])) for row in rows]

    def note(self, user_id: int, note_id: int) -> str | None:
        row = self._connection().execute("SELECT text FROM notes WHERE id = ? AND user_id = ?", (note_id, user_id)).fetchone()
        return None if row is None else str(row[0])

    def delete_note(self, user_id: int, note_id: int) -> bool:
        with self._writing() as connection:
            return connection.execute("DELETE FROM notes WHERE id = ? AND user_id = ?", (note_id, user_id)).rowcount > 0

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()


class Metrics:
    """Counters and a duration histogram in Prometheus' text format (event loop thread only)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.durations: defaultdict[str, list[int]] = defaultdict(lambda: [0] * (len(DURATION_BUCKETS) + 1))
        self.duration_sums: defaultdict[str, float] = defaultdict(float)
        self.signups = 0
        self.logins: Counter[str] = Counter()

    def observe(self, route: str, method: str, code: int, seconds: float) -> None:
        self.requests[(route, method, code)] += 1
        buckets = self.durations[route]
        for index, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                buckets[index] += 1
        buckets[-1] += 1  # +Inf, which is also the count
        self.duration_sums[route] += seconds

    def exposition(self) -> str:
        lines = [
            "# HELP notes_http_requests_total HTTP requests answered, by route, method and status code.",
            "# TYPE notes_http_requests_total counter",
            *(
                f'notes_http_requests_total{{route="{_label(route)}",method="{method}",code="{code}"}} {count}'
                for (route, method, code), count in sorted(self.requests.items())
            ),
            "# HELP notes_http_request_duration_seconds Time to answer, by route.",
            "# TYPE notes_http_request_duration_seconds histogram",
        ]
        for route, buckets in sorted(self.durations.items()):
            label = f'route="{_label(route)}"'
            lines += [
                f'notes_http_request_duration_seconds_bucket{{{label},le="{bound}"}} {count}'
                for bound, count in zip(DURATION_BUCKETS, buckets, strict=False)  # buckets ends with +Inf
            ]
            lines += [
                f'notes_http_request_duration_seconds_bucket{{{label},le="+Inf"}} {buckets[-1]}',
                f"notes_http_request_duration_seconds_sum{{{label}}} {self.duration_sums[route]:.6f}",
                f"notes_http_request_duration_seconds_count{{{label}}} {buckets[-1]}",
            ]
        lines += [
            "# HELP notes_http_requests_in_flight Requests being answered now, this one included.",
            "# TYPE notes_http_requests_in_flight gauge",
            f"notes_http_requests_in_flight {self.in_flight}",
            "# HELP notes_signups_total Accounts created.",
            "# TYPE notes_signups_total counter",
            f"notes_signups_total {self.signups}",
            "# HELP notes_logins_total Logins, by result.",
            "# TYPE notes_logins_total counter",
            *(f'notes_logins_total{{result="{result}"}} {self.logins[result]}' for result in ("ok", "failed")),
            "# HELP notes_info The running version and instance.",
            "# TYPE notes_info gauge",
            f'notes_info{{version="{_label(VERSION)}",instance="{_label(INSTANCE)}"}} 1',
        ]
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class State:
    """What every handler shares."""

    config: Config
    database: Database
    executor: ThreadPoolExecutor
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False

    async def blocking(self, function: Callable[..., T], *arguments: Any) -> T:
        """Run database and password work on a worker thread, so the event loop keeps answering."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *arguments)


class ApiError(tornado.web.HTTPError):
    """An answer {"error": message} with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status)
        self.message = message


class Handler(tornado.web.RequestHandler):
    route = "other"  # the metrics label: the route pattern, never the raw path

    def initialize(self, state: State) -> None:
        self.state = state
        self._counted = False
        self._started = time.monotonic()

    def set_default_headers(self) -> None:
        self.set_header("X-Version", VERSION)  # set again after clear(), so error answers carry it too

    def prepare(self) -> None:
        self.state.metrics.in_flight += 1
        self._counted = True
        if self.state.draining:
            self.set_header("Connection", "close")  # a keep-alive client reconnects to a new instance

    def on_finish(self) -> None:
        if self._counted:
            self.state.metrics.in_flight -= 1
        self.state.metrics.observe(self.route, self.request.method or "", self.get_status(), time.monotonic() - self._started)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = error.message if isinstance(error, ApiError) else self._reason.lower()
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="notes"')
        self.finish({"error": message})

    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            raise ApiError(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    def text_field(self, body: dict[str, Any], name: str) -> str:
        value = body.get(name)
        if not isinstance(value, str):
            raise ApiError(400, f"{name!r} must be a string")
        return value

    def answer(self, status: int, document: dict[str, Any] | None = None) -> None:
        self.set_status(status)
        if document is None:
            self.finish()
        else:
            self.finish(document)

    def user_id(self) -> int:
        """The user the bearer token names, or 401."""
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "log in first: Authorization: Bearer TOKEN")
        try:
            claims = jwt.decode(
                token.strip(), self.state.config.jwt_secret, algorithms=[TOKEN_ALGORITHM], options={"require": ["exp", "iat", "sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "token expired: log in again") from None
        except jwt.InvalidTokenError:
            raise ApiError(401, "invalid token") from None
        try:
            return int(claims["sub"])
        except ValueError:
            raise ApiError(401, "invalid token") from None


class Signup(Handler):
    route = "/signup"

    async def post(self) -> None:
        body = self.json_body()
        username, password = self.text_field(body, "username"), self.text_field(body, "password")
        if not USERNAME.match(username):
            raise ApiError(400, "username: 1 to 64 letters, digits, '.', '_' or '-'")
        if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            raise ApiError(400, f"password: {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters")
        password_hash = await self.state.blocking(PASSWORDS.hash, password)
        if not await self.state.blocking(self.state.database.add_user, username, password_hash):
            raise ApiError(409, f"username {username!r} is taken")
        self.state.metrics.signups += 1
        self.answer(201, {"username": username})


class Login(Handler):
    route = "/login"

    async def post(self) -> None:
        body = self.json_body()
        username, password = self.text_field(body, "username"), self.text_field(body, "password")
        user = await self.state.blocking(self.state.database.user, username)
        if user is None:
            await self.state.blocking(PASSWORDS.dummy_verify)  # as slow as a wrong password: names do not leak
            valid = False
        else:
            valid = await self.state.blocking(PASSWORDS.verify, password, user[1])
        if user is None or not valid:
            self.state.metrics.logins["failed"] += 1
            raise ApiError(401, "wrong username or password")
        self.state.metrics.logins["ok"] += 1
        now = int(time.time())
        claims = {"sub": str(user[0]), "name": username, "iat": now, "exp": now + self.state.config.token_ttl}
        self.answer(200, {"token": jwt.encode(claims, self.state.config.jwt_secret, algorithm=TOKEN_ALGORITHM)})


class Notes(Handler):
    route = "/notes"

    async def get(self) -> None:
        notes = await self.state.blocking(self.state.database.notes, self.user_id())
        self.answer(200, {"notes": [{"id": note_id, "text": text} for note_id, text in notes]})

    async def post(self) -> None:
        user_id = self.user_id()
        text = self.text_field(self.json_body(), "text")
        if not 0 < len(text) <= MAX_NOTE_LENGTH:
            raise ApiError(400, f"text: 1 to {MAX_NOTE_LENGTH} characters")
        note_id = await self.state.blocking(self.state.database.add_note, user_id, text)
        self.answer(201, {"id": note_id, "text": text})


class Note(Handler):
    route = "/notes/{id}"

    async def get(self, note_id: str) -> None:
        text = await self.state.blocking(self.state.database.note, self.user_id(), int(note_id))
        if text is None:
            raise ApiError(404, f"no note {note_id}")
        self.answer(200, {"id": int(note_id), "text": text})

    async def delete(self, note_id: str) -> None:
        if not await self.state.blocking(self.state.database.delete_note, self.user_id(), int(note_id)):
            raise ApiError(404, f"no note {note_id}")
        self.answer(204)


class Health(Handler):
    route = "/healthz"

    async def get(self) -> None:
        try:
            await self.state.blocking(self.state.database.ping)
        except sqlite3.Error as error:
            raise ApiError(503, f"database: {error}") from None
        self.answer(200, {"status": "ok", "version": VERSION})


class MetricsPage(Handler):
    route = "/metrics"

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.state.metrics.exposition())


class NotFound(Handler):
    def prepare(self) -> None:
        super().prepare()
        raise ApiError(404, f"not found: {self.request.path}")


def make_app(state: State) -> tornado.web.Application:
    arguments = {"state": state}
    return tornado.web.Application(
        [
            (r"/signup", Signup, arguments),
            (r"/login", Login, arguments),
            (r"/notes", Notes, arguments),
            (r"/notes/([0-9]{1,18})", Note, arguments),
            (r"/healthz", Health, arguments),
            (r"/metrics", MetricsPage, arguments),
        ],
        default_handler_class=NotFound,
        default_handler_args=arguments,
    )


async def serve(config: Config, database: Database) -> int:
    state = State(config, database, ThreadPoolExecutor(max_workers=4, thread_name_prefix="db"))
    server = tornado.httpserver.HTTPServer(make_app(state), xheaders=True, max_body_size=MAX_BODY_BYTES, idle_connection_timeout=60)
    server.add_sockets(tornado.netutil.bind_sockets(config.port, config.bind))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop(signum: signal.Signals) -> None:
        log.info("%s: stopping", signum.name)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    log.info("notes-api %s (%s) listening on %s:%d, database %s", VERSION, INSTANCE, config.bind, config.port, config.database)
    await stopping.wait()

    server.stop()  # closes the listening sockets: new connections are refused from here on
    state.draining = True
    log.info("draining: no longer accepting connections, %d request(s) in flight", state.metrics.in_flight)
    deadline = time.monotonic() + config.stop_timeout
    while state.metrics.in_flight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    unfinished = state.metrics.in_flight
    await server.close_all_connections()
    state.executor.shutdown(wait=True)
    database.close()
    if unfinished:
        log.error("stopped with %d request(s) unfinished after %gs", unfinished, config.stop_timeout)
        return 1
    log.info("stopped")
    return 0


def main(arguments: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        config = load_config(sys.argv[1:] if arguments is None else arguments, dict(os.environ))
    except ConfigError as error:
        print(f"notes-api: error: {error}", file=sys.stderr)
        return 2
    database = Database(config.database, config.busy_timeout)
    try:
        database.migrate()
    except sqlite3.Error as error:
        print(f"notes-api: error: {config.database}: {error}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(serve(config, database))
    except OSError as error:  # the port is taken, the address is not ours
        print(f"notes-api: error: cannot listen on {config.bind}:{config.port}: {error.strerror or error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
