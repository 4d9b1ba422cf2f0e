"""Deploy benchmark: a rolling deploy of 3 instances on 3 hosts and a no-op re-deploy, next to the floor.

The floor is what the health gate alone costs: per batch, the app's start (measured here: the
hello app started on this host until its /healthz answers) plus ``update.minHealthy``; the
rollout of 3 instances one at a time needs 3 batches. Everything above the floor is moorage's own
time (the deploy agent over SSH: check, ship, one switch per batch; draining until every lb
acknowledged). The rolling
deploy runs under constant load through NGINX (tests/http_load.py); its failed requests are
counted. Prints a table and writes bench/results/deploy.json.

    .venv/bin/python bench/deploy.py [--lab NAME] [--runs N]

The lab (default ``bench-deploy``) is reused when it is up (with its platform), else brought up
with 4 hosts and ``moorage platform up``, and then brought down at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "tests"))

from http_load import HttpLoad  # noqa: E402  (a shared helper of the tests)
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from moorage.inventory import load_inventory  # noqa: E402
from moorage.lab.paths import inventory_path as lab_inventory_path  # noqa: E402

MOORAGE = str(Path(sys.executable).parent / "moorage")
SPEC = REPO / "examples/hello/moorage.yml"
ROUTE_HOST = "hello.example.test"
RESULTS = Path(__file__).parent / "results" / "deploy.json"


def moorage(*args: str) -> tuple[float, dict]:
    """Run the CLI with --output json; (seconds, its result line). Fails loudly on a non-zero exit."""
    started = time.monotonic()
    completed = subprocess.run([MOORAGE, *args, "--output", "json"], capture_output=True, text=True)
    seconds = time.monotonic() - started
    if completed.returncode != 0:
        raise SystemExit(f"moorage {' '.join(args)} exited {completed.returncode}: {completed.stdout[-2000:]} {completed.stderr[-2000:]}")
    return seconds, json.loads(completed.stdout.strip().splitlines()[-1])


def lab_inventory() -> Path | None:
    """The inventory of the lab named by MOORAGE_LAB when it is up."""
    path = lab_inventory_path()
    return path if path.exists() else None


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
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="bench-deploy")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="leave a lab this script brought up running")
    arguments = parser.parse_args()
    os.environ["MOORAGE_LAB"] = arguments.lab

    inventory = lab_inventory()
    created = inventory is None
    if created:
        subprocess.run([MOORAGE, "lab", "up", "--hosts", "4"], check=True)
        subprocess.run([MOORAGE, "platform", "up"], check=True)
        inventory = lab_inventory()
    assert inventory is not None
    lb = load_inventory(inventory).hosts("lb")[0].address

    try:
        stamp = time.strftime("%H%M%S")
        moorage("deploy", str(SPEC), "--version", f"bench-{stamp}-0")  # something to roll from
        rows = []
        for run in range(1, arguments.runs + 1):
            with HttpLoad(lb, ROUTE_HOST) as load:
                rolling, result = moorage("deploy", str(SPEC), "--version", f"bench-{stamp}-{run}")
            noop, noop_result = moorage("deploy", str(SPEC), "--version", f"bench-{stamp}-{run}")
            assert noop_result["changed"] is False, noop_result
            rows.append(
                {
                    "rolling_seconds": round(rolling, 1),
                    "instances": len(result["report"]["switched"]),
                    "noop_seconds": round(noop, 1),
                    "noop_ansible_changed": noop_result["ansible_changed"],
                    "requests": load.summary.sent,
                    "failed_requests": load.summary.failed,
                }
            )
    finally:
        if created and not arguments.keep:
            subprocess.run([MOORAGE, "lab", "down"], check=False)

    spec_update = {"min_healthy_seconds": 3, "batches": 3}  # examples/hello: minHealthy 3s, maxParallel 1, 3 replicas
    start = app_start_seconds()
    floor = spec_update["batches"] * (start + spec_update["min_healthy_seconds"])
    document = {
        "lab": arguments.lab,
        "cpus": os.cpu_count(),
        "app_start_seconds": round(start, 3),
        "floor_seconds": round(floor, 1),
        "runs": [{**row, "rolling_vs_floor": round(row["rolling_seconds"] / floor, 2)} for row in rows],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")

    table = Table(title=f"moorage deploy: examples/hello, 3 instances on 3 hosts (lab {arguments.lab}, {os.cpu_count()} CPUs)")
    for column in (
        "run",
        "rolling deploy s",
        "floor s",
        "ratio",
        "no-op re-deploy s",
        "no-op Ansible changed",
        "requests under load",
        "failed requests",
    ):
        table.add_column(column, justify="right")
    for number, row in enumerate(rows, start=1):
        table.add_row(
            str(number),
            f"{row['rolling_seconds']:.1f}",
            f"{floor:.1f}",
            f"{row['rolling_seconds'] / floor:.2f}",
            f"{row['noop_seconds']:.1f}",
            str(row["noop_ansible_changed"]),
            str(row["requests"]),
            str(row["failed_requests"]),
        )
    Console().print(table)
    Console().print(f"floor = 3 batches x (app start {start:.2f}s + minHealthy 3s); results in {RESULTS}")


if __name__ == "__main__":
    main()
