"""A rolling deploy under keep-alive load through both lb hosts at once: no client of either sees a failure.

The session lab has two lb hosts (lab-1 and lab-3, docs/lab.md); the other deploy tests send their
traffic through the first one only. Here the service ``twolb`` (examples/hello's app, 3 instances,
port 8495, route twolb.example.test, ``maxParallel: 1``, healthy for 2 s within 20 s) rolls v1 -> v2
while each lb gets its own two clients that keep their connections open and never retry: ``wrk``
(tests/wrk_load.py, 4 connections, GET and POST in turn) and a pooled ``http.client`` client
(tests/http_load.py ``KeepAliveLoad``, 2 connections, GET and POST in turn).

Each lb's ingress watcher learns of every instance change on its own (its own blocking queries,
its own NGINX balancer), and the deploy drains an instance only once both lbs acknowledged it
(docs/deploy.md): a lb that lagged would still send requests to a stopped instance, and its
clients would see 502s or resets. The test asserts 0 non-2xx answers and 0 connection errors per
lb and client, both versions served through each lb during the rollout, only v2 through each
afterwards, and the connections kept. At the end ``twolb`` is removed. The lab is not changed.

Traffic goes only to the lab's lb hosts (from this host, ``Host:`` set to the route's name).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from example_specs import example_spec
from http_load import KeepAliveLoad, LoadSummary
from moorage_cli import Run, moorage
from platform_cli import Platform
from waiting import eventually
from wrk_load import WrkLoad, WrkSummary

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SERVICE = "twolb"
ROUTE_HOST = "twolb.example.test"
INSTANCES = [f"{SERVICE}-{n}" for n in (1, 2, 3)]
ENOUGH_REQUESTS = 100  # per lb and generator: the rollout lasts 15 s or more, each sends up to 40 requests/s


def spec_text() -> str:
    return example_spec("hello", {
        "name: hello": f"name: {SERVICE}",
        "artifact: ./app": f"artifact: {REPO / 'examples/hello/app'}",
        "port: 8080": "port: 8495",
        "hello.example.test": ROUTE_HOST,
        "update: {maxParallel: 1, minHealthy: 3s, healthyDeadline: 60s}": "update: {maxParallel: 1, minHealthy: 2s, healthyDeadline: 20s}",
    })  # fmt: skip


def versions_answering(lb: str, count: int = 20) -> Counter[str]:
    """The version each of ``count`` fresh GET requests through ``lb`` names (the body's last word)."""
    return Counter(requests.get(f"http://{lb}/", headers={"Host": ROUTE_HOST}, timeout=10).text.split()[-1] for _ in range(count))


@dataclass(frozen=True)
class LbLoad:
    lb: str
    wrk: WrkSummary
    pooled: LoadSummary


@dataclass(frozen=True)
class Rollout:
    run: Run
    loads: list[LbLoad]


@pytest.fixture(scope="module")
def lbs(platform: Platform) -> list[str]:
    return [str(host.address) for host in platform.lab.group("lb")]


@pytest.fixture(scope="module")
def spec(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("twolb") / "twolb.yml"
    path.write_text(spec_text())
    yield path
    removed = moorage("remove", SERVICE, "--yes")  # the lab as this module found it
    assert removed.returncode == 0, removed.describe()


@pytest.fixture(scope="module")
def rollout(spec: Path, lbs: list[str]) -> Rollout:
    first = moorage("deploy", str(spec), "--version", "1", "--output", "json")
    assert first.returncode == 0, first.describe()
    for lb in lbs:  # the first deploy of a route reloads NGINX on each lb: the loads start once v1 answers through both
        eventually(lambda lb=lb: versions_answering(lb) == Counter({"1": 20}) or None, within=60, every=1, what=f"twolb v1 through {lb}")
    with ExitStack() as stack:
        generators = [
            (
                lb,
                stack.enter_context(WrkLoad(lb, ROUTE_HOST, connections=4, threads=1, pause_ms=100)),
                stack.enter_context(KeepAliveLoad(lb, ROUTE_HOST, threads=2, interval=0.05)),
            )
            for lb in lbs
        ]
        run = moorage("deploy", str(spec), "--version", "2", "--output", "json")
    loads = [LbLoad(lb, wrk.summary, pooled.summary) for lb, wrk, pooled in generators]
    for load in loads:
        print(f"\nthrough {load.lb}:", f"  {load.wrk.describe()}", f"  python: {load.pooled.describe()}", sep="\n")
    return Rollout(run, loads)


def test_the_session_lab_has_two_lb_hosts(lbs: list[str]) -> None:
    assert len(lbs) == 2 and len(set(lbs)) == 2, lbs


def test_v2_rolls_out_through_two_lbs_under_keepalive_load_without_a_failed_request(rollout: Rollout, lbs: list[str]) -> None:
    assert rollout.run.returncode == 0, rollout.run.describe()
    assert rollout.run.result()["report"]["switched"] == INSTANCES
    assert [load.lb for load in rollout.loads] == lbs
    for load in rollout.loads:
        wrk, pooled = load.wrk, load.pooled
        assert wrk.socket_errors == {} and wrk.non_2xx_3xx == 0 and wrk.failed == 0, (load.lb, wrk.describe())
        assert wrk.requests >= ENOUGH_REQUESTS and set(wrk.statuses) == {200}, (load.lb, wrk.describe())
        assert pooled.failed == 0 and pooled.errors == Counter(), (load.lb, pooled.describe())
        assert pooled.sent >= ENOUGH_REQUESTS and set(pooled.statuses) == {200}, (load.lb, pooled.describe())
        # Both versions answered through this lb while it rolled; the connections were kept (none closed or reset).
        assert wrk.versions["1"] > 0 and wrk.versions["2"] > 0, (load.lb, wrk.describe())
        assert pooled.versions["1"] > 0 and pooled.versions["2"] > 0, (load.lb, pooled.describe())
        assert pooled.connections * 10 <= pooled.sent, (load.lb, pooled.describe())


def test_after_the_rollout_each_lb_serves_only_v2(rollout: Rollout, lbs: list[str]) -> None:
    assert rollout.run.returncode == 0, rollout.run.describe()
    for lb in lbs:
        assert versions_answering(lb) == Counter({"2": 20}), lb
