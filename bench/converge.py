"""Platform benchmark: converge and no-op re-run of platform.yml, moorage's settings vs stock Ansible's.

For each lab size (its own lab, ``PREFIX-N``; PREFIX is ``$MOORAGE_LAB`` or ``bench-platform``):

1. a fresh lab; the stock settings converge it (timed);
2. a fresh lab again; ``moorage platform up`` converges it (timed), then the no-op re-runs are timed
   side by side on that converged lab: ``moorage platform up`` as a user runs it (every host asked
   whether it holds its last converge; all do, so platform.yml does not run), ``moorage platform up
   --full`` (the whole playbook with moorage's settings), the same playbook with stock Ansible
   settings and, with ``--factcache``, moorage's settings with a fact cache of the bench's own
   (moorage keeps one per inventory since runner.py hands ansible-runner the directory;
   ansible-runner overwrote the environment variable before).

Stock settings: Ansible's defaults, nothing tuned: no pipelining, its default ``ssh_args``
(``-C -o ControlMaster=auto -o ControlPersist=60s``, so SSH connections are kept between tasks),
forks 5, fact gathering "implicit" (every play that asks), no fact cache. The no-op also runs
with ``stock-nocp``: the same with ControlPersist off (``ControlMaster=no``/``ControlPath=none`` come
first in ``ANSIBLE_SSH_ARGS``; ssh keeps the first value of an option, so the lab inventory's own
ControlPersist has no effect), the baseline of the runs before 2026-12-04, which overstated what
moorage's settings buy. Same playbook, same inventory, same extra variables, all through
ansible-runner.

Prints a table and writes bench/results/platform.json (wall seconds, changed tasks, controller CPU
seconds of ansible-playbook and its children, the load average). Needs root; a 10-host lab takes
both cores of this machine for a while: run it once, not in a loop.

    .venv/bin/python bench/converge.py [--sizes 3,10] [--repeat 1] [--factcache] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner
from lab import memory_mib_per_machine  # bench/lab.py, beside this file
from rich.console import Console
from rich.table import Table

from moorage import paths
from moorage.lab.vault import password_for
from moorage.runner import ansible_envvars
from moorage.vault import site_vault_file

RESULTS = Path(__file__).parent / "results" / "platform.json"
MOORAGE = str(Path(sys.executable).parent / "moorage")
PLATFORM_PLAYBOOK = "platform.yml"

# Stock Ansible, as the issue states it: Ansible's own defaults (spelled out; ssh_args left to
# Ansible), only what is needed to find moorage's roles is set.
STOCK_SETTINGS = {
    "ANSIBLE_PIPELINING": "False",
    "ANSIBLE_FORKS": "5",
    "ANSIBLE_GATHERING": "implicit",
    "ANSIBLE_NOCOLOR": "True",
}
# The earlier baseline: stock with every task opening its own SSH connections.
STOCK_NO_CONTROLPERSIST_SETTINGS = {**STOCK_SETTINGS, "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=no -o ControlPath=none"}


@dataclass
class Run:
    settings: str  # moorage | moorage-full | stock | stock-nocp | moorage+factcache
    kind: str  # converge | noop
    seconds: float
    changed: int
    controller_cpu_seconds: float
    load_average: float


@dataclass
class SizeResult:
    hosts: int
    runs: list[Run] = field(default_factory=list)
    memory: dict[str, float] = field(default_factory=dict)  # per machine once moorage converged the lab (bench/lab.py)

    def seconds(self, settings: str, kind: str) -> float | None:
        times = [run.seconds for run in self.runs if run.settings == settings and run.kind == kind]
        return round(statistics.median(times), 1) if times else None

    def changed(self, settings: str, kind: str) -> int | None:
        counts = [run.changed for run in self.runs if run.settings == settings and run.kind == kind]
        return max(counts) if counts else None


def clean_environment() -> dict[str, str]:
    """This process's environment without any ANSIBLE_* a caller may have exported."""
    return {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}


def moorage(lab: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**clean_environment(), "MOORAGE_LAB": lab}
    return subprocess.run([MOORAGE, *args], capture_output=True, text=True, env=environment, timeout=7200)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(settings: str, kind: str, action: Callable[[], int]) -> Run:
    cpu_before, started = children_cpu_seconds(), time.monotonic()
    changed = action()
    return Run(
        settings=settings,
        kind=kind,
        seconds=round(time.monotonic() - started, 1),
        changed=changed,
        controller_cpu_seconds=round(children_cpu_seconds() - cpu_before, 1),
        load_average=round(os.getloadavg()[0], 1),
    )


def moorage_platform_up(lab: str, inventory: Path, *options: str) -> int:
    """`moorage platform up [OPTIONS]` as a user runs it; the number of changed tasks."""
    completed = moorage(lab, "platform", "up", "-i", str(inventory), "--output", "json", *options)
    if completed.returncode != 0:
        raise SystemExit(f"{lab}: moorage platform up failed: {completed.stdout[-1500:]}{completed.stderr[-1500:]}")
    result = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith('{"event": "result"')][-1]
    return sum(stats["changed"] for stats in result["hosts"].values())


def ansible_platform_up(inventory: Path, settings: dict[str, str], fact_cache: Path | None = None) -> int:
    """platform.yml through ansible-runner with the given settings; the number of changed tasks."""
    envvars = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]),
        "ANSIBLE_ROLES_PATH": str(paths.roles_dir()),
        **settings,
    }
    extra: dict[str, Any] = {"fact_cache": str(fact_cache)} if fact_cache else {}
    password = password_for(inventory)  # the lab's vault password: the site's secrets are in its inventory (moorage.vault)
    if password is None:
        raise SystemExit(f"{inventory}: not a lab's inventory (the benchmark runs on its own labs)")
    with tempfile.TemporaryDirectory(prefix="moorage-bench-") as private_data_dir:
        saved_environment = dict(os.environ)
        os.environ.clear()
        os.environ.update(clean_environment())
        try:
            runner = ansible_runner.run(
                private_data_dir=private_data_dir,
                playbook=str(paths.playbook(PLATFORM_PLAYBOOK)),
                inventory=str(inventory),
                extravars={"consul_vault_password_file": str(password)},
                cmdline=f"--vault-password-file {password}",
                envvars=envvars,
                quiet=True,
                suppress_env_files=True,
                **extra,
            )
        finally:
            os.environ.clear()
            os.environ.update(saved_environment)
        if runner.rc != 0:
            raise SystemExit(f"platform.yml failed with {settings}: rc {runner.rc}, {runner.stdout.read()[-2000:]}")
        return sum((runner.stats or {}).get("changed", {}).values())


def fresh_lab(lab: str, hosts: int) -> Path:
    moorage(lab, "lab", "down")  # from bare machines
    up = moorage(lab, "lab", "up", "--hosts", str(hosts), "--output", "json")
    if up.returncode != 0:
        raise SystemExit(f"{lab}: lab up failed: {up.stderr[-1500:]}")
    inventory = Path(json.loads(moorage(lab, "lab", "inventory", "--output", "json").stdout)["path"])
    site_vault_file(inventory).unlink(missing_ok=True)  # a new cluster: new secrets, like a new site
    return inventory


def bench_size(
    hosts: int, *, repeat: int = 1, factcache: bool = False, keep: bool = False, lab: str | None = None, stock_converge: bool = True
) -> SizeResult:
    """One lab size: the stock converge on a fresh lab, then moorage's converge on a fresh lab and the no-op runs on it.

    Moorage's converge comes last so that ``keep`` leaves a lab converged by ``moorage platform up``
    (run.py deploys on it next). Without ``stock_converge`` the stock settings run only the no-op.
    """
    lab = lab or f"{os.environ.get('MOORAGE_LAB') or 'bench-platform'}-{hosts}"
    result = SizeResult(hosts=hosts)
    try:
        if stock_converge:
            inventory = fresh_lab(lab, hosts)
            result.runs.append(measured("stock", "converge", lambda: ansible_platform_up(inventory, STOCK_SETTINGS)))
        inventory = fresh_lab(lab, hosts)
        result.runs.append(measured("moorage", "converge", lambda: moorage_platform_up(lab, inventory)))
        result.memory = memory_mib_per_machine(lab)
        cache_dir = Path(tempfile.mkdtemp(prefix="moorage-bench-facts-"))
        if factcache:  # fill the cache once; the timed runs below then find it
            ansible_platform_up(inventory, ansible_envvars(), fact_cache=cache_dir)
        for _ in range(repeat):
            result.runs.append(measured("moorage", "noop", lambda: moorage_platform_up(lab, inventory)))
            result.runs.append(measured("moorage-full", "noop", lambda: moorage_platform_up(lab, inventory, "--full")))
            result.runs.append(measured("stock", "noop", lambda: ansible_platform_up(inventory, STOCK_SETTINGS)))
            result.runs.append(measured("stock-nocp", "noop", lambda: ansible_platform_up(inventory, STOCK_NO_CONTROLPERSIST_SETTINGS)))
            if factcache:
                run = measured("moorage+factcache", "noop", lambda: ansible_platform_up(inventory, ansible_envvars(), fact_cache=cache_dir))
                result.runs.append(run)
        shutil.rmtree(cache_dir, ignore_errors=True)
    finally:
        if not keep:
            moorage(lab, "lab", "down")
    return result


def ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.2f}" if numerator and denominator else "-"


def print_table(results: list[SizeResult], settings: list[str]) -> None:
    table = Table("hosts", "settings", "converge (s)", "changed", "no-op (s)", "changed", "no-op / stock no-op", title="platform.yml")
    for size in results:
        stock_noop = size.seconds("stock", "noop")
        for name in settings:
            noop = size.seconds(name, "noop")
            cells = [size.seconds(name, "converge"), size.changed(name, "converge"), noop, size.changed(name, "noop")]
            table.add_row(str(size.hosts), name, *("-" if cell is None else str(cell) for cell in cells), ratio(noop, stock_noop))
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="3,10", help="comma-separated lab sizes (default 3,10)")
    parser.add_argument("--repeat", type=int, default=1, help="no-op runs per settings (the median is shown)")
    parser.add_argument("--factcache", action="store_true", help="also moorage's settings with facts kept across runs")
    parser.add_argument("--keep", action="store_true", help="leave the labs running")
    arguments = parser.parse_args()
    settings = ["moorage", "moorage-full", "stock", "stock-nocp"] + (["moorage+factcache"] if arguments.factcache else [])
    results = [
        bench_size(int(size), repeat=arguments.repeat, factcache=arguments.factcache, keep=arguments.keep)
        for size in arguments.sizes.split(",")
    ]
    print_table(results, settings)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "platform",
        "stock_settings": STOCK_SETTINGS,
        "stock_nocp_settings": STOCK_NO_CONTROLPERSIST_SETTINGS,
        "cpus": os.cpu_count(),
        "sizes": [asdict(size) for size in results],
        "summary": [
            {
                "hosts": size.hosts,
                **{f"{name}_{kind}_seconds": size.seconds(name, kind) for name in settings for kind in ("converge", "noop")},
                "noop_moorage_over_stock": ratio(size.seconds("moorage", "noop"), size.seconds("stock", "noop")),
                "noop_moorage_over_stock_nocp": ratio(size.seconds("moorage", "noop"), size.seconds("stock-nocp", "noop")),
                "noop_moorage_full_over_stock": ratio(size.seconds("moorage-full", "noop"), size.seconds("stock", "noop")),
            }
            for size in results
        ],
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
