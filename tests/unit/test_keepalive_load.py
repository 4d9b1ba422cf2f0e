"""The keep-alive load generators (tests/http_load.py KeepAliveLoad, tests/wrk_load.py WrkLoad) against a real local server.

The server (http.server, HTTP/1.1, so it keeps connections open) counts the TCP connections it
accepts and the requests by method, answers "version 7", and can be told to reset every
connection at its Nth request (RST, no answer) or to answer POST with 500: what the e2e test
relies on the generators to see.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from http_load import HttpLoad, KeepAliveLoad
from wrk_load import WrkLoad, parse_wrk_output

HOST_HEADER = "kept.example.test"


@dataclass
class Seen:
    connections: int = 0  # TCP connections that carried a request (wrk opens one more first, only to check the address)
    methods: Counter[str] = field(default_factory=Counter)
    hosts: Counter[str] = field(default_factory=Counter)
    bodies: list[bytes] = field(default_factory=list)
    reset_at: int = 0  # reset each connection at its Nth request (0: never)
    post_status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests(self) -> int:
        with self.lock:
            return sum(self.methods.values())


class Server(ThreadingHTTPServer):
    daemon_threads = True
    seen: Seen


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the connection stays open after an answer with Content-Length
    server: Server

    def setup(self) -> None:
        super().setup()
        self.requests_here = 0

    def do_GET(self) -> None:
        self._answer(200)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.seen.lock:
            self.server.seen.bodies.append(body)
        self._answer(self.server.seen.post_status)

    def _answer(self, status: int) -> None:
        seen = self.server.seen
        self.requests_here += 1
        with seen.lock:
            seen.connections += self.requests_here == 1
            seen.methods[self.command] += 1
            seen.hosts[self.headers.get("Host", "")] += 1
        if seen.reset_at and self.requests_here == seen.reset_at:
            # RST instead of an answer: SO_LINGER with a zero timeout makes close() abort the connection.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        payload = b"hi from test, version 7\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[Server, Seen]]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.seen = Seen()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd, httpd.seen
    httpd.shutdown()
    httpd.server_close()


def until(condition: Callable[[], bool], what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within:.0f}s: {what}")
        time.sleep(0.02)


def port_of(server: Server) -> int:
    return int(server.server_address[1])


# --- HttpLoad (a new connection per request) -----------------------------------------------------


def test_http_load_opens_a_connection_per_get_and_counts_every_answer(server: tuple[Server, Seen]) -> None:
    httpd, seen = server
    with HttpLoad("127.0.0.1", HOST_HEADER, port=port_of(httpd), threads=2, interval=0.005) as load:
        until(lambda: seen.requests() >= 20, "20 requests at the server")
    summary = load.summary
    assert summary.failed == 0 and summary.sent == seen.requests() == summary.statuses[200] == summary.versions["7"], summary.describe()
    assert summary.connections == seen.connections == summary.sent, summary.describe()
    assert seen.methods["GET"] == summary.sent and set(seen.hosts) == {HOST_HEADER}


def test_http_load_sends_get_and_post_in_turn_each_on_a_new_connection(server: tuple[Server, Seen]) -> None:
    httpd, seen = server
    seen.post_status = 500
    with HttpLoad("127.0.0.1", HOST_HEADER, port=port_of(httpd), threads=2, interval=0.005, methods=("GET", "POST")) as load:
        until(lambda: seen.requests() >= 20, "20 requests at the server")
    summary = load.summary
    assert summary.connections == seen.connections == summary.sent == len(load.answers), summary.describe()
    by_method = Counter((answer.method, answer.status) for answer in load.answers)
    assert by_method == Counter({("GET", 200): seen.methods["GET"], ("POST", 500): seen.methods["POST"]}), by_method
    assert abs(seen.methods["GET"] - seen.methods["POST"]) <= 2 and summary.failed == seen.methods["POST"], summary.describe()
    assert summary.failure_samples[0].startswith("POST 500: "), summary.failure_samples


# --- KeepAliveLoad (Python, http.client) ----------------------------------------------------------


def test_keepalive_load_reuses_one_connection_per_thread_for_get_and_post(server: tuple[Server, Seen]) -> None:
    httpd, seen = server
    with KeepAliveLoad("127.0.0.1", HOST_HEADER, port=port_of(httpd), threads=3, interval=0.005) as load:
        until(lambda: seen.requests() >= 90, "90 requests at the server")
    summary = load.summary
    assert seen.connections == 3 and summary.connections == 3, (seen.connections, summary.describe())
    assert summary.failed == 0 and summary.errors == Counter(), summary.describe()
    assert summary.sent == seen.requests() == summary.statuses[200] == summary.versions["7"] == len(load.answers)
    assert seen.methods["GET"] > 0 and seen.methods["POST"] > 0 and abs(seen.methods["GET"] - seen.methods["POST"]) <= 3, seen.methods
    assert set(seen.hosts) == {HOST_HEADER}
    assert all(body.startswith(b"keep-alive probe ") for body in seen.bodies)
    assert {(answer.method, answer.status, answer.error, answer.version) for answer in load.answers} == {
        ("GET", 200, None, "7"),
        ("POST", 200, None, "7"),
    }


def test_keepalive_load_records_a_reset_as_a_connection_error_and_reconnects(server: tuple[Server, Seen]) -> None:
    httpd, seen = server
    seen.reset_at = 5  # every connection is reset at its 5th request
    with KeepAliveLoad("127.0.0.1", HOST_HEADER, port=port_of(httpd), threads=2, interval=0.005) as load:
        until(lambda: seen.connections >= 4, "the load reconnecting after resets")
    summary = load.summary
    failures = [answer for answer in load.answers if answer.error is not None]
    assert failures and summary.failed == sum(summary.errors.values()) == len(failures), summary.describe()
    assert set(summary.errors) <= {"ConnectionResetError", "RemoteDisconnected", "BrokenPipeError"}, summary.describe()
    assert all(answer.status is None and answer.version is None for answer in failures)
    assert summary.statuses[200] == summary.sent - len(failures) > 0
    assert summary.connections == seen.connections >= 4  # one new connection after each reset


def test_keepalive_load_counts_a_non_2xx_answer_as_failed_without_dropping_the_connection(server: tuple[Server, Seen]) -> None:
    httpd, seen = server
    seen.post_status = 503
    with KeepAliveLoad("127.0.0.1", HOST_HEADER, port=port_of(httpd), threads=1, interval=0.005) as load:
        until(lambda: seen.requests() >= 10, "10 requests at the server")
    summary = load.summary
    assert summary.failed == summary.statuses[503] > 0 and summary.statuses[200] > 0 and not summary.errors, summary.describe()
    assert summary.versions["7"] == summary.statuses[200]  # only 2xx answers count as a version served
    assert summary.connections == seen.connections == 1
    assert summary.failure_samples[0].startswith("POST 503: ")


# --- WrkLoad (wrk with tests/wrk_keepalive.lua) ----------------------------------------------------


def test_wrk_load_sends_get_and_post_over_8_kept_connections(server: tuple[Server, Seen]) -> None:
    httpd, seen = server
    with WrkLoad("127.0.0.1", HOST_HEADER, port=port_of(httpd), pause_ms=5) as wrk:
        until(lambda: seen.requests() >= 200, "200 requests from wrk at the server")
    summary = wrk.summary
    assert seen.connections == 8, seen.connections
    assert summary.requests > 0 and summary.socket_errors == {} and summary.non_2xx_3xx == 0 and summary.failed == 0, summary.describe()
    assert summary.statuses == Counter({200: summary.requests}) and summary.versions == Counter({"7": summary.requests}), summary.describe()
    assert seen.methods["GET"] > 0 and seen.methods["POST"] > 0, seen.methods
    assert set(seen.hosts) == {HOST_HEADER}
    assert all(body.startswith(b"keep-alive probe ") for body in seen.bodies)
    assert set(summary.latency) == {"50%", "75%", "90%", "99%"}


def test_wrk_load_reports_resets_as_socket_errors_and_5xx_as_non_2xx(server: tuple[Server, Seen]) -> None:
    httpd, seen = server
    seen.reset_at, seen.post_status = 7, 500
    with WrkLoad("127.0.0.1", HOST_HEADER, port=port_of(httpd), pause_ms=5) as wrk:
        until(lambda: seen.connections >= 16, "wrk reconnecting after resets")
    summary = wrk.summary
    assert summary.socket_errors.get("read", 0) > 0, summary.output
    assert summary.non_2xx_3xx == summary.statuses[500] > 0, summary.output
    assert summary.failed >= summary.statuses[500] + summary.socket_errors["read"]


def test_wrk_output_is_parsed_as_printed() -> None:
    output = """Running 15m test @ http://10.213.13.11:80/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.21ms    2.10ms  48.00ms   91.00%
    Req/Sec    70.12      9.80    90.00     70.00%
  Latency Distribution
     50%    2.80ms
     75%    3.60ms
     90%    4.90ms
     99%   12.30ms
  8412 requests in 1.02m, 1.40MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:    137.45
Transfer/sec:     23.40KB
moorage-wrk status 200 8408
moorage-wrk status 502 4
moorage-wrk version 1 5000
moorage-wrk version 2 3408
"""
    summary = parse_wrk_output(output)
    assert (summary.requests, round(summary.seconds, 1), summary.non_2xx_3xx) == (8412, 61.2, 4)
    assert summary.socket_errors == {"read": 2, "timeout": 1}  # only the kinds above 0
    assert summary.latency == {"50%": "2.80ms", "75%": "3.60ms", "90%": "4.90ms", "99%": "12.30ms"}
    assert summary.statuses == Counter({200: 8408, 502: 4}) and summary.versions == Counter({"1": 5000, "2": 3408})
    assert summary.failed == 7
    lines = output.splitlines(keepends=True)
    clean = parse_wrk_output("".join(line for line in lines if not line.lstrip().startswith(("Socket errors", "Non-2xx"))))
    assert clean.socket_errors == {} and clean.non_2xx_3xx == 0
    with pytest.raises(ValueError, match="requests in"):
        parse_wrk_output("unable to connect to 10.213.13.11:80 Connection refused\n")
