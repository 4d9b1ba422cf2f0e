"""The ingress watcher (moorage.agents.ingress) against a real Consul and a real NGINX.

The watcher runs as on an lb host: installed by the agent role, under Debian's ``python3 -I``.
Consul is a dev agent with ACLs on (default deny); the watcher uses a token that has only the
policies the consul role gives the nginx-ingress token (catalog read, its acknowledgments). NGINX
is Debian's, on a free loopback port; the backends are real HTTP servers on loopback. Every wait
is a bounded poll.
"""

from __future__ import annotations

import http.client
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_layout import agents_root  # noqa: F401 -- the session fixture
from consul_dev import ConsulDev, consul_binary, start_consul_dev
from ingress_fixtures import (
    LB_NODE,
    Backend,
    Ingress,
    backends,
    deregister,
    eventually,
    ingress_token,
    register,
    run_watcher,
    start_ingress,
    stop_process,
)

from moorage.agents.acks import read_acks
from moorage.agents.consul import ConsulClient


@pytest.fixture(scope="module")
def consul() -> Iterator[ConsulDev]:
    with start_consul_dev(acl=True) as agent:
        yield agent


@pytest.fixture(scope="module")
def token(consul: ConsulDev) -> str:
    return ingress_token(consul)


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


def test_acknowledged_means_routed_by_every_worker_at_once(consul: ConsulDev, ingress: Ingress) -> None:
    admin = ConsulClient(consul.url, consul.management_token or "")
    with backends("ack-a", "ack-b") as (first, second):
        ids = [register(consul, "ack", backend, ["route=ack.example.test/"]) for backend in (first, second)]
        try:
            eventually(lambda: set(_acked(admin, "ack") or []) == {first.address, second.address})
            assert ingress.bodies("ack.example.test", 8) == {"backend ack-a\n", "backend ack-b\n"}

            consul.api("PUT", f"/v1/agent/service/maintenance/{ids[0]}?enable=true&reason=test")
            eventually(lambda: _acked(admin, "ack") == [second.address])

            # No waiting once acknowledged: every request from now on (both workers) goes to ack-b.
            assert ingress.bodies("ack.example.test", 20) == {"backend ack-b\n"}
            live = ingress.output.read_text()
            assert f"# ack: {second.address};" in live  # the line the service role's drain check greps for
            assert f"{first.address};" not in live
        finally:
            for service_id in ids:
                deregister(consul, service_id)
        eventually(lambda: read_acks(admin).ack(LB_NODE, "ack") is None)  # routed no more: the key is gone


def test_instances_coming_going_passing_and_failing_reload_nothing(consul: ConsulDev, ingress: Ingress) -> None:
    """The life of a routed service's instances: the balancer follows, NGINX never reloads, a client keeps its connection."""
    host = "life.example.test"
    admin = ConsulClient(consul.url, consul.management_token or "")
    with backends("life-a", "life-b", "life-c") as (first, second, third):
        ids = [register(consul, "life", first, [f"route={host}/"])]
        eventually(lambda: ingress.get(host) == (200, "backend life-a\n"))
        eventually(lambda: _acked(admin, "life") == [first.address])
        reloads_before = ingress.reloads()
        client = http.client.HTTPConnection("127.0.0.1", ingress.port, timeout=5)
        client.connect()
        kept = client.sock

        def served() -> set[str]:
            bodies = set()
            for _ in range(12):
                client.request("GET", "/", headers={"Host": host})
                bodies.add(client.getresponse().read().decode())
            return bodies

        try:
            ids += [register(consul, "life", backend, [f"route={host}/"]) for backend in (second, third)]  # they come
            eventually(lambda: set(_acked(admin, "life") or []) == {first.address, second.address, third.address})
            assert served() == {"backend life-a\n", "backend life-b\n", "backend life-c\n"}

            consul.api("PUT", f"/v1/agent/service/maintenance/{ids[0]}?enable=true&reason=test")  # one is drained
            eventually(lambda: _acked(admin, "life") == sorted([second.address, third.address]))
            assert served() == {"backend life-b\n", "backend life-c\n"}

            third.stop()  # one fails its check
            eventually(lambda: _acked(admin, "life") == [second.address])
            assert served() == {"backend life-b\n"}

            deregister(consul, ids.pop())  # one goes
            consul.api("PUT", f"/v1/agent/service/maintenance/{ids[0]}?enable=false")  # one passes again
            eventually(lambda: _acked(admin, "life") == sorted([first.address, second.address]))
            assert served() == {"backend life-a\n", "backend life-b\n"}

            for service_id in ids:  # none passes: the route answers 503
                consul.api("PUT", f"/v1/agent/service/maintenance/{service_id}?enable=true&reason=test")
            eventually(lambda: _acked(admin, "life") == [])
            client.request("GET", "/", headers={"Host": host})
            answer = client.getresponse()
            assert (answer.status, answer.read().decode()) == (503, f"no healthy instance for {host}/\n")

            assert client.sock is kept  # one client connection throughout
            assert ingress.reloads() == reloads_before
        finally:
            client.close()
            for service_id in ids:
                deregister(consul, service_id)


def test_a_new_route_reloads_once_for_a_burst_and_its_instances_none(consul: ConsulDev, ingress: Ingress) -> None:
    reloads_before = ingress.reloads()
    names = [f"burst-{number}" for number in range(20)]
    admin = ConsulClient(consul.url, consul.management_token or "")
    with backends(*names) as started:
        ids = []
        for backend in started:  # one a little apart from the next: more than a reload takes, less than the quiet time
            ids.append(register(consul, "burst", backend, ["route=burst.example.test/"]))
            time.sleep(0.05)
        try:
            eventually(lambda: len(_acked(admin, "burst") or []) == 20)
            assert ingress.bodies("burst.example.test", 60) == {f"backend {name}\n" for name in names}

            assert ingress.reloads() - reloads_before == 1  # the new route; the 20 instances none
        finally:
            for service_id in ids:
                deregister(consul, service_id)


def test_pooled_connections_to_a_drained_instance_are_not_reused(consul: ConsulDev, ingress: Ingress) -> None:
    """NGINX keeps idle connections to the instances (upstream keepalive); a drained one's stay unused until it closes them."""
    host = "pool.example.test"
    admin = ConsulClient(consul.url, consul.management_token or "")
    with backends("pool-a", "pool-b") as (first, second):
        ids = [register(consul, "pool", backend, [f"route={host}/"]) for backend in (first, second)]
        try:
            eventually(lambda: set(_acked(admin, "pool") or []) == {first.address, second.address})
            for _ in range(40):
                ingress.get(host)
            assert first.requests() >= 10 and second.requests() >= 10
            assert 0 < first.connections_open() < first.requests()  # pooled: a connection carries many requests
            served_by_first = first.requests()

            consul.api("PUT", f"/v1/agent/service/maintenance/{ids[0]}?enable=true&reason=test")
            eventually(lambda: _acked(admin, "pool") == [second.address])
            answers = [ingress.get(host) for _ in range(40)]

            assert set(answers) == {(200, "backend pool-b\n")}
            assert first.requests() == served_by_first  # not one more request, over any pooled connection
            assert first.connections_open() > 0  # while NGINX still holds idle connections to it
            first.stop()  # the instance stops and closes them: NGINX drops them and serves on
            assert {ingress.get(host) for _ in range(10)} == {(200, "backend pool-b\n")}
        finally:
            for service_id in ids:
                deregister(consul, service_id)


def test_a_restarted_nginx_routes_at_once_and_is_fed_again(agents_root: Path, consul: ConsulDev, token: str, tmp_path: Path) -> None:  # noqa: F811
    host = "restart.example.test"
    with start_ingress(agents_root, consul, tmp_path / "nginx", token) as ingress, backends("restart") as (backend,):
        service_id = register(consul, "restart", backend, [f"route={host}/"])
        try:
            eventually(lambda: ingress.get(host) == (200, "backend restart\n"))
            state_file = Path(str(ingress.settings()["balancer_state_file"]))

            ingress.watcher.send_signal(signal.SIGSTOP)  # the watcher cannot help: NGINX loads the state file itself
            try:
                ingress.stop_nginx()
                ingress.start_nginx()
                assert eventually(lambda: ingress.get(host)) == (200, "backend restart\n")
            finally:
                ingress.watcher.send_signal(signal.SIGCONT)

            state_file.unlink()  # without the file a restarted NGINX starts empty: the watcher notices and feeds it
            ingress.stop_nginx()
            ingress.start_nginx()
            eventually(lambda: ingress.get(host) == (200, "backend restart\n"))
            assert "feeding it again" in ingress.log() or "fed NGINX's balancer again" in ingress.log()
            assert ingress.watcher.poll() is None
        finally:
            deregister(consul, service_id)


def test_the_feed_wants_its_key_and_listens_on_loopback_only(ingress: Ingress, agents_root: Path, tmp_path: Path) -> None:  # noqa: F811
    listen = str(ingress.settings()["balancer_listen"])
    feed_host, _, feed_port = listen.rpartition(":")
    connection = http.client.HTTPConnection(feed_host, int(feed_port), timeout=5)
    try:
        connection.request("POST", "/backends", body=b"anything 10.0.0.1:80\n", headers={"X-Moorage-Key": "guessed"})
        refused = connection.getresponse()
        assert (refused.status, refused.read() is not None) == (403, True)
    finally:
        connection.close()
    assert f"listen {listen};" in ingress.output.read_text()
    settings = tmp_path / "ingress.json"
    settings.write_text('{"balancer_listen": "0.0.0.0:10247"}')

    result = run_watcher(agents_root, ["--config", str(settings), "--once"])

    assert result.returncode == 2
    assert result.stdout.strip().splitlines() == [
        "ERROR balancer_listen: want a loopback ADDRESS:PORT (127.0.0.1:10247), got '0.0.0.0:10247'"
    ]


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
    with backends("good", "later", "good-2") as (good, later, good_2):
        good_id = register(consul, "good", good, ["route=good.example.test/"])
        eventually(lambda: ingress.get("good.example.test") == (200, "backend good\n"))
        bad_id = register(consul, "long", good, [f"route={too_long}/"])
        try:
            eventually(lambda: "refused by nginx -t" in ingress.log())

            assert ingress.output.with_name("ingress.conf.rejected").read_text().count(f"server_name {too_long};") == 1
            assert too_long not in ingress.output.read_text()
            assert ingress.get("good.example.test") == (200, "backend good\n")
            # The other services' instances still reach NGINX while the refused candidate waits for a change.
            good_2_id = register(consul, "good", good_2, ["route=good.example.test/"])
            eventually(lambda: ingress.bodies("good.example.test", 6) == {"backend good\n", "backend good-2\n"})
            deregister(consul, good_2_id)

            deregister(consul, bad_id)
            later_id = register(consul, "later", later, ["route=later.example.test/"])
            eventually(lambda: ingress.get("later.example.test") == (200, "backend later\n"))
            deregister(consul, later_id)
        finally:
            deregister(consul, good_id)


def test_once_applies_then_reports_unchanged_and_fails_when_consul_is_away(ingress: Ingress) -> None:
    ingress.output.write_text("# stale\n" + ingress.output.read_text())

    applied = ingress.run_once()
    again = ingress.run_once()
    away = run_watcher(ingress.agents_root, ["--once"], {"CONSUL_HTTP_ADDR": "127.0.0.1:1"})

    assert (applied.returncode, again.returncode) == (0, 0), applied.stdout + again.stdout
    assert "applied new config" in applied.stdout
    assert "config unchanged" in again.stdout
    assert "# stale" not in ingress.output.read_text()
    assert away.returncode == 1
    assert "consul unreachable" in away.stdout


def test_once_runs_at_the_same_time_as_the_daemon_take_turns(consul: ConsulDev, ingress: Ingress) -> None:
    # The role's first run (--once) may meet the daemon its handler just started: each tests and
    # swaps its own candidate in turn (a platform up on a fresh lab failed when they interleaved).
    with backends("turns") as (turns,):
        ingress.output.write_text("# stale\n" + ingress.output.read_text())  # every run has a config to apply
        service_id = register(consul, "turns", turns, ["route=turns.example.test/"])
        try:
            runs = [ingress.start_once() for _ in range(6)]
            outputs = [(run.wait(timeout=60), run.communicate()[0]) for run in runs]

            assert all(code == 0 for code, _ in outputs), "\n".join(f"exit {code}: {output}" for code, output in outputs)
            assert not any("could not apply" in output or "refused" in output for _, output in outputs), outputs
            assert ingress.get("turns.example.test") == (200, "backend turns\n")
            assert not ingress.output.with_name("ingress.conf.rejected").exists()
        finally:
            deregister(consul, service_id)


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


def _acked(admin: ConsulClient, service: str) -> list[str] | None:
    ack = read_acks(admin).ack(LB_NODE, service)
    return None if ack is None else list(ack.backends)


def _registered(consul: ConsulDev, service: str, backend: Backend) -> bool:
    """Register once the restarted agent accepts it (its ACL system needs a moment after a leader)."""
    try:
        register(consul, service, backend, [f"route={service}.example.test/"])
    except OSError:
        return False
    return True
