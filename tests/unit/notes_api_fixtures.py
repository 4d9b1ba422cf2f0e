"""examples/notes-api as the hosts run it: built by moorage build, unpacked, started with Debian's python3.

The app runs from the unpacked tarball with ``/usr/bin/python3 -E -s`` (no PYTHON* variables, no user
site-packages; the controller's venv is never on its path), so every test of the app also shows the
artifact carries its own dependencies. (``-I`` would also drop the script's own directory from
``sys.path``, which is where the artifact's packages are, as they are for ``python3 app.py`` on a host.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from moorage.build import Artifact, build_artifact

REPO = Path(__file__).resolve().parents[2]
NOTES_API = REPO / "examples" / "notes-api"
HOST_PYTHON = Path("/usr/bin/python3")  # Debian 12's, as on every host
JWT_SECRET = "test-signing-key-0123456789abcdef-0123456789"


def build_notes_api(cache_dir: Path) -> Artifact:
    return build_artifact("notes-api", NOTES_API / "app", cache_dir=cache_dir)


def unpack(tarball: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(directory, filter="data")
    return directory


def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MOORAGE_CACHE_DIR for the test session: notes-api is built once, whichever test asks first."""
    return tmp_path_factory.getbasetemp() / "moorage-cache"


@pytest.fixture(scope="session")
def notes_api_artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return build_notes_api(session_cache(tmp_path_factory) / "artifacts")  # build_cache_dir() under that MOORAGE_CACHE_DIR


@pytest.fixture(scope="session")
def notes_api_release(tmp_path_factory: pytest.TempPathFactory, notes_api_artifact: Artifact) -> Path:
    """The built notes-api unpacked into a release directory."""
    assert HOST_PYTHON.exists(), f"{HOST_PYTHON} is missing: these tests run the artifact with the hosts' Python (Debian 12)"
    artifact = notes_api_artifact
    release = tmp_path_factory.getbasetemp() / f"notes-api-release-{artifact.digest[:12]}"
    if not release.exists():
        unpack(artifact.path, release)
    return release


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Response:
    status: int
    headers: Message  # names match in any case, as in HTTP
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class NotesApp:
    """One notes-api process on a loopback port, with its output collected line by line."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read_output, daemon=True).start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, text: str, timeout: float = 20) -> str:
        """The first line of output (from now on) that contains ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} within {timeout}s; output so far:\n{''.join(self.output)}") from None
            if text in line:
                return line

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        headers = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, error.headers, error.read())

    def signup_and_login(self, username: str, password: str = "correct horse battery") -> str:
        assert self.call("POST", "/signup", {"username": username, "password": password}).status == 201
        answer = self.call("POST", "/login", {"username": username, "password": password})
        assert answer.status == 200, answer.body
        token: str = answer.json()["token"]
        return token

    def metric(self, line_prefix: str) -> float:
        """The value of the sample whose line starts with ``line_prefix`` (name and labels)."""
        for line in self.call("GET", "/metrics").body.decode().splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no sample {line_prefix}")


def start_process(release: Path, environment: dict[str, str], arguments: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(HOST_PYTHON), "-E", "-s", "app.py", *arguments],
        cwd=release,
        env={"PATH": "/usr/bin:/bin", **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    directory.mkdir()
    return directory


RunNotes = Callable[..., NotesApp]


@pytest.fixture
def run_notes(notes_api_release: Path, data_dir: Path) -> Iterator[RunNotes]:
    """Start notes-api from the built artifact: ``run_notes(env={...}, data=DIR)``; all are killed at the end."""
    started: list[subprocess.Popen[str]] = []

    def run(env: dict[str, str] | None = None, data: Path | None = None) -> NotesApp:
        port = free_port()
        environment = {
            "PORT": str(port),
            "DATA_DIR": str(data or data_dir),
            "JWT_SECRET": JWT_SECRET,
            "MOORAGE_VERSION": "1.2.3",
            "MOORAGE_INSTANCE": "notes-api-1",
            **(env or {}),
        }
        process = start_process(notes_api_release, environment, ["--bind", "127.0.0.1"])
        started.append(process)
        app = NotesApp(process, port)
        app.wait_for_line("listening on")
        return app

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(claims: dict[str, Any], secret: str = JWT_SECRET, algorithm: str = "HS256") -> str:
    """A JWT made by hand (HS256 with the standard library, or unsigned with ``alg: none``)."""
    signing_input = _base64url(json.dumps({"alg": algorithm, "typ": "JWT"}).encode()) + "." + _base64url(json.dumps(claims).encode())
    if algorithm == "none":
        return signing_input + "."
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _base64url(signature)


def token_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims
