"""Is a deployed service really there? The checks a person makes by hand, run against a lab.

For one spec: its first route answers through the first lb host (``Host`` header, as a browser
sends it; any status below 500: the service answered, not NGINX's 502/503/504);
``NAME.service.consul`` resolves on an app host (Consul DNS); when the spec has ``metrics``,
Prometheus on the monitoring host has the service's targets, all up; and, when asked, a
request's log line reaches the logging host. Each check says what it saw, so a report
is something a person can compare with what they see themselves. ``moorage lab check`` and
``moorage drill`` use them; the demo ends with them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from moorage.inventory import Inventory
from moorage.lab.ssh import run_remote
from moorage.spec.loader import SpecFile

PROMETHEUS_PORT = 9090
SCRAPE_WAIT_SECONDS = 60.0  # a new instance's first scrape can take a scrape interval and a target refresh
LOG_WAIT_SECONDS = 15.0  # journal -> rsyslog -> the logging host's files


@dataclass(frozen=True)
class ServiceCheck:
    service: str
    check: str  # route, dns, metrics, logs
    what: str  # what was asked, in words a person can repeat
    passed: bool
    saw: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def http_get(url: str, host_header: str | None = None, timeout: float = 10) -> tuple[int, str]:
    """Status and body of a GET; status 0 when nothing answered."""
    request = urllib.request.Request(url, headers={"Host": host_header} if host_header else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except OSError as error:
        return 0, f"no answer: {error}"


def _until_passed(probe: Callable[[], ServiceCheck], within: float, every: float = 2) -> ServiceCheck:
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if result.passed or time.monotonic() >= deadline:
            return result
        time.sleep(every)


class LabChecks:
    """The checks for the services deployed on the lab whose inventory and SSH key are given."""

    def __init__(self, inventory: Inventory, ssh_key: Path) -> None:
        self.inventory = inventory
        self.ssh_key = ssh_key
        self.lb = inventory.hosts("lb")[0]

    def on_host(self, host: str, command: str) -> str:
        """A shell command as root on a lab machine; its stdout."""
        return run_remote(self.ssh_key, self.inventory.ssh_target(host).address, command).stdout.strip()

    def service(self, spec: SpecFile, *, logs: bool = False) -> list[ServiceCheck]:
        """Every check that applies to ``spec``: route (when it has one), DNS, metrics (when declared), logs (when asked)."""
        results = [self.dns(spec)]
        if spec.model.spec.routes:
            results.insert(0, self.route(spec))
        if spec.model.spec.metrics is not None:
            results.append(self.metrics(spec))
        if logs and spec.model.spec.routes:
            results.append(self.logs(spec))
        return results

    def route(self, spec: SpecFile) -> ServiceCheck:
        route = spec.model.spec.routes[0]
        status, body = http_get(f"http://{self.lb.address}{route.path}", route.host)
        # The service answered when NGINX did not say that no instance could (502, 503, 504): an API
        # may well answer its route's root with a 404 of its own.
        return ServiceCheck(
            spec.name, "route", f"curl -H 'Host: {route.host}' http://{self.lb.address}{route.path}", 0 < status < 500,
            f"{status} {' '.join(body.split())[:200]}",
        )  # fmt: skip

    def dns(self, spec: SpecFile) -> ServiceCheck:
        host = self.inventory.hosts(spec.model.spec.placement.group)[0].name
        name = f"{spec.name}.service.consul"
        answer = self.on_host(host, f"getent ahostsv4 {name} | cut -d' ' -f1 | sort -u | tr '\\n' ' '")
        return ServiceCheck(spec.name, "dns", f"getent ahostsv4 {name} on {host}", bool(answer), answer or "no address")

    def metrics(self, spec: SpecFile) -> ServiceCheck:
        monitoring = self.inventory.hosts("monitoring")[0].address
        return _until_passed(lambda: self._targets(spec.name, monitoring), within=SCRAPE_WAIT_SECONDS)

    def _targets(self, service: str, monitoring: str) -> ServiceCheck:
        url = f"http://{monitoring}:{PROMETHEUS_PORT}/api/v1/targets?state=active"
        status, body = http_get(url)
        active = json.loads(body)["data"]["activeTargets"] if status == 200 else []
        targets = [target for target in active if target["labels"].get("job") == service]
        up = sorted(target["labels"].get("instance", "?") for target in targets if target["health"] == "up")
        saw = f"{len(up)} of {len(targets)} up: {' '.join(up)}" if status == 200 else f"Prometheus answered {status}"
        passed = bool(targets) and len(up) == len(targets)
        return ServiceCheck(service, "metrics", f"Prometheus targets of job {service} ({url})", passed, saw)

    def logs(self, spec: SpecFile) -> ServiceCheck:
        route = spec.model.spec.routes[0]
        marker = f"/moorage-check-{uuid.uuid4().hex[:12]}"
        http_get(f"http://{self.lb.address}{marker}", route.host)  # the app logs the request, whatever it answers
        logging_host = self.inventory.hosts("logging")[0].name
        files = f"/var/log/moorage/*/{spec.name}.log"
        what = f"log line of GET {marker} in {logging_host}:{files}"

        def probe() -> ServiceCheck:
            line = self.on_host(logging_host, f"grep -h -F {marker} {files} | tail -n 1")
            return ServiceCheck(spec.name, "logs", what, bool(line), line or f"not found within {LOG_WAIT_SECONDS:g} s")

        return _until_passed(probe, within=LOG_WAIT_SECONDS, every=1)
