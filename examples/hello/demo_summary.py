"""What `make demo` built, checked the way a person would check it by hand; exit 1 if any check fails.

    .venv/bin/python examples/hello/demo_summary.py [SPEC] [-i INVENTORY]

Four checks against the running lab (or the inventory given), each printed with what it saw:

- the spec's first route through the first lb host (``curl -H 'Host: ...' http://LB/``),
- ``NAME.service.consul`` resolved by a host's own resolver (Consul DNS),
- the service's targets in Prometheus on the monitoring host, and whether they are up,
- a request's log line found on the logging host (the app's journal -> rsyslog -> central files),

then the commands to try next. Host commands go through ``moorage lab ssh`` (the lab's key, as
whatever user the lab logs in as).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from moorage.commands.options import chosen_inventory
from moorage.errors import MoorageError
from moorage.inventory import Inventory, load_inventory
from moorage.spec.loader import load_spec

MOORAGE = str(Path(sys.executable).parent / "moorage")
PROMETHEUS_PORT = 9090


@dataclass(frozen=True)
class Check:
    what: str
    passed: bool
    saw: str


def http_get(url: str, host_header: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host_header} if host_header else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, f"no answer: {error}"


def on_host(host: str, command: str) -> str:
    """A shell command on a lab machine through ``moorage lab ssh``; its stdout."""
    run = subprocess.run([MOORAGE, "lab", "ssh", host, "--", "sh", "-c", command], capture_output=True, text=True, timeout=60, check=False)
    return run.stdout.strip()


def eventually(probe: Callable[[], str | None], within: float) -> str | None:
    deadline = time.monotonic() + within
    while True:
        found = probe()
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(1)


def route_check(lb_address: str, route_host: str, path: str) -> Check:
    status, body = http_get(f"http://{lb_address}{path}", route_host)
    return Check(f"curl -H 'Host: {route_host}' http://{lb_address}{path}", 200 <= status < 300, f"{status} {body.strip()}")


def dns_check(host: str, service: str) -> Check:
    answer = on_host(host, f"getent ahostsv4 {service}.service.consul | cut -d' ' -f1 | sort -u | tr '\\n' ' '")
    return Check(f"{service}.service.consul from {host}", bool(answer), answer or "no address")


def prometheus_check(monitoring_address: str, service: str) -> Check:
    """Every target of the service up; a new instance's first scrape can take a scrape interval, so ask for up to 60 s."""
    deadline = time.monotonic() + 60
    while True:
        check = prometheus_targets(monitoring_address, service)
        if check.passed or time.monotonic() >= deadline:
            return check
        time.sleep(2)


def prometheus_targets(monitoring_address: str, service: str) -> Check:
    status, body = http_get(f"http://{monitoring_address}:{PROMETHEUS_PORT}/api/v1/targets?state=active")
    active = json.loads(body)["data"]["activeTargets"] if status == 200 else []
    targets = [target for target in active if target["labels"].get("job") == service]
    up = [target["labels"].get("instance", "?") for target in targets if target["health"] == "up"]
    saw = f"{len(up)} of {len(targets)} up: {' '.join(sorted(up))}" if status == 200 else f"Prometheus answered {status}"
    where = f"{monitoring_address}:{PROMETHEUS_PORT}"
    return Check(f"Prometheus targets of job {service} on {where}", bool(targets) and len(up) == len(targets), saw)


def log_check(lb_address: str, route_host: str, logging_host: str, service: str) -> Check:
    marker = f"/demo-{uuid.uuid4().hex[:12]}"
    http_get(f"http://{lb_address}{marker}", route_host)  # the app logs the request (a 404)
    files = f"/var/log/moorage/*/{service}.log"
    line = eventually(lambda: on_host(logging_host, f"grep -h -F {marker} {files} | tail -n 1") or None, within=15)
    return Check(f"log line of GET {marker} on {logging_host}:{files}", bool(line), line or "not found within 15 s")


def checks(spec_path: Path, inventory: Inventory) -> list[Check]:
    spec = load_spec(spec_path)
    route = spec.model.spec.routes[0]
    lb = inventory.hosts("lb")[0]
    return [
        route_check(lb.address, route.host, route.path),
        dns_check(inventory.hosts("app")[0].name, spec.name),
        prometheus_check(inventory.hosts("monitoring")[0].address, spec.name),
        log_check(lb.address, route.host, inventory.hosts("logging")[0].name, spec.name),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, nargs="?", default=Path(__file__).parent / "moorage.yml")
    parser.add_argument("-i", "--inventory", type=Path, default=None)
    arguments = parser.parse_args()
    try:
        results = checks(arguments.spec, load_inventory(chosen_inventory(arguments.inventory)))
        name = load_spec(arguments.spec).name
    except MoorageError as error:
        print(f"demo_summary.py: {error}", file=sys.stderr)
        return 2
    print("\nWhat the demo built:")
    for check in results:
        print(f"  {'ok  ' if check.passed else 'FAIL'}  {check.what}\n        {check.saw}")
    print(
        "\nNext, try:\n"
        f"  .venv/bin/moorage status {name}\n"
        f"  .venv/bin/moorage deploy {arguments.spec} --version 2     # a rolling change, health-gated\n"
        f"  .venv/bin/moorage releases {name}\n"
        f"  .venv/bin/moorage rollback {name}\n"
        "  .venv/bin/moorage lab ssh lab-1\n"
        "  .venv/bin/moorage lab down                                 # removes the lab's machines"
    )
    failed = [check.what for check in results if not check.passed]
    if failed:
        print(f"\ndemo: {len(failed)} check(s) failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
