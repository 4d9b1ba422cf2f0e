"""Deploy benchmark: rolling deploys next to their floor, a no-op re-deploy, failed requests under load.

The floor is what the health gate alone costs: per batch, the app's start (measured here: the
hello app started on this host until its /healthz answers) plus ``update.minHealthy`` (3 s); a
rollout of N instances ``maxParallel`` P at a time needs ceil(N / P) batches. Everything above
the floor is moorage's own time (the deploy agent over SSH: check, ship, one switch per batch;
draining until every lb acknowledged).

A case is examples/hello under a name, port and route of its own, with ``replicas`` and
``maxParallel`` set (``Case``). For each case: a first deploy (version a), a rolling deploy
(version b, timed against the floor, with the controller's CPU seconds) and a no-op re-deploy of
version b. ``deploy_under_load`` rolls a case once more while three clients send GET and POST
through NGINX on an lb host, none retrying: wrk over 8 kept connections (tests/wrk_load.py), a
pooled ``http.client`` client over 4 kept connections (tests/http_load.py ``KeepAliveLoad``) and a
client opening a new connection per request (``HttpLoad``); their failed requests and connection
errors are counted per client and method.

bench/run.py calls these functions (``make bench``). Alone, on a running lab with its platform:

    .venv/bin/python bench/deploy.py [--lab NAME] [--replicas 3 --max-parallel 1] [--load]

The lab (default ``bench-deploy``) is reused when it is up, else brought up with 4 hosts and
``moorage platform up``, and brought down at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "tests"))

from example_specs import example_spec  # noqa: E402  (shared helpers of the tests)
from http_load import HttpLoad, KeepAliveLoad  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from wrk_load import WrkLoad  # noqa: E402

from moorage.commands.options import site_passwords  # noqa: E402
from moorage.inventory import load_inventory  # noqa: E402
from moorage.lab.paths import inventory_path as lab_inventory_path  # noqa: E402

MOORAGE = str(Path(sys.executable).parent / "moorage")
MIN_HEALTHY_SECONDS = 3  # examples/hello's update.minHealthy, kept in every case
HELLO_UPDATE = "update: {maxParallel: 1, minHealthy: 3s, healthyDeadline: 60s}"


@dataclass(frozen=True)
class Case:
    """examples/hello as ``name`` with ``replicas`` instances rolled ``max_parallel`` at a time (maxPerHost 2, group app)."""

    name: str
    replicas: int
    max_parallel: int
    port: int

    @property
    def route_host(self) -> str:
        return f"{self.name}.example.test"

    @property
    def batches(self) -> int:
        return math.ceil(self.replicas / self.max_parallel)

    def spec(self, directory: Path) -> Path:
        text = example_spec("hello", {
            "name: hello": f"name: {self.name}",
            "artifact: ./app": f"artifact: {REPO / 'examples/hello/app'}",
            "replicas: 3": f"replicas: {self.replicas}",
            "port: 8080": f"port: {self.port}",
            "hello.example.test": self.route_host,
            HELLO_UPDATE: HELLO_UPDATE.replace("maxParallel: 1", f"maxParallel: {self.max_parallel}"),
        })  # fmt: skip
        path = directory / f"{self.name}.yml"
        path.write_text(text)
        return path


@dataclass
class Timed:
    seconds: float
    controller_cpu_seconds: float  # the moorage process and everything it ran on this host (ansible, ssh)
    result: dict[str, Any]


@dataclass
class DeployTiming:
    case: str
    lab_hosts: int
    instances: int
    max_parallel: int
    hosts_used: int
    batches: int
    app_start_seconds: float
    floor_seconds: float
    first_deploy_seconds: float
    rolling_seconds: float
    rolling_cpu_seconds: float
    noop_seconds: float
    noop_cpu_seconds: float
    noop_ansible_changed: int
    load_average: float

    @property
    def rolling_vs_floor(self) -> float:
        return round(self.rolling_seconds / self.floor_seconds, 2)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def moorage(*args: str) -> Timed:
    """Run the CLI with --output json (the lab is ``$MOORAGE_LAB``'s); fails loudly on a non-zero exit."""
    cpu_before, started = children_cpu_seconds(), time.monotonic()
    completed = subprocess.run([MOORAGE, *args, "--output", "json"], capture_output=True, text=True, timeout=3600)
    seconds, cpu = time.monotonic() - started, children_cpu_seconds() - cpu_before
    if completed.returncode != 0:
        raise SystemExit(f"moorage {' '.join(args)} exited {completed.returncode}: {completed.stdout[-2000:]} {completed.stderr[-2000:]}")
    return Timed(round(seconds, 1), round(cpu, 1), json.loads(completed.stdout.strip().splitlines()[-1]))


def lab_inventory() -> Path | None:
    """The inventory of the lab named by MOORAGE_LAB when it is up."""
    path = lab_inventory_path()
    return path if path.exists() else None


def lbs(inventory: Path) -> list[str]:
    return [host.address for host in load_inventory(inventory, site_passwords(inventory)).hosts("lb")]


def app_start_seconds(samples: int = 5) -> float:
    """The hello app on this host: from process start until /healthz answers 200 (median)."""
    times = []
    for _ in range(samples):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        started = time.monotonic()
        app = subprocess.Popen(
            [sys.executable, str(REPO / "examples/hello/app/app.py"), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    time.sleep(0.01)
            times.append(time.monotonic() - started)
        finally:
            app.terminate()
            app.wait()
    return round(statistics.median(times), 3)


def floor_seconds(case: Case, start: float) -> float:
    return round(case.batches * (start + MIN_HEALTHY_SECONDS), 1)


def hosts_used(case: Case) -> int:
    instances = moorage("status", case.name).result["instances"]
    return len({row["host"] for row in instances})


def bench_case(case: Case, directory: Path, start: float, lab_hosts: int) -> DeployTiming:
    """First deploy, rolling deploy (timed against the floor), no-op re-deploy of the same version."""
    spec, stamp = str(case.spec(directory)), time.strftime("%H%M%S")
    first = moorage("deploy", spec, "--version", f"{stamp}a")
    rolling = moorage("deploy", spec, "--version", f"{stamp}b")
    noop = moorage("deploy", spec, "--version", f"{stamp}b")
    if noop.result.get("changed") is not False:
        raise SystemExit(f"{case.name}: the re-deploy of the same version changed something: {noop.result}")
    return DeployTiming(
        case=case.name,
        lab_hosts=lab_hosts,
        instances=len(rolling.result["report"]["switched"]),
        max_parallel=case.max_parallel,
        hosts_used=hosts_used(case),
        batches=case.batches,
        app_start_seconds=start,
        floor_seconds=floor_seconds(case, start),
        first_deploy_seconds=first.seconds,
        rolling_seconds=rolling.seconds,
        rolling_cpu_seconds=rolling.controller_cpu_seconds,
        noop_seconds=noop.seconds,
        noop_cpu_seconds=noop.controller_cpu_seconds,
        noop_ansible_changed=int(noop.result.get("ansible_changed") or 0),
        load_average=round(os.getloadavg()[0], 1),
    )


@dataclass
class ClientFailures:
    """One client and method during a rolling deploy: what a user of that client would have seen."""

    client: str  # wrk (keep-alive) | http.client (keep-alive) | http.client (new connection)
    method: str  # GET | POST | GET+POST (wrk's summary does not split them)
    requests: int
    non_2xx: int
    connection_errors: int
    connections: int | None  # TCP connections opened (None: the client does not say)
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class LoadResult:
    case: str
    lb: str
    deploy_seconds: float
    clients: list[ClientFailures]


def per_method(client: str, answers: list[Any], connections: int | None) -> list[ClientFailures]:
    rows = []
    for method in ("GET", "POST"):
        mine = [answer for answer in answers if answer.method == method]
        errors = Counter(answer.error for answer in mine if answer.error is not None)
        non_2xx = sum(1 for answer in mine if answer.status is not None and not 200 <= answer.status < 300)
        rows.append(ClientFailures(client, method, len(mine), non_2xx, sum(errors.values()), connections, dict(errors)))
    return rows


def deploy_under_load(case: Case, directory: Path, lb: str) -> LoadResult:
    """One more rolling deploy of ``case`` while the three clients send GET and POST through ``lb``."""
    spec = str(case.spec(directory))
    with (
        WrkLoad(lb, case.route_host, connections=8, threads=2, pause_ms=100) as wrk,
        KeepAliveLoad(lb, case.route_host, threads=4, interval=0.05) as pooled,
        HttpLoad(lb, case.route_host, threads=2, interval=0.05, methods=("GET", "POST")) as fresh,
    ):
        rolling = moorage("deploy", spec, "--version", f"{time.strftime('%H%M%S')}c")
    bad_statuses = sum(count for status, count in wrk.summary.statuses.items() if not 200 <= status < 300)
    clients = [
        ClientFailures("wrk (keep-alive)", "GET+POST", wrk.summary.requests, bad_statuses, sum(wrk.summary.socket_errors.values()), 8,
                       dict(wrk.summary.socket_errors)),
        *per_method("http.client (keep-alive)", pooled.answers, pooled.summary.connections),
        *per_method("http.client (new connection)", fresh.answers, None),
    ]  # fmt: skip
    return LoadResult(case.name, lb, rolling.seconds, clients)


def ensure_lab(hosts: int) -> tuple[Path, bool]:
    """The inventory of ``$MOORAGE_LAB`` with its platform; True when this call brought the lab up."""
    inventory = lab_inventory()
    created = inventory is None
    if created:
        subprocess.run([MOORAGE, "lab", "up", "--hosts", str(hosts)], check=True)
        subprocess.run([MOORAGE, "platform", "up"], check=True)
        inventory = lab_inventory()
    assert inventory is not None
    return inventory, created


def moorage_lab_down() -> None:
    """``moorage lab down`` for ``$MOORAGE_LAB`` (a lab that is not up is no error)."""
    subprocess.run([MOORAGE, "lab", "down"], check=False, capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lab", default="bench-deploy")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--max-parallel", type=int, default=1)
    parser.add_argument("--load", action="store_true", help="also one rolling deploy under the three clients")
    parser.add_argument("--keep", action="store_true", help="leave a lab this script brought up running")
    arguments = parser.parse_args()
    os.environ["MOORAGE_LAB"] = arguments.lab
    inventory, created = ensure_lab(4)
    case = Case(f"bench{arguments.replicas}", arguments.replicas, arguments.max_parallel, 8600 + arguments.replicas)
    lab_hosts = len(load_inventory(inventory, site_passwords(inventory)).hosts("all"))
    try:
        with tempfile.TemporaryDirectory(prefix="moorage-bench-") as directory:
            timing = bench_case(case, Path(directory), app_start_seconds(), lab_hosts)
            load = deploy_under_load(case, Path(directory), lbs(inventory)[0]) if arguments.load else None
    finally:
        if created and not arguments.keep:
            subprocess.run([MOORAGE, "lab", "down"], check=False)
    table = Table(title=f"moorage deploy: {case.name} (lab {arguments.lab})")
    for key, value in asdict(timing).items():
        table.add_row(key, str(value))
    table.add_row("rolling / floor", str(timing.rolling_vs_floor))
    Console().print(table)
    if load is not None:
        Console().print(asdict(load))


if __name__ == "__main__":
    main()
