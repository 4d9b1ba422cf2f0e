"""hello: a small real HTTP service for moorage's examples and tests (standard library only).

    python3 app.py --port 8080        (or PORT=8080 python3 app.py)

GET /         a greeting with the version and instance (MOORAGE_VERSION, MOORAGE_INSTANCE, GREETING)
GET /healthz  200 "ok"; 500 when HELLO_FAIL_HEALTH=1 (a release whose health never passes)
GET /metrics  Prometheus text format: requests by path and code, hello_info{version=...} 1
GET /sleep?seconds=N  answers after N seconds (at most 30): a long request to watch draining
POST /        takes a body (at most 1 MiB) and answers like GET /

SIGTERM (or SIGINT) stops accepting connections, lets requests in flight finish, exits 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

VERSION = os.environ.get("MOORAGE_VERSION", "dev")
INSTANCE = os.environ.get("MOORAGE_INSTANCE", "local")
GREETING = os.environ.get("GREETING", "hello")
FAIL_HEALTH = os.environ.get("HELLO_FAIL_HEALTH") == "1"
KNOWN_PATHS = ("/", "/healthz", "/metrics", "/sleep")
MAX_SLEEP_SECONDS = 30.0
MAX_POST_BYTES = 1 << 20


class Metrics:
    """Request counts by (path, code), safe across handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, int]] = Counter()

    def count(self, path: str, code: int) -> None:
        with self._lock:
            self._requests[(path if path in KNOWN_PATHS else "other", code)] += 1

    def exposition(self) -> str:
        with self._lock:
            requests = sorted(self._requests.items())
        lines = [
            "# HELP hello_requests_total HTTP requests answered, by path and status code.",
            "# TYPE hello_requests_total counter",
            *(f'hello_requests_total{{path="{path}",code="{code}"}} {count}' for (path, code), count in requests),
            "# HELP hello_info The running version and instance.",
            "# TYPE hello_info gauge",
            f'hello_info{{version="{_label(VERSION)}",instance="{_label(INSTANCE)}"}} 1',
        ]
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


METRICS = Metrics()


class Handler(BaseHTTPRequestHandler):
    server_version = "hello"
    timeout = 10  # an idle or slow client cannot hold a thread (and so shutdown) forever

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/":
            self._answer(200, f"{GREETING} from {INSTANCE}, version {VERSION}\n")
        elif url.path == "/healthz":
            self._answer(500, f"failing on purpose, version {VERSION}\n") if FAIL_HEALTH else self._answer(200, f"ok, version {VERSION}\n")
        elif url.path == "/metrics":
            self._answer(200, METRICS.exposition(), "text/plain; version=0.0.4; charset=utf-8")
        elif url.path == "/sleep":
            seconds = _seconds_query(url.query)
            if seconds is None:
                self._answer(400, f"seconds must be a number from 0 to {MAX_SLEEP_SECONDS:g}, version {VERSION}\n")
                return
            print(f"{self.address_string()} sleeping {seconds:g}s", flush=True)
            time.sleep(seconds)
            self._answer(200, f"slept {seconds:g}s on {INSTANCE}, version {VERSION}\n")
        else:
            self._answer(404, f"not found: {url.path}, version {VERSION}\n")

    def do_POST(self) -> None:
        """POST / takes a body (at most MAX_POST_BYTES) and answers like GET / (load tests send both)."""
        url = urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_POST_BYTES:
            self._answer(400, f"Content-Length must be a number from 0 to {MAX_POST_BYTES}, version {VERSION}\n")
            return
        self.rfile.read(length)
        if url.path == "/":
            self._answer(200, f"{GREETING} from {INSTANCE}, version {VERSION}\n")
        else:
            self._answer(404, f"not found: {url.path}, version {VERSION}\n")

    def _answer(self, code: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
        payload = body.encode()
        METRICS.count(urlsplit(self.path).path, code)  # before answering: a client then sees itself counted
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        sys.stdout.write(f"{self.address_string()} {format % args}\n")
        sys.stdout.flush()


def _seconds_query(query: str) -> float | None:
    try:
        seconds = float(parse_qs(query).get("seconds", ["1"])[0])
    except ValueError:
        return None
    return seconds if 0 <= seconds <= MAX_SLEEP_SECONDS else None


class Server(ThreadingHTTPServer):
    # Request threads are joined on close, so requests in flight finish before exit.
    daemon_threads = False
    block_on_close = True


def main() -> int:
    parser = argparse.ArgumentParser(description="hello: a small HTTP service for moorage")
    parser.add_argument("--port", type=int, default=os.environ.get("PORT"), help="port to listen on (default: $PORT)")
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on (default: all)")
    arguments = parser.parse_args()
    if arguments.port is None:
        parser.error("no port: pass --port or set PORT")
    server = Server((arguments.bind, int(arguments.port)), Handler)

    def stop(signum: int, _frame: object) -> None:
        print(f"{signal.Signals(signum).name}: stopping", flush=True)
        # shutdown() waits for serve_forever(), which runs in this very thread: ask from another.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"hello {VERSION} ({INSTANCE}) listening on {arguments.bind}:{arguments.port}", flush=True)
    server.serve_forever(poll_interval=0.1)
    server.socket.close()
    print("draining: no longer accepting connections", flush=True)
    server.server_close()  # waits for the requests in flight
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
