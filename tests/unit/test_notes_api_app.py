"""examples/notes-api for real: the built artifact started with Debian's python3, spoken to over HTTP."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from notes_api_fixtures import (
    JWT_SECRET,
    NOTES_API,
    NotesApp,
    Response,
    RunNotes,
    data_dir,
    free_port,
    make_token,
    notes_api_artifact,
    notes_api_release,
    run_notes,
    start_process,
    token_claims,
)
from waiting import eventually

__all__ = ["data_dir", "notes_api_artifact", "notes_api_release", "run_notes"]  # fixtures used by the tests below


def test_signup_then_login_gives_a_signed_token_for_the_configured_lifetime(run_notes: RunNotes) -> None:
    app = run_notes({"TOKEN_TTL_SECONDS": "600"})

    signup = app.call("POST", "/signup", {"username": "ann", "password": "correct horse"})
    login = app.call("POST", "/login", {"username": "ann", "password": "correct horse"})

    assert (signup.status, signup.json()) == (201, {"username": "ann"})
    assert login.status == 200
    token = login.json()["token"]
    claims = token_claims(token)
    assert claims["name"] == "ann"
    assert claims["exp"] - claims["iat"] == 600
    assert abs(claims["iat"] - time.time()) < 60
    assert app.call("GET", "/notes", token=token).status == 200


def test_notes_create_list_read_delete(run_notes: RunNotes) -> None:
    app = run_notes()
    token = app.signup_and_login("ann")

    first = app.call("POST", "/notes", {"text": "buy milk"}, token=token)
    second = app.call("POST", "/notes", {"text": "call Bob ☎"}, token=token)
    assert first.status == second.status == 201
    first_id, second_id = first.json()["id"], second.json()["id"]
    assert first.json() == {"id": first_id, "text": "buy milk"}
    assert second_id > first_id

    assert app.call("GET", "/notes", token=token).json() == {
        "notes": [{"id": first_id, "text": "buy milk"}, {"id": second_id, "text": "call Bob ☎"}]
    }
    assert app.call("GET", f"/notes/{second_id}", token=token).json() == {"id": second_id, "text": "call Bob ☎"}

    deleted = app.call("DELETE", f"/notes/{first_id}", token=token)
    assert (deleted.status, deleted.body) == (204, b"")
    assert app.call("GET", f"/notes/{first_id}", token=token).status == 404
    assert app.call("DELETE", f"/notes/{first_id}", token=token).status == 404
    assert app.call("GET", "/notes", token=token).json() == {"notes": [{"id": second_id, "text": "call Bob ☎"}]}


def test_a_user_sees_only_their_own_notes(run_notes: RunNotes) -> None:
    app = run_notes()
    ann, bob = app.signup_and_login("ann"), app.signup_and_login("bob")
    note_id = app.call("POST", "/notes", {"text": "ann's secret"}, token=ann).json()["id"]

    assert app.call("GET", "/notes", token=bob).json() == {"notes": []}
    for method in ("GET", "DELETE"):
        answer = app.call(method, f"/notes/{note_id}", token=bob)
        assert (answer.status, answer.json()) == (404, {"error": f"no note {note_id}"})
    assert app.call("GET", f"/notes/{note_id}", token=ann).status == 200  # bob's DELETE did nothing


@pytest.mark.parametrize(
    ("authorization", "why"),
    [
        (None, "log in first: Authorization: Bearer TOKEN"),
        ("Basic YW5uOnB3", "log in first: Authorization: Bearer TOKEN"),
        ("Bearer not-a-jwt", "invalid token"),
        (
            "Bearer " + make_token({"sub": "1", "iat": 0, "exp": 4102444800}, secret="another signing key, 32 characters"),
            "invalid token",
        ),
        ("Bearer " + make_token({"sub": "1", "iat": 0, "exp": 4102444800}, algorithm="none"), "invalid token"),
        ("Bearer " + make_token({"sub": "1", "iat": 0}), "invalid token"),  # no expiry
        ("Bearer " + make_token({"sub": "1", "iat": 0, "exp": 1}), "token expired: log in again"),
    ],
    ids=["missing", "basic", "garbage", "other-key", "alg-none", "no-exp", "expired"],
)
def test_notes_need_a_valid_unexpired_token(run_notes: RunNotes, authorization: str | None, why: str) -> None:
    app = run_notes()
    app.signup_and_login("ann")  # user 1 exists: only the token is wrong
    headers = {} if authorization is None else {"Authorization": authorization}

    for method, path, body in (("GET", "/notes", None), ("POST", "/notes", {"text": "x"}), ("GET", "/notes/1", None)):
        answer = app.call(method, path, body, headers=headers)
        assert (answer.status, answer.json()) == (401, {"error": why}), (method, path)
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="notes"'


def test_a_token_signed_with_the_key_is_accepted_and_names_the_user(run_notes: RunNotes) -> None:
    app = run_notes()
    app.signup_and_login("ann")
    forged_elsewhere = make_token({"sub": "1", "iat": int(time.time()), "exp": int(time.time()) + 60}, secret=JWT_SECRET)

    assert app.call("POST", "/notes", {"text": "signed by the shared key"}, token=forged_elsewhere).status == 201


def test_signup_and_login_refuse_bad_input(run_notes: RunNotes) -> None:
    app = run_notes()
    app.signup_and_login("ann", "correct horse")
    cases = [
        ("/signup", {"username": "ann", "password": "another one"}, 409, "username 'ann' is taken"),
        ("/signup", {"username": "a b", "password": "long enough"}, 400, "username: 1 to 64 letters, digits, '.', '_' or '-'"),
        ("/signup", {"username": "carl", "password": "short"}, 400, "password: 8 to 1024 characters"),
        ("/signup", {"username": "carl"}, 400, "'password' must be a string"),
        ("/signup", ["carl", "pw"], 400, "the body must be a JSON object"),
        ("/login", {"username": "ann", "password": "wrong horse"}, 401, "wrong username or password"),
        ("/login", {"username": "nobody", "password": "correct horse"}, 401, "wrong username or password"),
    ]
    for path, body, status, why in cases:
        answer = app.call("POST", path, body)
        assert (answer.status, answer.json()) == (status, {"error": why}), body
    not_json = app.call("POST", "/signup", raw=b"{username")
    assert (not_json.status, not_json.json()) == (400, {"error": "the body is not JSON"})


def test_notes_refuse_bad_input(run_notes: RunNotes) -> None:
    app = run_notes()
    token = app.signup_and_login("ann")
    for body, why in (
        ({"text": ""}, "text: 1 to 10000 characters"),
        ({"text": "x" * 10_001}, "text: 1 to 10000 characters"),
        ({}, "'text' must be a string"),
    ):
        answer = app.call("POST", "/notes", body, token=token)
        assert (answer.status, answer.json()) == (400, {"error": why})
    assert app.call("GET", "/notes/abc", token=token).status == 404


def test_every_answer_carries_the_version_header(run_notes: RunNotes) -> None:
    app = run_notes()
    token = app.signup_and_login("ann")
    answers = [
        app.call("GET", "/healthz"),
        app.call("GET", "/metrics"),
        app.call("GET", "/notes", token=token),
        app.call("GET", "/notes"),  # 401
        app.call("GET", "/nowhere"),  # 404
        app.call("PATCH", "/notes", {"text": "x"}, token=token),  # 405
        app.call("POST", "/notes", raw=b"[", token=token),  # 400
    ]
    assert [answer.status for answer in answers] == [200, 200, 200, 401, 404, 405, 400]
    for answer in answers:
        assert answer.headers["X-Version"] == "1.2.3"
    assert answers[0].json() == {"status": "ok", "version": "1.2.3"}
    assert answers[4].json() == {"error": "not found: /nowhere"}


def test_metrics_in_prometheus_text_format(run_notes: RunNotes) -> None:
    app = run_notes()
    token = app.signup_and_login("ann")
    app.call("POST", "/login", {"username": "ann", "password": "wrong password"})
    for _ in range(3):
        app.call("POST", "/notes", {"text": "x"}, token=token)
    app.call("GET", "/notes/99", token=token)

    answer = app.call("GET", "/metrics")

    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    lines = answer.body.decode().splitlines()
    for expected in (
        'notes_http_requests_total{route="/notes",method="POST",code="201"} 3',
        'notes_http_requests_total{route="/notes/{id}",method="GET",code="404"} 1',
        'notes_http_requests_total{route="/signup",method="POST",code="201"} 1',
        'notes_http_request_duration_seconds_count{route="/notes"} 3',
        "notes_http_requests_in_flight 1",  # this scrape
        "notes_signups_total 1",
        'notes_logins_total{result="ok"} 1',
        'notes_logins_total{result="failed"} 1',
        'notes_info{version="1.2.3",instance="notes-api-1"} 1',
    ):
        assert expected in lines
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? [0-9.e+-]+$')
    for line in lines:
        assert line.startswith(("# HELP ", "# TYPE ")) or sample.match(line), line
    assert not any(JWT_SECRET in line or token in line for line in lines)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"JWT_SECRET": ""}, "JWT_SECRET is not set: the tokens need a signing key"),
        ({"JWT_SECRET": "short"}, "JWT_SECRET is too short: at least 32 characters"),
        ({"DATA_DIR": ""}, "DATA_DIR is not set: the directory (a volume) that holds the database"),
        ({"DATA_DIR": "/nonexistent/notes"}, "DATA_DIR /nonexistent/notes is no directory"),
        ({"PORT": ""}, "no port: pass --port or set PORT"),
        ({"TOKEN_TTL_SECONDS": "soon"}, "TOKEN_TTL_SECONDS='soon' is not a number"),
    ],
    ids=["no-secret", "short-secret", "no-data-dir", "missing-data-dir", "no-port", "bad-ttl"],
)
def test_it_refuses_to_start_without_its_configuration(notes_api_release: Path, data_dir: Path, change: dict[str, str], why: str) -> None:
    environment = {"PORT": str(free_port()), "DATA_DIR": str(data_dir), "JWT_SECRET": JWT_SECRET} | change
    process = start_process(notes_api_release, {key: value for key, value in environment.items() if value}, [])
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 2
    assert output.strip().splitlines()[-1] == f"notes-api: error: {why}"
    assert JWT_SECRET not in output


def test_sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0(run_notes: RunNotes, data_dir: Path) -> None:
    app = run_notes()
    token = app.signup_and_login("ann")
    # Another process (this test) holds the database's write lock: the app's write waits for it.
    blocker = sqlite3.connect(data_dir / "notes.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    answer: dict[str, Response] = {}
    writer = threading.Thread(target=lambda: answer.setdefault("post", app.call("POST", "/notes", {"text": "in flight"}, token=token)))
    writer.start()
    eventually(lambda: app.metric("notes_http_requests_in_flight") == 2 or None, within=20, every=0.05, what="the write in flight")

    app.process.send_signal(signal.SIGTERM)
    app.wait_for_line("no longer accepting connections, 1 request(s) in flight")
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        app.call("GET", "/healthz")
    assert app.process.poll() is None  # still serving the write
    blocker.execute("COMMIT")
    blocker.close()

    writer.join(timeout=30)
    assert answer["post"].status == 201
    assert answer["post"].json()["text"] == "in flight"
    assert app.process.wait(timeout=30) == 0
    app.wait_for_line("stopped")
    assert run_notes().call("GET", "/notes", token=token).json()["notes"] == [answer["post"].json()]  # it was written


def test_two_processes_serve_one_database_file_at_once(run_notes: RunNotes) -> None:
    old, new = run_notes({"MOORAGE_VERSION": "1"}), run_notes({"MOORAGE_VERSION": "2"})
    token = old.signup_and_login("ann")  # signed up on one, accepted by the other: the same key and users
    assert new.call("GET", "/notes", token=token).status == 200

    def write(app_and_number: tuple[NotesApp, int]) -> int:
        app, number = app_and_number
        answer = app.call("POST", "/notes", {"text": f"note {number}"}, token=token)
        assert answer.status == 201, answer.body
        note_id: int = answer.json()["id"]
        return note_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(write, [(old if number % 2 else new, number) for number in range(80)]))

    assert len(set(ids)) == 80
    for app in (old, new):
        listed = app.call("GET", "/notes", token=token).json()["notes"]
        assert sorted(note["text"] for note in listed) == sorted(f"note {number}" for number in range(80))
    assert {old.call("GET", "/healthz").headers["X-Version"], new.call("GET", "/healthz").headers["X-Version"]} == {"1", "2"}


def test_a_taken_port_is_one_line_and_exit_1(run_notes: RunNotes, notes_api_release: Path, data_dir: Path) -> None:
    app = run_notes()
    process = start_process(
        notes_api_release, {"PORT": str(app.port), "DATA_DIR": str(data_dir), "JWT_SECRET": JWT_SECRET}, ["--bind", "127.0.0.1"]
    )
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 1
    assert output.strip().splitlines()[-1] == f"notes-api: error: cannot listen on 127.0.0.1:{app.port}: Address already in use"


def test_the_spec_validates_and_agrees_with_the_app() -> None:
    """What would lose data or fail every deploy if spec and app drifted apart."""
    from moorage.spec.loader import load_spec
    from moorage.spec.units import parse_duration

    spec_file = NOTES_API / "moorage.yml"
    validated = subprocess.run([sys.executable, "-m", "moorage", "validate", str(spec_file)], capture_output=True, text=True, check=False)
    assert (validated.returncode, validated.stdout) == (0, f"{spec_file}: ok\n")
    body = load_spec(spec_file).model.spec
    assert [volume.path for volume in body.volumes] == [body.env["DATA_DIR"]]  # the database lives on the volume
    assert body.secrets == ["JWT_SECRET"] and "JWT_SECRET" not in body.env
    assert (body.replicas, body.placement.max_per_host) == (1, 1)  # one writer host for one sqlite file
    assert body.health is not None and body.health.http == "/healthz"
    assert body.metrics is not None and body.metrics.path == "/metrics"
    assert parse_duration(body.env["STOP_TIMEOUT_SECONDS"] + "s") < body.stop.grace_period  # it drains before SIGKILL


def test_the_spec_renders_to_kubernetes_objects_the_schema_accepts() -> None:
    import kubernetes_validate

    from moorage.spec.loader import load_spec
    from moorage.targets.kubernetes import render

    manifests = render(load_spec(NOTES_API / "moorage.yml").model, "1")
    kinds = ["ConfigMap", "Service", "Service", "StatefulSet", "PodDisruptionBudget", "Ingress"]  # a volume: a StatefulSet
    assert [manifest["kind"] for manifest in manifests] == kinds
    for manifest in manifests:
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)
