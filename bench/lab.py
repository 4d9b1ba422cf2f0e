"""Lab benchmark: first image build, `lab up` from the cached image, memory per idle machine.

Prints a table and writes bench/results/lab.json. Needs root. The cold build runs in a throw-away
cache directory, so the shared image cache is neither used nor disturbed; the `lab up` runs use a
lab of their own (``bench-lab``), brought down at the end.

    .venv/bin/python bench/lab.py [--sizes 3,10,20] [--skip-cold-build]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from moorage import lab
from moorage.lab.aptrepo import ensure_apt_repo
from moorage.lab.image import ensure_base_image
from moorage.lab.paths import lab_dir

RESULTS = Path(__file__).parent / "results" / "lab.json"
IDLE_SETTLE_SECONDS = 10


def timed(action) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    action()
    return time.monotonic() - started


def cold_build() -> dict[str, float]:
    """Base image and apt repository from nothing, in a scratch cache."""
    with tempfile.TemporaryDirectory(prefix="moorage-bench-cache-", dir="/var/tmp") as scratch:
        previous = os.environ.get("MOORAGE_CACHE_DIR")
        os.environ["MOORAGE_CACHE_DIR"] = scratch
        try:
            image_seconds = timed(ensure_base_image)
            repo_seconds = timed(ensure_apt_repo)
        finally:
            if previous is None:
                os.environ.pop("MOORAGE_CACHE_DIR")
            else:
                os.environ["MOORAGE_CACHE_DIR"] = previous
    return {"image_build_seconds": image_seconds, "apt_repo_build_seconds": repo_seconds}


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def memory_kib_of_machines(name: str | None = None) -> dict[str, dict[str, int]]:
    """Per machine of lab ``name`` (default: ``$MOORAGE_LAB``'s): PSS and RSS summed over its nspawn and every process below it."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    totals: dict[str, dict[str, int]] = {}
    for machine_dir in sorted((lab_dir(name) / "machines").glob("lab-*")):
        root = int((machine_dir / "pid").read_text())
        tree, frontier = {root}, [root]
        while frontier:
            children = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
            tree.update(children)
            frontier = children
        usage = {"Pss": 0, "Rss": 0}
        for pid in tree:
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            for line in rollup.splitlines():
                field = line.split(":")[0]
                if field in usage:
                    usage[field] += int(line.split()[1])
        totals[machine_dir.name] = usage
    return totals


def memory_mib_per_machine(name: str | None = None) -> dict[str, float]:
    """Mean PSS and RSS per machine of a lab, in MiB (run.py reads it on a converged lab)."""
    memory = memory_kib_of_machines(name)
    count = max(len(memory), 1)
    return {
        "pss_mib_per_machine": round(sum(m["Pss"] for m in memory.values()) / count / 1024, 1),
        "rss_mib_per_machine": round(sum(m["Rss"] for m in memory.values()) / count / 1024, 1),
    }


def main() -> None:
    os.environ["MOORAGE_LAB"] = "bench-lab"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,10,20", help="lab sizes to bring up from the cached image")
    parser.add_argument("--skip-cold-build", action="store_true")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    results: dict[str, object] = {}
    if not args.skip_cold_build:
        results.update(cold_build())
    ensure_apt_repo()  # warm the shared cache, so `up` below measures booting only
    lab.down()
    ups = []
    for size in sizes:
        available_before = mem_available_kib()
        up_seconds = timed(lambda size=size: lab.up(size))
        time.sleep(IDLE_SETTLE_SECONDS)
        memory = memory_mib_per_machine()
        available_drop = available_before - mem_available_kib()
        ups.append({
            "hosts": size,
            "up_seconds": round(up_seconds, 2),
            **memory,
            "mem_available_drop_mib_per_machine": round(available_drop / size / 1024, 1),
        })  # fmt: skip
        again = timed(lambda size=size: lab.up(size))
        ups[-1]["up_again_seconds"] = round(again, 2)
        lab.down()
    results["lab_up"] = ups
    largest = max(ups, key=lambda entry: entry["hosts"])
    per_machine = max(largest["rss_mib_per_machine"], largest["mem_available_drop_mib_per_machine"])
    results["machines_in_24_gib_estimate"] = int(24 * 1024 / per_machine) if per_machine > 0 else None

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def print_table(results: dict[str, object]) -> None:
    table = Table(title="moorage lab")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ("image_build_seconds", "apt_repo_build_seconds"):
        if key in results:
            table.add_row(f"first build: {key.removesuffix('_seconds').replace('_', ' ')}", f"{results[key]:.1f} s")
    for entry in results["lab_up"]:  # type: ignore[attr-defined]
        hosts = entry["hosts"]
        table.add_row(f"lab up, {hosts} hosts, cached image", f"{entry['up_seconds']:.1f} s")
        table.add_row(f"lab up again, {hosts} hosts (no change)", f"{entry['up_again_seconds']:.1f} s")
        table.add_row(f"idle machine memory, PSS ({hosts} hosts)", f"{entry['pss_mib_per_machine']:.1f} MiB")
        table.add_row(f"idle machine memory, RSS ({hosts} hosts)", f"{entry['rss_mib_per_machine']:.1f} MiB")
        table.add_row(f"MemAvailable drop per machine ({hosts} hosts)", f"{entry['mem_available_drop_mib_per_machine']:.1f} MiB")
    table.add_row("machines that fit in 24 GiB (by RSS, pessimistic)", str(results["machines_in_24_gib_estimate"]))
    Console().print(table)
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
