"""Rolling deploys under keep-alive load on the session lab: clients that keep their connections see no failure.

The service ``kept`` is examples/hello's app (3 instances, port 8494, route kept.example.test,
``maxParallel: 1``, healthy for 2 s within 20 s). Two load generators send constant GET and POST
requests through NGINX on the lab's lb host over connections they keep open, and neither retries:

* ``wrk`` (tests/wrk_load.py): 8 connections, GET and POST in turn, its printed summary read for
  ``Socket errors`` and ``Non-2xx or 3xx responses``;
* a pooled Python client (tests/http_load.py ``KeepAliveLoad``): 4 threads, one ``http.client``
  connection each, every request recorded with its status or connection error and the version served.

A connection that NGINX closed or reset under a client (a reload while the instances change, an
upstream dropped mid-request) would show as a socket error; a request NGINX could not place on a
healthy instance as a 5xx. The tests run in file order: v1 deployed -> v2 rolled out under both
loads (0 failures, both versions served, the connections kept) -> a release whose health never
passes, under the same loads: reverted, 0 failures, only v2 served. At the end ``kept`` is removed.

Traffic goes only to the lab's lb host (from this host, ``Host:`` set to the route's name).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
SERVICE = "kept"
ROUTE_HOST = "kept.example.test"
INSTANCES = [f"{SERVICE}-{n}" for n in (1, 2, 3)]
ENOUGH_REQUESTS = 300  # per generator and deploy: a deploy here lasts 15 s or more, each generator sends up to 80 requests/s


@dataclass
class Kept:
    platform: Platform
    spec: Path
    failing_spec: Path

    @property
    def lb(self) -> str:
        return str(self.platform.lab.group("lb")[0].address)

    def deploy(self, spec: Path, version: str) -> Run:
        return moorage("deploy", str(spec), "--version", version, "--output", "json")

    def versions_answering(self, count: int = 30) -> Counter[str]:
        """The version each of ``count`` fresh GET requests through NGINX names (the body's last word)."""
        url, headers = f"http://{self.lb}/", {"Host": ROUTE_HOST}
        return Counter(requests.get(url, headers=headers, timeout=10).text.split()[-1] for _ in range(count))

    def status(self) -> list[dict[str, Any]]:
        run = moorage("status", SERVICE, "--output", "json")
        assert run.returncode == 0, run.describe()
        return list(run.result()["instances"])

    def releases(self) -> list[dict[str, Any]]:
        run = moorage("releases", SERVICE, "--output", "json")
        assert run.returncode == 0, run.describe()
        return list(run.result()["releases"])


def spec_text(env: str = "{GREETING: hi}") -> str:
    return example_spec("hello", {
        "name: hello": f"name: {SERVICE}",
        "artifact: ./app": f"artifact: {REPO / 'examples/hello/app'}",
        "port: 8080": "port: 8494",
        "env: {GREETING: hi}": f"env: {env}",
        "hello.example.test": ROUTE_HOST,
        "update: {maxParallel: 1, minHealthy: 3s, healthyDeadline: 60s}": "update: {maxParallel: 1, minHealthy: 2s, healthyDeadline: 20s}",
    })  # fmt: skip


@pytest.fixture(scope="module")
def kept(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kept]:
    work = tmp_path_factory.mktemp("keepalive")
    spec, failing_spec = work / "kept.yml", work / "kept-failing.yml"
    spec.write_text(spec_text())
    failing_spec.write_text(spec_text('{GREETING: hi, HELLO_FAIL_HEALTH: "1"}'))
    yield Kept(platform, spec, failing_spec)
    removed = moorage("remove", SERVICE, "--yes")  # the lab as this module found it
    assert removed.returncode == 0, removed.describe()


@pytest.fixture(scope="module")
def v1(kept: Kept) -> Run:
    run = kept.deploy(kept.spec, "1")
    assert run.returncode == 0, run.describe()
    # The first deploy of a route reloads NGINX: the loads start once all 3 instances answer through it.
    eventually(lambda: kept.versions_answering() == Counter({"1": 30}) or None, within=60, every=1, what="kept v1 answering")
    return run


@dataclass(frozen=True)
class UnderLoad:
    run: Run
    wrk: WrkSummary
    pooled: LoadSummary
    pooled_methods: Counter[str]  # 2xx answers of the Python client by method


def deploy_under_keepalive_load(kept: Kept, spec: Path, version: str) -> UnderLoad:
    with (
        WrkLoad(kept.lb, ROUTE_HOST, connections=8, threads=2, pause_ms=100) as wrk,
        KeepAliveLoad(kept.lb, ROUTE_HOST, threads=4, interval=0.05) as pooled,
    ):
        run = kept.deploy(spec, version)
    methods = Counter(answer.method for answer in pooled.answers if answer.status is not None and 200 <= answer.status < 300)
    print(
        f"\n{SERVICE} version {version}, deploy exit {run.returncode}:",
        f"  {wrk.summary.describe()}",
        f"  python: {pooled.summary.describe()}",
        sep="\n",
    )
    return UnderLoad(run, wrk.summary, pooled.summary, methods)


@pytest.fixture(scope="module")
def v2(kept: Kept, v1: Run) -> UnderLoad:
    return deploy_under_keepalive_load(kept, kept.spec, "2")


@pytest.fixture(scope="module")
def failing(kept: Kept, v2: UnderLoad) -> UnderLoad:
    return deploy_under_keepalive_load(kept, kept.failing_spec, "3")


def assert_no_failure(loaded: UnderLoad) -> None:
    wrk, pooled = loaded.wrk, loaded.pooled
    assert wrk.socket_errors == {} and wrk.non_2xx_3xx == 0 and wrk.failed == 0, wrk.describe()
    assert wrk.requests >= ENOUGH_REQUESTS and set(wrk.statuses) == {200}, wrk.describe()
    assert pooled.failed == 0 and pooled.errors == Counter(), pooled.describe()
    assert pooled.sent >= ENOUGH_REQUESTS and set(pooled.statuses) == {200}, pooled.describe()
    assert loaded.pooled_methods["GET"] > 0 and loaded.pooled_methods["POST"] > 0, loaded.pooled_methods
    # The connections were kept: NGINX closes one only after 1000 requests (keepalive_requests), and nothing was reset.
    assert pooled.connections * 10 <= pooled.sent, pooled.describe()


def test_v2_rolls_out_under_keepalive_load_without_a_failed_request(kept: Kept, v2: UnderLoad) -> None:
    assert v2.run.returncode == 0, v2.run.describe()
    assert v2.run.result()["report"]["switched"] == INSTANCES
    assert_no_failure(v2)
    assert v2.wrk.versions["1"] > 0 and v2.wrk.versions["2"] > 0, v2.wrk.describe()
    assert v2.pooled.versions["1"] > 0 and v2.pooled.versions["2"] > 0, v2.pooled.describe()
    assert kept.versions_answering() == Counter({"2": 30})
    assert [(row["instance"], row["version"], row["health"]) for row in kept.status()] == [(name, "2", "passing") for name in INSTANCES]


def test_a_failing_release_under_keepalive_load_is_reverted_without_a_failed_request(kept: Kept, failing: UnderLoad) -> None:
    assert failing.run.returncode == 1, failing.run.describe()
    result = failing.run.result()
    assert result["report"]["switched"] == [] and len(result["report"]["reverted"]) == 1, result
    assert "not healthy for 2s within 20s" in result["message"] and "failing on purpose, version 3" in result["message"], result["message"]
    assert_no_failure(failing)
    assert set(failing.wrk.versions) == {"2"}, failing.wrk.describe()
    assert set(failing.pooled.versions) == {"2"}, failing.pooled.describe()
    assert kept.versions_answering() == Counter({"2": 30})
    assert [row["version"] for row in kept.status()] == ["2", "2", "2"]
    assert kept.releases()[-1]["status"] == "reverted"
