"""The health gate: probe an instance directly until it has been healthy for ``min_healthy`` in a row.

The probe is the spec's health check run by the gate itself, on the host, about every
``PROBE_EVERY`` seconds: an HTTP GET answered 2xx, a TCP connection accepted, or a command that
exits 0, each within the check's timeout. Consul runs the same check only every ``interval``; asked
through Consul, a gate would wait up to an interval per batch for news. The gate opens once the
probe has passed for ``min_healthy`` seconds without a failure in between; it stays shut when
``deadline`` seconds pass first and says the probe's last failure.

Used by the deploy agent's switch (``instance.py``) and by hand on a host:
``health-gate --http http://127.0.0.1:8080/healthz --min 3 --deadline 60``.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

PROBE_EVERY = 0.1
OUTPUT_LIMIT = 300


@dataclass(frozen=True)
class Probe:
    kind: str  # http | tcp | command
    address: str
    port: int
    path: str = "/"
    command: tuple[str, ...] = ()
    timeout: float = 1.0

    def describe(self) -> str:
        if self.kind == "http":
            return f"HTTP GET http://{self.address}:{self.port}{self.path}"
        if self.kind == "tcp":
            return f"TCP {self.address}:{self.port}"
        return f"command {' '.join(self.command)}"


@dataclass(frozen=True)
class ProbeResult:
    passed: bool
    output: str


@dataclass(frozen=True)
class GateResult:
    passed: bool
    waited_seconds: float
    message: str
    last_output: str


def probe_once(probe: Probe) -> ProbeResult:
    """One run of the check, within its timeout."""
    if probe.kind == "http":
        return _http(probe)
    if probe.kind == "tcp":
        try:
            with socket.create_connection((probe.address, probe.port), timeout=probe.timeout):
                return ProbeResult(True, f"{probe.describe()}: connected")
        except OSError as err:
            return ProbeResult(False, f"{probe.describe()}: {err.strerror or err}")
    try:
        done = subprocess.run(list(probe.command), capture_output=True, text=True, timeout=probe.timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return ProbeResult(False, f"{probe.describe()}: {err}")
    output = (done.stdout + done.stderr).strip()[:OUTPUT_LIMIT]
    return ProbeResult(done.returncode == 0, f"{probe.describe()}: exit {done.returncode}: {output}")


def _http(probe: Probe) -> ProbeResult:
    connection = http.client.HTTPConnection(probe.address, probe.port, timeout=probe.timeout)
    try:
        connection.request("GET", probe.path, headers={"User-Agent": "moorage-health-gate", "Connection": "close"})
        response = connection.getresponse()
        body = response.read(OUTPUT_LIMIT).decode(errors="replace").strip()
    except (OSError, http.client.HTTPException) as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        return ProbeResult(False, f"{probe.describe()}: {reason}")
    finally:
        connection.close()
    status = f"{response.status} {response.reason}"
    return ProbeResult(200 <= response.status < 300, f"{probe.describe()}: {status}: {body}")


def wait_until_healthy(
    probe: Probe,
    min_healthy: float,
    deadline: float,
    *,
    name: str = "instance",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> GateResult:
    """Probe until it has passed for ``min_healthy`` seconds in a row, or ``deadline`` passes."""
    started = clock()
    passing_since: float | None = None
    last_failure = "not probed yet"
    last_output = ""
    while True:
        now = clock()
        result = probe_once(probe)
        last_output = result.output
        if result.passed:
            passing_since = now if passing_since is None else passing_since
            if clock() - passing_since >= min_healthy:
                return GateResult(True, clock() - started, f"{name}: healthy for {min_healthy:g}s", result.output)
        else:
            passing_since = None
            last_failure = result.output
        if clock() - started >= deadline:
            break
        sleep(PROBE_EVERY)
    message = f"{name}: not healthy for {min_healthy:g}s within {deadline:g}s (last check: {last_failure})"
    return GateResult(False, clock() - started, message, last_output)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="moorage-health-gate", description="Wait until an instance passes its health check.")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--http", metavar="URL", help="GET this URL (http://ADDRESS:PORT/PATH); 2xx passes")
    target.add_argument("--tcp", metavar="ADDRESS:PORT", help="connect to this address")
    target.add_argument("--command", nargs="+", metavar="ARG", help="run this command; exit 0 passes")
    parser.add_argument("--min", type=float, default=10.0, dest="min_healthy", help="seconds passing in a row (default 10)")
    parser.add_argument("--deadline", type=float, default=300.0, help="give up after this many seconds (default 300)")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds one check may take (default 1)")
    args = parser.parse_args(argv)
    if args.http:
        rest = args.http.removeprefix("http://")
        hostport, _, path = rest.partition("/")
        address, _, port = hostport.rpartition(":")
        probe = Probe("http", address, int(port), "/" + path, timeout=args.timeout)
    elif args.tcp:
        address, _, port = args.tcp.rpartition(":")
        probe = Probe("tcp", address, int(port), timeout=args.timeout)
    else:
        probe = Probe("command", "", 0, command=tuple(args.command), timeout=args.timeout)
    checked = args.http or args.tcp or " ".join(args.command)
    result = wait_until_healthy(probe, args.min_healthy, args.deadline, name=checked)
    print(result.message)
    return 0 if result.passed else 1
