"""The health gate: wait until an instance's own Consul checks have passed without a break for ``min_healthy``.

Asked of the local agent (``/v1/agent/checks``), where the instance is registered. The
maintenance check does not count (an instance coming back is still in maintenance while it is
gated). The gate opens once every check of the instance has been passing for ``min_healthy``
seconds in a row; it stays shut when ``deadline`` seconds pass first, and then says the checks'
last status and output. Consul being away counts as not passing (the gate keeps asking).

Used by the ``moorage.platform.health_gate`` module (this file is also a module_utils of the
Ansible collection) and by hand on a host: ``health-gate SERVICE_ID --min 10 --deadline 300``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from .consul import DEFAULT_ADDRESS, MAINTENANCE_CHECK_PREFIX, ConsulClient, ConsulError

POLL_SECONDS = 0.5
OUTPUT_LIMIT = 300


@dataclass(frozen=True)
class Check:
    check_id: str
    status: str  # passing | warning | critical
    output: str


@dataclass(frozen=True)
class GateResult:
    passed: bool
    waited_seconds: float
    checks: tuple[Check, ...]  # the last answer
    message: str


def instance_checks(client: ConsulClient, service_id: str) -> tuple[Check, ...]:
    """The checks of ``service_id`` on the local agent, without its maintenance check."""
    document = client.get("/v1/agent/checks", timeout=5).document
    if not isinstance(document, dict):
        raise ConsulError("/v1/agent/checks: unexpected answer")
    return tuple(
        Check(str(check.get("CheckID", "")), str(check.get("Status", "critical")), str(check.get("Output") or ""))
        for check in document.values()
        if isinstance(check, dict)
        and check.get("ServiceID") == service_id
        and not str(check.get("CheckID", "")).startswith(MAINTENANCE_CHECK_PREFIX)
    )


def describe_checks(checks: tuple[Check, ...]) -> str:
    return "; ".join(f"{check.status}: {check.output.strip()[:OUTPUT_LIMIT]}" for check in checks)


def wait_until_healthy(
    client: ConsulClient,
    service_id: str,
    min_healthy: float,
    deadline: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> GateResult:
    """Poll the agent until the checks have passed for ``min_healthy`` seconds, or ``deadline`` passes."""
    started = clock()
    passing_since: float | None = None
    checks: tuple[Check, ...] = ()
    last = "no check registered yet"
    while clock() - started < deadline:
        try:
            checks = instance_checks(client, service_id)
        except ConsulError as err:
            checks, last = (), f"consul: {err}"
        if checks and all(check.status == "passing" for check in checks):
            passing_since = clock() if passing_since is None else passing_since
            if clock() - passing_since >= min_healthy:
                waited = clock() - started
                return GateResult(True, waited, checks, f"{service_id}: passing for {min_healthy:g}s")
        else:
            passing_since = None
            if checks:
                last = describe_checks(checks)
        sleep(POLL_SECONDS)
    message = f"{service_id}: not healthy for {min_healthy:g}s within {deadline:g}s (last check: {last})"
    return GateResult(False, clock() - started, checks, message)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="moorage-health-gate", description="Wait until an instance passes its Consul checks.")
    parser.add_argument("service_id", help="the instance's Consul service ID")
    parser.add_argument("--min", type=float, default=10.0, dest="min_healthy", help="seconds passing in a row (default 10)")
    parser.add_argument("--deadline", type=float, default=300.0, help="give up after this many seconds (default 300)")
    parser.add_argument("--consul", default=os.environ.get("CONSUL_HTTP_ADDR", DEFAULT_ADDRESS), help="the local agent")
    args = parser.parse_args(argv)
    client = ConsulClient(args.consul, os.environ.get("CONSUL_HTTP_TOKEN", ""))
    result = wait_until_healthy(client, args.service_id, args.min_healthy, args.deadline)
    print(result.message)
    return 0 if result.passed else 1
