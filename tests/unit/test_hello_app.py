"""examples/hello/app/app.py for real: a subprocess on a free loopback port, spoken to over HTTP."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "examples" / "hello" / "app" / "app.py"


class RunningApp:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_output, daemon=True).start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for_line(self, text: str, timeout: float = 10) -> str:
        """The first line of the app's output (from now on) that contains ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if text in line:
                return line

    def get(self, path: str) -> tuple[int, str, str]:
        """(status, content type, body) of GET path."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
                return response.status, response.headers["Content-Type"], response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["Content-Type"], error.read().decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(env: dict[str, str], arguments: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), "--bind", "127.0.0.1", *arguments],
        env={"PATH": os.environ["PATH"], **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def run_app() -> Iterator[Callable[..., RunningApp]]:
    started: list[subprocess.Popen[str]] = []

    def run(env: dict[str, str] | None = None, use_port_env: bool = False) -> RunningApp:
        port = free_port()
        environment = {"MOORAGE_VERSION": "1.2.3", "MOORAGE_INSTANCE": "hello-2", "GREETING": "hi", **(env or {})}
        if use_port_env:
            process = start(environment | {"PORT": str(port)}, [])
        else:
            process = start(environment | {"PORT": "1"}, ["--port", str(port)])  # --port wins over PORT
        started.append(process)
        app = RunningApp(process, port)
        app.wait_for_line("listening on")
        return app

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_root_answers_greeting_instance_and_version(run_app) -> None:
    app = run_app()
    status, content_type, body = app.get("/")
    assert (status, content_type) == (200, "text/plain; charset=utf-8")
    assert body == "hi from hello-2, version 1.2.3\n"


def test_post_takes_a_body_and_answers_like_get(run_app) -> None:
    app = run_app()
    request = urllib.request.Request(f"http://127.0.0.1:{app.port}/", data=b"x" * 1000, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert (response.status, response.read().decode()) == (200, "hi from hello-2, version 1.2.3\n")
    too_big = urllib.request.Request(f"http://127.0.0.1:{app.port}/", data=b"", headers={"Content-Length": str(2 << 20)}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(too_big, timeout=10)
    assert refused.value.code == 400


def test_port_comes_from_the_environment_without_the_option(run_app) -> None:
    assert run_app(use_port_env=True).get("/")[0] == 200


def test_without_any_port_it_refuses_to_start() -> None:
    result = subprocess.run([sys.executable, str(APP)], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert "no port: pass --port or set PORT" in result.stderr


def test_health_passes_and_fails_on_demand(run_app) -> None:
    assert run_app().get("/healthz")[:1] == (200,)
    status, _, body = run_app({"HELLO_FAIL_HEALTH": "1"}).get("/healthz")
    assert status == 500
    assert "version 1.2.3" in body


def test_every_answer_names_the_version(run_app) -> None:
    app = run_app()
    for path in ("/", "/healthz", "/nowhere", "/sleep?seconds=0", "/sleep?seconds=forever"):
        assert "version 1.2.3" in app.get(path)[2], path


def test_metrics_in_prometheus_text_format(run_app) -> None:
    app = run_app()
    for _ in range(3):
        app.get("/")
    app.get("/nowhere")
    status, content_type, body = app.get("/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert 'hello_requests_total{path="/",code="200"} 3' in body.splitlines()
    assert 'hello_requests_total{path="other",code="404"} 1' in body.splitlines()
    assert 'hello_info{version="1.2.3",instance="hello-2"} 1' in body.splitlines()
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? [0-9.e+-]+$')
    for line in body.splitlines():
        assert line.startswith(("# HELP ", "# TYPE ")) or sample.match(line), line


def test_sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0(run_app) -> None:
    app = run_app()
    answer: dict[str, tuple[int, str, str]] = {}
    slow = threading.Thread(target=lambda: answer.setdefault("slow", app.get("/sleep?seconds=1.5")))
    slow.start()
    app.wait_for_line("sleeping 1.5s")  # the slow request is being served
    app.process.send_signal(signal.SIGTERM)
    app.wait_for_line("no longer accepting connections")
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        app.get("/")
    slow.join(timeout=10)
    assert answer["slow"][0] == 200
    assert answer["slow"][2] == "slept 1.5s on hello-2, version 1.2.3\n"
    assert app.process.wait(timeout=10) == 0
    app.wait_for_line("stopped")
