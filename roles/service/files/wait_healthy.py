#!/usr/bin/python3
"""Wait until a service instance's own Consul check has passed without a break for MIN seconds.

Runs on the instance's host against the local agent (token in CONSUL_HTTP_TOKEN). Exits 0
once the check has been passing continuously for MIN seconds; exits 1 when DEADLINE seconds
pass first, saying the check's last status and output. The maintenance check is not counted.

    wait_healthy.py AGENT_URL SERVICE_ID MIN DEADLINE
"""

import json
import os
import sys
import time
import urllib.request


def instance_checks(agent_url: str, service_id: str) -> list[dict]:
    request = urllib.request.Request(f"{agent_url}/v1/agent/checks")
    token = os.environ.get("CONSUL_HTTP_TOKEN")
    if token:
        request.add_header("X-Consul-Token", token)
    with urllib.request.urlopen(request, timeout=5) as response:
        checks = json.load(response)
    return [
        check
        for check in checks.values()
        if check.get("ServiceID") == service_id and not check["CheckID"].startswith("_service_maintenance:")
    ]


def main() -> int:
    agent_url, service_id, min_healthy, deadline = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    started = time.monotonic()
    passing_since = None
    last = "no check registered yet"
    while time.monotonic() - started < deadline:
        checks = instance_checks(agent_url, service_id)
        if checks and all(check["Status"] == "passing" for check in checks):
            passing_since = passing_since or time.monotonic()
            if time.monotonic() - passing_since >= min_healthy:
                print(f"{service_id}: passing for {min_healthy:g}s")
                return 0
        else:
            passing_since = None
            if checks:
                last = "; ".join(f"{check['Status']}: {check['Output'].strip()[:300]}" for check in checks)
        time.sleep(0.5)
    print(f"{service_id}: not healthy for {min_healthy:g}s within {deadline:g}s (last check: {last})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
