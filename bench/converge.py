"""Platform benchmark: `moorage platform up` converge time and no-op re-run time per lab size.

For each size, a lab of its own (``bench-platform-N``) is brought up fresh, the platform converged
once (timed), then run again with nothing to change (timed, and its changed count recorded), and
the lab brought down. Prints a table and writes bench/results/platform.json. Needs root.

    .venv/bin/python bench/converge.py [--sizes 3,10] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results" / "platform.json"
MOORAGE = str(Path(sys.executable).parent / "moorage")


def moorage(lab: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "MOORAGE_LAB": lab}
    return subprocess.run([MOORAGE, *args], capture_output=True, text=True, env=environment, timeout=3600)


def timed_platform_up(lab: str, inventory: str) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    completed = moorage(lab, "platform", "up", "-i", inventory, "--output", "json")
    seconds = time.monotonic() - started
    if completed.returncode != 0:
        raise SystemExit(f"{lab}: platform up failed: {completed.stdout[-1500:]}{completed.stderr[-1500:]}")
    result = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith('{"event": "result"')][-1]
    return seconds, result


def bench_size(hosts: int, *, keep: bool) -> dict[str, Any]:
    lab = f"bench-platform-{hosts}"
    moorage(lab, "lab", "down")  # a fresh lab: the converge starts from bare machines
    up = moorage(lab, "lab", "up", "--hosts", str(hosts), "--output", "json")
    if up.returncode != 0:
        raise SystemExit(f"{lab}: lab up failed: {up.stderr[-1500:]}")
    inventory = json.loads(moorage(lab, "lab", "inventory", "--output", "json").stdout)["path"]
    try:
        converge_seconds, converge = timed_platform_up(lab, inventory)
        noop_seconds, noop = timed_platform_up(lab, inventory)
    finally:
        if not keep:
            moorage(lab, "lab", "down")
    return {
        "hosts": hosts,
        "converge_seconds": round(converge_seconds, 1),
        "converge_changed": sum(stats["changed"] for stats in converge["hosts"].values()),
        "noop_seconds": round(noop_seconds, 1),
        "noop_changed": sum(stats["changed"] for stats in noop["hosts"].values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,10", help="comma-separated lab sizes (default 3,10)")
    parser.add_argument("--keep", action="store_true", help="leave the labs running")
    arguments = parser.parse_args()
    rows = [bench_size(int(size), keep=arguments.keep) for size in arguments.sizes.split(",")]
    table = Table("hosts", "converge (s)", "changed", "no-op re-run (s)", "changed", title="moorage platform up")
    for row in rows:
        table.add_row(*(str(row[key]) for key in ("hosts", "converge_seconds", "converge_changed", "noop_seconds", "noop_changed")))
    Console().print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "platform", "load_average": os.getloadavg(), "runs": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
