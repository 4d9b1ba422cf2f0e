"""Discovery convergence: from an instance's change in Consul until every lb's NGINX routes by it.

Events, alternating on one instance of a deployed service: **maintenance on** (the instance is
critical in Consul -> no longer routed by NGINX) and **maintenance off** (the instance passes
again -> routed). Each is the Consul agent API that moorage's own drain uses
(``PUT /v1/agent/service/maintenance/ID`` on the instance's host, with the platform's management
token sent over SSH's stdin, never on a command line).

Both ends of an event are read from clocks of this one kernel (the lab's machines are
systemd-nspawn containers of this host, so they share its clock):

* start: the instance's host takes ``time.time()`` right before it sends the PUT to its Consul
  agent (taken after the answer, it came later than some lbs' acks: the change is in force before
  the agent's answer is read);
* end: every lb's ingress watcher acknowledged the new state (``moorage/ingress/LB/SERVICE`` in
  Consul KV, ``agents/acks.py``); the ack's ``updated`` is the time the watcher stamped it, after
  NGINX's balancer took the state (in force for the next request of every worker). The latest
  ``updated`` over the lbs ends the event.

So an event's time is Consul's sync to its servers, the watchers' blocking queries, their debounce
and the feed into NGINX's memory; not the SSH round trip that started it, nor the wait for the
ack in KV. The controller waits for every lb's ack (blocking queries, ``wait_for_acks``) before it
starts the next event.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from moorage.agents.acks import Want, read_acks, wait_for_acks
from moorage.agents.consul import ConsulClient
from moorage.agents.ingress import instance_address
from moorage.commands.options import site_passwords
from moorage.inventory import load_inventory
from moorage.lab.ssh import ssh_argv

WAIT_SECONDS = 60  # an event not acknowledged by every lb within this fails the benchmark

TOGGLE = """\
import time, urllib.request
request = urllib.request.Request(
    "http://127.0.0.1:8500/v1/agent/service/maintenance/{service_id}?enable={enable}&reason=bench",
    method="PUT", headers={{"X-Consul-Token": {token!r}}})
started = time.time()
urllib.request.urlopen(request, timeout=10).read()
print(repr(started))
"""


@dataclass
class DiscoveryResult:
    service: str
    lbs: list[str]
    events: int
    routed_ms: list[float] = field(default_factory=list)  # maintenance off -> routed by every lb
    drained_ms: list[float] = field(default_factory=list)  # maintenance on -> routed by none

    def all_ms(self) -> list[float]:
        return self.routed_ms + self.drained_ms


def percentile(values: list[float], percent: float) -> float:
    """The nearest-rank percentile (p99 of 60 values is the 60th, the largest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * percent // 100))
    return round(ordered[int(rank) - 1], 1)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "count": len(values),
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "max_ms": round(max(values), 1),
        "mean_ms": round(statistics.mean(values), 1),
    }


def epoch(updated: str) -> float:
    return datetime.fromisoformat(updated.replace("Z", "+00:00")).timestamp()


def bench_discovery(inventory: Path, ssh_key: Path, management_token: str, service: str, events: int) -> DiscoveryResult:
    """``events`` maintenance toggles (on, off, on, ...) of one instance of ``service``, each timed to every lb's ack."""
    hosts = load_inventory(inventory, site_passwords(inventory))
    lb_names = [host.name for host in hosts.hosts("lb")]
    server = hosts.hosts("consul_servers")[0].address
    consul = ConsulClient(f"{server}:8500", management_token)
    entries = consul.get(f"/v1/health/service/{service}").document
    assert isinstance(entries, list) and entries, f"{service}: no instance in Consul"
    entry = entries[0]
    backend, service_id = instance_address(entry), entry["Service"]["ID"]
    assert backend is not None
    node_address = entry["Node"]["Address"]
    result = DiscoveryResult(service, lb_names, events)
    try:
        for number in range(events):
            enable = number % 2 == 0
            script = TOGGLE.format(service_id=service_id, enable="true" if enable else "false", token=management_token)
            done = subprocess.run([*ssh_argv(ssh_key, node_address), "python3 -"], input=script, capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                raise SystemExit(f"maintenance {'on' if enable else 'off'} for {service_id}: {done.stderr.strip()[-500:]}")
            started = float(done.stdout.strip().splitlines()[-1])
            want = Want.DRAINED if enable else Want.ROUTED
            lacking = wait_for_acks(consul, lb_names, service, backend, want, WAIT_SECONDS)
            if lacking:
                raise SystemExit(f"{service} {backend}: not {want.value} on lb {', '.join(lacking)} within {WAIT_SECONDS}s")
            table = read_acks(consul)
            ended = max(epoch(ack.updated) for lb in lb_names if (ack := table.ack(lb, service)) is not None)
            if ended + 0.001 < started:  # ``updated`` is cut to the millisecond
                raise SystemExit(f"{service} {backend}: the lbs' acks are older than the change ({ended} < {started})")
            (result.drained_ms if enable else result.routed_ms).append(round((ended - started) * 1000, 1))
            time.sleep(0.2)  # the next event starts from a settled state
    finally:
        undo = TOGGLE.format(service_id=service_id, enable="false", token=management_token)
        subprocess.run([*ssh_argv(ssh_key, node_address), "python3 -"], input=undo, capture_output=True, text=True, timeout=60)
    return result
