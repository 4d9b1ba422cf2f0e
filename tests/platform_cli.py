"""`moorage platform up` as the end-to-end tests run it, and what the converged platform offers them."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests


@dataclass(frozen=True)
class PlatformRun:
    """One `moorage platform up --output json`: exit status, final result event, error line, stderr."""

    returncode: int
    result: dict[str, Any]
    error: str | None  # the CLI's one-line error (its JSON error document), if it failed
    stderr: str

    def changed_per_host(self) -> dict[str, int]:
        return {host: stats["changed"] for host, stats in self.result.get("hosts", {}).items()}


@dataclass(frozen=True)
class Platform:
    lab: Any  # the session `lab` fixture (tests/e2e/conftest.py)
    converge: PlatformRun
    management_token: str  # Consul's bootstrap token, read from the platform's vault file

    def consul_api(self, host: str) -> str:
        return f"http://{self.lab.host(host).address}:8500/v1"

    def prometheus_api(self) -> str:
        return f"http://{self.lab.group('monitoring')[0].address}:9090/api/v1"

    def consul_settled(self) -> bool | None:
        """True once Consul can lose a server again: a leader, every lab host an alive member (serf status 1),
        and every server a healthy voter, caught up on the leader's log (autopilot; a server just
        started may still be catching up, and while it does, losing another server leaves no quorum)."""
        headers = {"X-Consul-Token": self.management_token}
        for server in self.lab.group("consul_servers"):
            api = self.consul_api(server.name)
            try:
                leader = requests.get(f"{api}/status/leader", timeout=3).json()
                members = requests.get(f"{api}/agent/members", headers=headers, timeout=3).json()
                health = requests.get(f"{api}/operator/autopilot/health", headers=headers, timeout=3).json()
            except (requests.RequestException, ValueError):
                continue
            alive = {member["Name"] for member in members if member["Status"] == 1}
            tolerant = isinstance(health, dict) and health.get("Healthy") is True and health.get("FailureTolerance", 0) >= 1
            return True if leader and tolerant and alive >= {host.name for host in self.lab.hosts} else None
        return None


def platform_up(inventory: Path, *extra: str) -> PlatformRun:
    """The real CLI: ``moorage platform up -i INVENTORY --output json [extra]``."""
    command = [str(Path(sys.executable).parent / "moorage"), "platform", "up", "-i", str(inventory), "--output", "json"]
    completed = subprocess.run([*command, *extra], capture_output=True, text=True, timeout=1800)
    # One JSON event per line, then (on failure) one indented JSON error document.
    lines = completed.stdout.splitlines()
    events = [json.loads(line) for line in lines if line.startswith('{"event"')]
    result = next((event for event in reversed(events) if event.get("event") == "result"), {})
    rest = "\n".join(line for line in lines if not line.startswith('{"event"')).strip()
    error = json.loads(rest)["error"] if rest else None
    return PlatformRun(completed.returncode, result, error, completed.stderr)
