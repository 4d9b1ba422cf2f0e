"""Keep-alive load with `wrk` (Debian's package, a standard HTTP benchmarking tool) while something changes.

wrk keeps ``connections`` connections open and sends request after request on each; its script
(tests/wrk_keepalive.lua) sends GET and POST in turn with a pause between requests, so the load is
bounded and the 2-core host still has room for the deploy. wrk runs until the ``with`` block ends
(it gets SIGINT, stops and prints its summary). The summary is parsed as a person reads it: the
``N requests in T`` line, the ``Latency Distribution`` percentiles, and the two lines wrk prints only
when something went wrong: ``Socket errors: connect C, read R, write W, timeout T`` (a connection
refused, reset or closed under a request, a request unanswered within ``--timeout``) and
``Non-2xx or 3xx responses: N`` (wrk counts statuses from 400 up there); the script adds every
answer's status and the versions served.

    with WrkLoad("10.213.13.11", "hello.example.test") as wrk:
        ...deploy...
    wrk.summary.socket_errors == {} and wrk.summary.non_2xx_3xx == 0
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

SCRIPT = Path(__file__).resolve().parent / "wrk_keepalive.lua"
REQUESTS_LINE = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.MULTILINE)
SOCKET_ERRORS_LINE = re.compile(r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$", re.MULTILINE)
NON_2XX_LINE = re.compile(r"^\s*Non-2xx or 3xx responses: (\d+)\s*$", re.MULTILINE)
PERCENTILE_LINE = re.compile(r"^\s*(50|75|90|99)%\s+(\S+)\s*$", re.MULTILINE)
TALLY_LINE = re.compile(r"^moorage-wrk (status|version) (\S+) (\d+)$", re.MULTILINE)
SECONDS_PER_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class WrkSummary:
    requests: int  # answers received
    seconds: float
    socket_errors: dict[str, int]  # connect/read/write/timeout, only those above 0 (empty: wrk printed no such line)
    non_2xx_3xx: int  # wrk's own count (statuses >= 400); 0 when it printed no such line
    latency: dict[str, str]  # percentile -> wrk's figure ("50%": "1.52ms")
    statuses: Counter[int] = field(default_factory=Counter)  # every answer, by status (the script's tally)
    versions: Counter[str] = field(default_factory=Counter)  # 2xx answers by the "version N" of their body
    output: str = ""

    @property
    def failed(self) -> int:
        """Requests a user would have seen fail: socket errors plus answers other than 2xx."""
        return sum(self.socket_errors.values()) + sum(count for status, count in self.statuses.items() if not 200 <= status < 300)

    def describe(self) -> str:
        return (
            f"wrk: {self.requests} requests in {self.seconds:.1f}s, statuses {dict(self.statuses)}, socket errors {self.socket_errors}, "
            f"non-2xx/3xx {self.non_2xx_3xx}, versions {dict(self.versions)}, latency {self.latency}"
        )


def parse_wrk_output(output: str) -> WrkSummary:
    """wrk's printed summary (with the script's ``moorage-wrk`` tallies) as numbers; a summary without its requests line is an error."""
    requests = REQUESTS_LINE.search(output)
    if requests is None:
        raise ValueError(f"no 'N requests in T' line in wrk's output: {output[-2000:]!r}")
    errors = SOCKET_ERRORS_LINE.search(output)
    socket_errors = dict(zip(("connect", "read", "write", "timeout"), (int(n) for n in errors.groups()), strict=True)) if errors else {}
    non_2xx = NON_2XX_LINE.search(output)
    summary = WrkSummary(
        requests=int(requests.group(1)),
        seconds=float(requests.group(2)) * SECONDS_PER_UNIT[requests.group(3)],
        socket_errors={kind: count for kind, count in socket_errors.items() if count},
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        latency={f"{percent}%": figure for percent, figure in PERCENTILE_LINE.findall(output)},
        output=output,
    )
    for kind, key, count in TALLY_LINE.findall(output):
        if kind == "status":
            summary.statuses[int(key)] += int(count)
        else:
            summary.versions[key] += int(count)
    return summary


class WrkLoad:
    """``wrk`` sending GET and POST over ``connections`` keep-alive connections until the ``with`` block ends."""

    def __init__(
        self,
        address: str,
        host_header: str,
        *,
        path: str = "/",
        port: int = 80,
        connections: int = 8,
        threads: int = 2,
        pause_ms: int = 50,
        timeout_seconds: int = 10,
        limit_seconds: int = 900,
    ) -> None:
        wrk = shutil.which("wrk")
        if wrk is None:
            raise RuntimeError("wrk is not installed (make setup installs it: Makefile APT_PACKAGES)")
        self.command = [
            wrk, "-t", str(threads), "-c", str(connections), "-d", f"{limit_seconds}s", "--timeout", f"{timeout_seconds}s",
            "--latency", "-s", str(SCRIPT), "-H", f"Host: {host_header}", f"http://{address}:{port}{path}", "--", str(pause_ms),
        ]  # fmt: skip
        self.process: subprocess.Popen[str] | None = None
        self._summary: WrkSummary | None = None

    @property
    def summary(self) -> WrkSummary:
        if self._summary is None:
            raise RuntimeError("wrk's summary is there once the with block has ended")
        return self._summary

    def __enter__(self) -> WrkLoad:
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)  # wrk stops its threads and prints its summary
        try:
            stdout, stderr = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate()
        if self.process.returncode != 0:
            raise RuntimeError(f"wrk exited {self.process.returncode}: {stderr.strip()[-2000:]} {stdout[-2000:]}")
        self._summary = parse_wrk_output(stdout)
