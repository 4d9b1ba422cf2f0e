"""The deploy agent's parts that run anywhere: definitions, the health gate, registration, acks, files, prepare.

Real parts only: a Consul dev agent with ACLs on (default deny), real HTTP servers, real files in
a temporary root, the agent zipapp run by Debian's ``/usr/bin/python3 -I``. What needs systemd or
Docker (stop, start, the whole switch) runs on the lab (tests/e2e/test_deploy.py).
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from consul_dev import ConsulDev, free_port, start_consul_dev
from ingress_fixtures import backends

from moorage.agents.acks import ack_key
from moorage.agents.consul import ConsulClient
from moorage.agents.definition import DefinitionError, ReleaseInput, define, definition_from_json
from moorage.agents.files import UnsafeArchive, unpack
from moorage.agents.health_gate import Probe, probe_once, wait_until_healthy
from moorage.agents.instance import InstanceState, NotAcknowledged, wait_for_lbs, write_state
from moorage.agents.layout import ServiceLayout
from moorage.agents.prepare import INGRESS_READ_POLICY, ensure_service_token, prune
from moorage.agents.registration import in_maintenance, register, registered, set_maintenance
from moorage.deploy.archives import agent_zipapp, release_archive
from moorage.spec.loader import load_spec
from moorage.targets.classic import service_variables

REPO = Path(__file__).resolve().parents[2]
HOST_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


@pytest.fixture(scope="module")
def consul() -> Iterator[ConsulDev]:
    with start_consul_dev(acl=True) as agent:
        yield agent


def management(consul: ConsulDev) -> ConsulClient:
    assert consul.management_token
    return ConsulClient(consul.url, consul.management_token)


def hello_service(**changes: Any) -> dict[str, Any]:
    service = service_variables(load_spec(REPO / "examples/hello/moorage.yml"))
    return {**service, **changes}


def release_input(service: dict[str, Any], secrets: dict[str, str] | None = None, release: int = 4) -> ReleaseInput:
    return ReleaseInput(service=service, release=release, version="2.0", files_release=release, secrets=secrets or {}, lbs=("lb-1",))


INSTANCE = {"id": "hello-2", "index": 2, "host": "web-2", "address": "10.0.0.2", "port": 8081}


# --- definitions ------------------------------------------------------------------------------


def test_a_definition_fills_placeholders_keeps_secrets_out_of_the_check_and_names_no_release_in_its_unit(tmp_path: Path) -> None:
    service = hello_service(
        env={"URL": "http://localhost:${PORT}/", "TOKEN_HEADER": "Bearer ${API_TOKEN}", "WHO": "${MOORAGE_INSTANCE}@${URL}"},
        secrets=["API_TOKEN"],
        health={**hello_service()["health"], "kind": "command", "command": ["check", "${URL}", "${TOKEN_HEADER}", "${PORT}"]},
    )
    layout = ServiceLayout("hello", str(tmp_path / "opt"), str(tmp_path / "etc"))

    definition = define(release_input(service, {"API_TOKEN": "s3cret"}), INSTANCE, layout)

    env = dict(definition.env)
    assert env["PORT"] == "8081" and env["MOORAGE_RELEASE"] == "4" and env["MOORAGE_VERSION"] == "2.0"
    assert env["URL"] == "http://localhost:8081/"
    assert env["TOKEN_HEADER"] == "Bearer s3cret" and env["API_TOKEN"] == "s3cret"
    assert env["WHO"] == "hello-2@http://localhost:8081/"
    assert definition.registration["Check"]["Args"] == ["check", "http://localhost:8081/", "${TOKEN_HEADER}", "8081"]
    assert "s3cret" not in json.dumps(definition.registration)
    assert definition.registration["Meta"]["release"] == "4"
    assert definition.registration["Tags"] == ["moorage", "route=hello.example.test/", "metrics"]
    other_release = define(release_input(service, {"API_TOKEN": "s3cret"}, release=5), INSTANCE, layout)
    assert other_release.unit == definition.unit, "a new release must not change the unit (no daemon-reload per switch)"
    assert f"WorkingDirectory={layout.current_link('hello-2')}" in definition.unit
    assert definition_from_json(definition.to_json()) == definition
    assert definition.routed and definition.backend == "10.0.0.2:8081"


def test_a_definition_refuses_a_missing_secret_and_a_value_of_two_lines(tmp_path: Path) -> None:
    layout = ServiceLayout("hello", str(tmp_path), str(tmp_path))
    with pytest.raises(DefinitionError, match="secrets API_TOKEN have no value"):
        define(release_input(hello_service(secrets=["API_TOKEN"])), INSTANCE, layout)
    with pytest.raises(DefinitionError, match="env API_TOKEN: a value must be one line"):
        define(release_input(hello_service(secrets=["API_TOKEN"]), {"API_TOKEN": "a\nb"}), INSTANCE, layout)


# --- the health gate --------------------------------------------------------------------------


@pytest.fixture
def hello_app() -> Iterator[Any]:
    """examples/hello's app on a free port, healthy or failing on purpose."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*, failing: bool = False) -> int:
        port = free_port()
        env = {"MOORAGE_VERSION": "7", **({"HELLO_FAIL_HEALTH": "1"} if failing else {})}
        started.append(subprocess.Popen([sys.executable, str(REPO / "examples/hello/app/app.py"), "--port", str(port)], env=env))
        return port

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


def test_the_gate_opens_once_the_app_answered_for_min_healthy_and_says_why_it_stays_shut(hello_app: Any) -> None:
    healthy = Probe("http", "127.0.0.1", hello_app(), "/healthz", timeout=1)
    failing = Probe("http", "127.0.0.1", hello_app(failing=True), "/healthz", timeout=1)

    opened = wait_until_healthy(healthy, 1.0, 20, name="hello-1")
    shut = wait_until_healthy(failing, 1.0, 2, name="hello-2")

    assert opened.passed and 1.0 <= opened.waited_seconds < 10, opened
    assert opened.message == "hello-1: healthy for 1s"
    assert not shut.passed and shut.waited_seconds >= 2
    assert shut.message.startswith("hello-2: not healthy for 1s within 2s (last check: HTTP GET http://127.0.0.1:")
    assert "500 Internal Server Error: failing on purpose, version 7" in shut.message


def test_each_kind_of_probe_passes_and_fails_for_the_right_reason(tmp_path: Path) -> None:
    closed = free_port()
    with backends("probe") as (backend,):
        assert probe_once(Probe("tcp", "127.0.0.1", backend.port)).passed
        assert probe_once(Probe("http", "127.0.0.1", backend.port, "/x")).output.endswith("200 OK: backend probe")
    refused = probe_once(Probe("tcp", "127.0.0.1", closed))
    assert not refused.passed and "refused" in refused.output.lower()
    assert probe_once(Probe("command", "", 0, command=("true",))).passed
    failed = probe_once(Probe("command", "", 0, command=("sh", "-c", "echo not ready; exit 3")))
    assert not failed.passed and failed.output.endswith("exit 3: not ready")
    slow = probe_once(Probe("command", "", 0, command=("sleep", "5"), timeout=0.3))
    assert not slow.passed and "timed out" in slow.output


# --- Consul: registration, maintenance, acknowledgments, the service token ---------------------


def test_an_instance_registers_passing_at_once_and_maintenance_toggles(consul: ConsulDev, tmp_path: Path) -> None:
    client = management(consul)
    closed = free_port()  # nothing answers: Consul's own check would say critical at its first run
    definition = define(
        release_input(hello_service()), {**INSTANCE, "id": "hello-9", "address": "127.0.0.1", "port": closed}, ServiceLayout("hello")
    )

    register(client, definition.registration, passing=True)
    set_maintenance(client, "hello-9", True, "moorage release 4")

    held = registered(client, "hello-9")
    assert held is not None and held["Meta"]["release"] == "4" and held["Meta"]["started"].endswith("Z")
    checks = consul.api("GET", "/v1/agent/checks")
    assert isinstance(checks, dict)
    [check] = [check for check in checks.values() if check["ServiceID"] == "hello-9" and not check["CheckID"].startswith("_service_maint")]
    assert check["Status"] == "passing"
    assert in_maintenance(client, "hello-9")
    set_maintenance(client, "hello-9", False)
    assert not in_maintenance(client, "hello-9")


def put_ack(consul: ConsulDev, lb: str, service: str, backends_: list[str]) -> None:
    value = json.dumps({"backends": sorted(backends_), "index": 1, "updated": "2026-01-01T00:00:00.000Z"})
    consul.api("PUT", f"/v1/kv/{ack_key(lb, service)}", None)  # make sure the key exists, then set it
    request_body = base64.b64encode(value.encode()).decode()
    consul.api("PUT", "/v1/txn", [{"KV": {"Verb": "set", "Key": ack_key(lb, service), "Value": request_body}}])


def test_the_switch_waits_for_every_lb_and_names_those_that_did_not_acknowledge(consul: ConsulDev) -> None:
    client = management(consul)
    put_ack(consul, "lb-1", "shop", ["10.0.0.1:80", "10.0.0.2:80"])
    put_ack(consul, "lb-2", "shop", ["10.0.0.1:80", "10.0.0.2:80"])

    def later() -> None:
        time.sleep(0.8)
        put_ack(consul, "lb-1", "shop", ["10.0.0.1:80"])
        time.sleep(0.4)
        put_ack(consul, "lb-2", "shop", ["10.0.0.1:80"])

    writer = threading.Thread(target=later)
    writer.start()
    seconds = wait_for_lbs(client, "shop", "10.0.0.2:80", ["lb-1", "lb-2"], routed=False, timeout=20)
    writer.join()
    assert 1.1 <= seconds < 10, seconds  # blocked until the second lb acknowledged, not longer

    assert wait_for_lbs(client, "shop", "10.0.0.1:80", ["lb-1", "lb-2"], routed=True, timeout=5) < 2
    assert wait_for_lbs(client, "shop", "10.0.0.9:80", ["lb-3"], routed=False, timeout=5) < 2  # no key: drained
    with pytest.raises(NotAcknowledged, match=r"lb lb-1, lb-2: shop 10.0.0.2:80 not routed"):
        wait_for_lbs(client, "shop", "10.0.0.2:80", ["lb-1", "lb-2"], routed=True, timeout=1.5)


def test_the_service_token_is_made_once_registers_its_service_and_reads_the_acknowledgments(consul: ConsulDev) -> None:
    assert consul.management_token
    token, accessor = "6a1e0a8e-1b6c-4a53-9d0b-2b1f7ad4d001", "6a1e0a8e-1b6c-4a53-9d0b-2b1f7ad4d002"
    client = ConsulClient(consul.url, token)
    put_ack(consul, "lb-1", "shop", ["10.0.0.1:80"])

    made = ensure_service_token(client, "shop", token, accessor, consul.management_token)
    again = ensure_service_token(client, "shop", token, accessor, consul.management_token)

    assert (made, again) == (True, False)
    assert client.get(f"/v1/kv/{ack_key('lb-1', 'shop')}").document
    client.put("/v1/agent/service/register", body={"ID": "shop-1", "Name": "shop", "Port": 1})
    own = client.get("/v1/acl/token/self").document
    assert isinstance(own, dict) and INGRESS_READ_POLICY in {policy["Name"] for policy in own["Policies"]}
    # A token made before it could read the acknowledgments (moorage 0.1) gets the policy.
    old_token, old_accessor = "6a1e0a8e-1b6c-4a53-9d0b-2b1f7ad4d003", "6a1e0a8e-1b6c-4a53-9d0b-2b1f7ad4d004"
    management(consul).put(
        "/v1/acl/token", body={"AccessorID": old_accessor, "SecretID": old_token, "ServiceIdentities": [{"ServiceName": "cart"}]}
    )
    assert ensure_service_token(ConsulClient(consul.url, old_token), "cart", old_token, old_accessor, consul.management_token)
    assert ConsulClient(consul.url, old_token).get(f"/v1/kv/{ack_key('lb-1', 'shop')}").document


# --- files on the host ------------------------------------------------------------------------


def tarball(tmp_path: Path, members: list[tarfile.TarInfo]) -> Path:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


@pytest.mark.parametrize(
    ("name", "kind", "link", "why"),
    [
        ("../escape", tarfile.REGTYPE, "", "outside the release directory"),
        ("/etc/passwd", tarfile.REGTYPE, "", "outside the release directory"),
        ("link", tarfile.SYMTYPE, "/etc", "links outside the release directory"),
        ("dev", tarfile.CHRTYPE, "", "not a file, directory or link"),
    ],
)
def test_an_archive_that_would_write_outside_its_release_is_refused_and_leaves_nothing(
    tmp_path: Path, name: str, kind: bytes, link: str, why: str
) -> None:
    member = tarfile.TarInfo(name)
    member.type, member.linkname, member.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    destination = tmp_path / "releases" / "3"
    destination.parent.mkdir()

    with pytest.raises(UnsafeArchive, match=why):
        unpack(tarball(tmp_path, [member]), destination)
    assert list(destination.parent.iterdir()) == []


def test_the_release_archive_is_the_same_for_the_same_files_and_unpacks_to_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path / "cache"))
    app = tmp_path / "app"
    (app / "static").mkdir(parents=True)
    (app / "app.py").write_text("print('hi')\n")
    (app / "static" / "a.txt").write_text("a\n")
    first = release_archive(app)
    (app / "app.py").touch()  # a newer mtime is no other content
    again = release_archive(app)
    (app / "static" / "a.txt").write_text("b\n")
    changed = release_archive(app)

    assert first.digest == again.digest != changed.digest
    unpack(first.path, tmp_path / "unpacked")
    assert (tmp_path / "unpacked" / "static" / "a.txt").read_text() == "a\n"


def test_prune_keeps_the_newest_releases_and_every_one_an_instance_runs_or_would_go_back_to(tmp_path: Path) -> None:
    layout = ServiceLayout("hello", str(tmp_path / "opt"), str(tmp_path / "etc"))
    for number in range(1, 9):
        (layout.definitions_dir(number)).mkdir(parents=True)
        (layout.definition_file(number, "hello-1")).write_text(json.dumps({"files_release": number if number != 7 else 3}))
        (layout.release_dir(number) / ".moorage-unpacked").parent.mkdir(parents=True)
        (layout.release_dir(number) / ".moorage-unpacked").write_text(f"digest{number}\n")
    write_state(layout, "hello-1", InstanceState(release=8, digest="d", healthy=True, previous=2))

    removed = prune(layout, keep=3, keep_release=8)

    assert sorted(int(path.name) for path in layout.definitions_root.iterdir()) == [2, 6, 7, 8]
    assert sorted(int(path.name) for path in layout.releases_dir.iterdir()) == [2, 3, 6, 8]  # 7 runs the files of 3
    assert "definitions of release 1" in removed and "files of release 7" in removed


# --- the agent as shipped ---------------------------------------------------------------------


def test_the_agent_zipapp_runs_under_isolated_debian_python_and_reports_what_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path / "cache"))
    agent = agent_zipapp()
    assert agent_zipapp().digest == agent.digest
    layout = ServiceLayout("hello", str(tmp_path / "opt"), str(tmp_path / "etc"))
    write_state(layout, "hello-1", InstanceState(release=3, digest="d", healthy=True, previous=None))

    where = ["--root", layout.root, "--config-root", layout.config_root, "--host", "web-1"]
    result = subprocess.run(
        [HOST_PYTHON, "-I", str(agent.path), "instance", *where, "status", "hello"], capture_output=True, text=True, env={}, check=False
    )

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout.splitlines()[-1])
    assert document["event"] == "result" and document["host"] == "web-1"
    assert document["instances"] == {"hello-1": {"release": 3, "healthy": True, "running": False, "files": False}}
