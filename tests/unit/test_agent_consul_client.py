"""The host agents' Consul client asks again while the cluster is between leaders, and only then.

A real HTTP server stands in for a Consul server whose cluster lost its leader (the 500 answer
Consul gives then, in its own words), because making a real cluster lose its leader on cue is the
lab's job (tests/e2e/test_faults.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from moorage.agents import consul as agent_consul
from moorage.agents.consul import ConsulClient, ConsulError


class Answers:
    def __init__(self, answers: list[tuple[int, str]]) -> None:
        self.answers = answers
        self.asked = 0
        self.silent_first = 0  # how many requests get no answer before the client gives up on them
        self.release = threading.Event()


@pytest.fixture
def server() -> Iterator[tuple[str, Answers]]:
    answers = Answers([])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked = answers.asked
            answers.asked += 1
            if asked < answers.silent_first:
                answers.release.wait(5)  # like an agent waiting for servers that elect a leader
                return
            status, body = answers.answers[min(asked, len(answers.answers) - 1)]
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", answers
    answers.release.set()
    httpd.shutdown()


def test_an_election_costs_a_pause_not_the_request(server: tuple[str, Answers], monkeypatch: pytest.MonkeyPatch) -> None:
    address, answers = server
    monkeypatch.setattr(agent_consul.time, "sleep", lambda _seconds: None)
    answers.answers = [(500, "No cluster leader"), (500, "rpc error making call: EOF"), (200, '{"ok": true}')]
    assert ConsulClient(address).get("/v1/kv/x").document == {"ok": True}
    assert answers.asked == 3


def test_other_errors_are_not_asked_again(server: tuple[str, Answers]) -> None:
    address, answers = server
    answers.answers = [(403, "Permission denied"), (200, "{}")]
    with pytest.raises(ConsulError, match="HTTP 403 Permission denied"):
        ConsulClient(address).get("/v1/kv/x")
    assert answers.asked == 1


def test_a_cluster_that_stays_without_leader_is_an_error_in_the_end(server: tuple[str, Answers], monkeypatch: pytest.MonkeyPatch) -> None:
    address, answers = server
    monkeypatch.setattr(agent_consul, "TRANSIENT_RETRY_SECONDS", 0.5)
    answers.answers = [(500, "No cluster leader")]
    with pytest.raises(ConsulError, match="HTTP 500 No cluster leader"):
        ConsulClient(address).get("/v1/kv/x")
    assert answers.asked >= 1


def test_a_request_that_got_no_answer_in_time_is_asked_again(server: tuple[str, Answers], monkeypatch: pytest.MonkeyPatch) -> None:
    """A local agent's maintenance endpoint did not answer within the timeout while the servers elected a leader."""
    address, answers = server
    monkeypatch.setattr(agent_consul.time, "sleep", lambda _seconds: None)
    answers.silent_first, answers.answers = 2, [(200, '{"ok": true}')]
    assert ConsulClient(address).get("/v1/agent/self", timeout=0.3).document == {"ok": True}
    assert answers.asked == 3


def test_a_consul_that_never_answers_is_an_error_in_the_end(server: tuple[str, Answers], monkeypatch: pytest.MonkeyPatch) -> None:
    address, answers = server
    monkeypatch.setattr(agent_consul, "TRANSIENT_RETRY_SECONDS", 0.5)
    answers.silent_first, answers.answers = 100, [(200, "{}")]
    with pytest.raises(ConsulError, match="timed out"):
        ConsulClient(address).get("/v1/agent/self", timeout=0.3)
