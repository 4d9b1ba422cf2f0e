"""The ingress watcher (moorage.agents.ingress) against a real Consul and a real NGINX.

The watcher runs as on an lb host: installed by the agent role, under Debian's ``python3 -I``.
Consul is a dev agent with ACLs on (default deny); the watcher reads it with a token that has only
the policy the role's README documents. NGINX is Debian's, on a free loopback port; the backends
are real HTTP servers on loopback. Every wait is a bounded poll.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_layout import agents_root  # noqa: F401 -- the session fixture
from consul_dev import ConsulDev, consul_binary, start_consul_dev
from ingress_fixtures import (
    Backend,
    Ingress,
    backends,
    deregister,
    eventually,
    read_only_token,
    register,
    run_watcher,
    start_ingress,
    stop_process,
)


@pytest.fixture(scope="module")
def consul() -> Iterator[ConsulDev]:
    with start_consul_dev(acl=True) as agent:
        yield agent


@pytest.fixture(scope="module")
def token(consul: ConsulDev) -> str:
    return read_only_token(consul)


@pytest.fixture
def ingress(agents_root: Path, consul: ConsulDev, token: str, tmp_path: Path) -> Iterator[Ingress]:  # noqa: F811
    with start_ingress(agents_root, consul, tmp_path / "nginx", token) as running:
        yield running
        assert running.watcher.poll() is None, running.log()
        assert running.nginx.poll() is None


def test_nginx_answers_a_clear_503_before_any_service_exists(ingress: Ingress) -> None:
    status, body = ingress.get("nothing.example.test")

    assert status == 503
    assert body == "no service routed for this host\n"


def test_a_routed_service_reaches_both_passing_instances(consul: ConsulDev, ingress: Ingress) -> None:
    with backends("two-a", "two-b") as (first, second):
        ids = [register(consul, "two", backend, ["route=two.example.test/"]) for backend in (first, second)]
        try:
            seen = eventually(lambda: ingress.bodies("two.example.test", 6) == {"backend two-a\n", "backend two-b\n"})

            assert seen
        finally:
            for service_id in ids:
                deregister(consul, service_id)


def test_a_path_route_serves_its_prefix_only(consul: ConsulDev, ingress: Ingress) -> None:
    with backends("api") as (backend,):
        service_id = register(consul, "api", backend, ["route=paths.example.test/api"])
        try:
            answers = eventually(lambda: _answers_once_routed(ingress, "paths.example.test", ["/api/v1", "/api", "/apiary"]))

            assert answers == [(200, "backend api\n"), (200, "backend api\n"), (404, "no service routed for this path\n")]
        finally:
            deregister(consul, service_id)


def test_instances_in_maintenance_or_failing_their_check_get_no_traffic(consul: ConsulDev, ingress: Ingress) -> None:
    host = "drain.example.test"
    with backends("drain-a", "drain-b") as (first, second):
        ids = [register(consul, "drain", backend, [f"route={host}/"]) for backend in (first, second)]
        try:
            eventually(lambda: ingress.bodies(host, 6) == {"backend drain-a\n", "backend drain-b\n"})

            consul.api("PUT", f"/v1/agent/service/maintenance/{ids[0]}?enable=true&reason=test")
            eventually(lambda: ingress.bodies(host, 6) == {"backend drain-b\n"})

            second.stop()  # its HTTP check goes critical: no passing instance is left
            eventually(lambda: ingress.get(host) == (503, f"no healthy instance for {host}/\n"))
            assert ingress.get("other.example.test") == (503, "no service routed for this host\n")
            assert ingress.nginx.poll() is None
        finally:
            for service_id in ids:
                deregister(consul, service_id)


def test_a_burst_of_20_registrations_causes_few_reloads(consul: ConsulDev, ingress: Ingress) -> None:
    reloads_before = ingress.reloads()
    names = [f"burst-{number}" for number in range(20)]
    with backends(*names) as started:
        ids = []
        for backend in started:  # one a little apart from the next: more than a reload takes, less than the quiet time
            ids.append(register(consul, "burst", backend, ["route=burst.example.test/"]))
            time.sleep(0.05)
        try:
            eventually(lambda: ingress.output.read_text().count("server 127.0.0.1:") == 20)
            eventually(lambda: ingress.bodies("burst.example.test", 40) >= {"backend burst-0\n", "backend burst-19\n"} or None)

            assert ingress.reloads() - reloads_before <= 3
        finally:
            for service_id in ids:
                deregister(consul, service_id)


def test_a_malformed_route_tag_is_ignored_and_the_rest_still_routes(consul: ConsulDev, ingress: Ingress) -> None:
    with backends("mixed") as (backend,):
        service_id = register(consul, "mixed", backend, ["route=mixed.example.test/", "route=evil.test/a;return 200 x"])
        try:
            eventually(lambda: ingress.get("mixed.example.test") == (200, "backend mixed\n"))

            assert "ignored invalid route tag (want route=HOST/PATH): mixed: route=evil.test/a;return 200 x" in ingress.log()
            assert "evil.test" not in ingress.output.read_text()
        finally:
            deregister(consul, service_id)


def test_a_candidate_failing_nginx_t_is_refused_and_the_old_config_keeps_serving(consul: ConsulDev, ingress: Ingress) -> None:
    # A valid DNS name, but longer than nginx's server_names_hash_bucket_size allows: nginx -t fails.
    too_long = ".".join(["a" * 60] * 3) + ".test"
    with backends("good", "later") as (good, later):
        good_id = register(consul, "good", good, ["route=good.example.test/"])
        eventually(lambda: ingress.get("good.example.test") == (200, "backend good\n"))
        bad_id = register(consul, "long", good, [f"route={too_long}/"])
        try:
            eventually(lambda: "refused by nginx -t" in ingress.log())

            assert ingress.output.with_name("ingress.conf.rejected").read_text().count(too_long) == 1
            assert too_long not in ingress.output.read_text()
            assert ingress.get("good.example.test") == (200, "backend good\n")

            deregister(consul, bad_id)
            later_id = register(consul, "later", later, ["route=later.example.test/"])
            eventually(lambda: ingress.get("later.example.test") == (200, "backend later\n"))
            deregister(consul, later_id)
        finally:
            deregister(consul, good_id)


def test_once_applies_then_reports_unchanged_and_fails_when_consul_is_away(ingress: Ingress) -> None:
    ingress.output.write_text(ingress.output.read_text() + "# stale\n")

    applied = ingress.run_once()
    again = ingress.run_once()
    away = run_watcher(ingress.agents_root, ["--once"], {"CONSUL_HTTP_ADDR": "127.0.0.1:1"})

    assert (applied.returncode, again.returncode) == (0, 0), applied.stdout + again.stdout
    assert "applied new config" in applied.stdout
    assert "config unchanged" in again.stdout
    assert "# stale" not in ingress.output.read_text()
    assert away.returncode == 1
    assert "consul unreachable" in away.stdout


def test_bad_settings_are_one_line_errors(agents_root: Path, tmp_path: Path) -> None:  # noqa: F811
    settings = tmp_path / "ingress.json"
    settings.write_text('{"listen": "80", "quiet_second": 1}')

    result = run_watcher(agents_root, ["--config", str(settings), "--once"])

    assert result.returncode == 2
    assert result.stdout.strip().splitlines() == [f"ERROR {settings}: unknown setting(s) quiet_second"]


def test_nginx_keeps_serving_while_consul_is_down_and_changes_show_after_it_returns(agents_root: Path, tmp_path: Path) -> None:  # noqa: F811
    with start_consul_dev(acl=True) as consul, backends("steady", "after") as (steady, after):
        assert consul.management_token
        with start_ingress(agents_root, consul, tmp_path / "nginx", consul.management_token, token_in_env=True) as ingress:
            register(consul, "steady", steady, ["route=steady.example.test/"])
            # Several in a row: once NGINX's workers from before the reload have gone.
            eventually(lambda: [ingress.get("steady.example.test") for _ in range(5)] == [(200, "backend steady\n")] * 5)
            live_config = ingress.output.read_text()

            stop_process(consul.process)
            eventually(lambda: "consul unreachable" in ingress.log())

            assert [ingress.get("steady.example.test") for _ in range(5)] == [(200, "backend steady\n")] * 5
            assert ingress.output.read_text() == live_config
            assert ingress.watcher.poll() is None

            restarted = subprocess.Popen(
                [str(consul_binary()), "agent", "-dev", f"-config-file={consul.data_dir / 'dev.json'}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                eventually(lambda: consul.api("GET", "/v1/status/leader"), timeout=30)
                eventually(lambda: _registered(consul, "after", after), timeout=15)
                eventually(lambda: ingress.get("after.example.test") == (200, "backend after\n"))
                assert ingress.watcher.poll() is None
            finally:
                stop_process(restarted)


def _answers_once_routed(ingress: Ingress, host: str, paths: list[str]) -> list[tuple[int, str]] | None:
    """The answers for ``paths``, asked together once the host is routed (none from before the reload)."""
    answers = [ingress.get(host, path) for path in paths]
    return None if any(answer[1] == "no service routed for this host\n" for answer in answers) else answers


def _registered(consul: ConsulDev, service: str, backend: Backend) -> bool:
    """Register once the restarted agent accepts it (its ACL system needs a moment after a leader)."""
    try:
        register(consul, service, backend, [f"route={service}.example.test/"])
    except OSError:
        return False
    return True
