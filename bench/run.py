"""moorage's benchmark: one entry point, one table, bench/results.json (``make bench``).

For each lab size (``--sizes``, default 3 and 10 hosts; a lab ``PREFIX-N`` of its own, brought
down at the end unless ``--keep``):

* **platform** (bench/converge.py): ``platform.yml`` converge and no-op re-run, moorage's
  settings vs stock Ansible's, side by side on the same lab; memory per converged machine;
* **deploy** (bench/deploy.py): a first, a rolling and a no-op deploy of each case (examples/hello
  with N instances ``maxParallel`` P: ``--cases``, default 3x1, 10x5 and 20x5; a case runs on a lab with
  room for it, maxPerHost 2), the rolling deploy next to its floor.

On the largest lab (two lb hosts from 4 hosts up):

* **load** (bench/deploy.py ``deploy_under_load``): failed requests and connection errors during a
  rolling deploy of the 3-instance case, for wrk and a pooled client over kept connections and a
  client opening a new connection per request, GET and POST;
* **discovery** (bench/discovery.py): ``--events`` maintenance on/off changes of one instance,
  each timed until every lb's NGINX routes by it (p50/p99).

Controller CPU seconds: per deploy (the moorage process and its children) and for the whole run.
The load average is sampled every 15 s, since other work on the machine changes every time here.

    .venv/bin/python bench/run.py                   # everything: labs of 3 and 10 hosts
    .venv/bin/python bench/run.py --quick           # one 4-host lab, smaller cases, 20 events
    .venv/bin/python bench/run.py --only deploy,discovery --sizes 4 --keep

``--only`` runs some sections and keeps the other sections of an existing results.json (each
section names when it was measured). Needs root (the lab).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import converge  # noqa: E402  (bench/converge.py)
import deploy  # noqa: E402  (bench/deploy.py)
import discovery  # noqa: E402  (bench/discovery.py)
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from moorage.commands.options import site_passwords  # noqa: E402
from moorage.inventory import load_inventory  # noqa: E402
from moorage.lab.ssh import key_path  # noqa: E402
from moorage.lab.vault import password_file  # noqa: E402
from moorage.vault import read_site_secrets  # noqa: E402

RESULTS = BENCH / "results.json"
SECTIONS = ("platform", "deploy", "load", "discovery")
LOAD_CASE = "3x1"


def parse_case(text: str) -> deploy.Case:
    replicas, _, parallel = text.partition("x")
    return deploy.Case(f"bench{replicas}x{parallel}", int(replicas), int(parallel), 8600 + int(replicas))


class LoadSampler:
    """The 1-minute load average every ``every`` seconds while the benchmark runs."""

    def __init__(self, every: float = 15) -> None:
        self.every, self.samples = every, [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        return {"mean": round(sum(self.samples) / len(self.samples), 1), "max": round(max(self.samples), 1), "samples": len(self.samples)}


def machine() -> dict[str, Any]:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    labs_dir = Path(os.environ.get("MOORAGE_STATE_DIR", "/var/lib/moorage")) / "labs"
    running = sorted(path.parents[2].name for path in labs_dir.glob("*/machines/*/pid")) if labs_dir.exists() else []
    return {
        "cpus": os.cpu_count(),
        "mem_total_mib": int(meminfo["MemTotal"].split()[0]) // 1024,
        "mem_available_mib": int(meminfo["MemAvailable"].split()[0]) // 1024,
        "load_average": [round(value, 1) for value in os.getloadavg()],
        "lab_machines_on_host": len(running),  # every lab's, this benchmark's and other users' alike
        "labs_on_host": sorted(set(running)),
    }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def platform_summary(size: converge.SizeResult) -> dict[str, Any]:
    return {
        "measured_at": now(),
        **asdict(size),
        "moorage_converge_seconds": size.seconds("moorage", "converge"),
        "stock_converge_seconds": size.seconds("stock", "converge"),
        "moorage_noop_seconds": size.seconds("moorage", "noop"),
        "stock_noop_seconds": size.seconds("stock", "noop"),
        "noop_moorage_over_stock": converge.ratio(size.seconds("moorage", "noop"), size.seconds("stock", "noop")),
        "moorage_full_noop_seconds": size.seconds("moorage-full", "noop"),
        "noop_moorage_full_over_stock": converge.ratio(size.seconds("moorage-full", "noop"), size.seconds("stock", "noop")),
        "stock_nocp_noop_seconds": size.seconds("stock-nocp", "noop"),
        "noop_moorage_over_stock_nocp": converge.ratio(size.seconds("moorage", "noop"), size.seconds("stock-nocp", "noop")),
        "converge_moorage_over_stock": converge.ratio(size.seconds("moorage", "converge"), size.seconds("stock", "converge")),
    }


def run_size(hosts: int, arguments: argparse.Namespace, document: dict[str, Any], largest: bool, work: Path, save: Any) -> None:
    """One lab size's sections; ``save()`` after each, so what was measured survives a failure or a stop later."""
    lab = f"{arguments.lab_prefix}-{hosts}"
    os.environ["MOORAGE_LAB"] = lab
    sections = arguments.sections
    try:
        if "platform" in sections:
            print(f"[{now()}] platform: {hosts} hosts (lab {lab})", flush=True)
            stock_converge = arguments.stock_converge_sizes is None or hosts in arguments.stock_converge_sizes
            size = converge.bench_size(hosts, lab=lab, keep=True, stock_converge=stock_converge)
            document["platform"]["sizes"].append(platform_summary(size))
            save()
        if not {"deploy", "load", "discovery"} & set(sections):
            return
        inventory, _ = deploy.ensure_lab(hosts)
        lab_hosts = len(load_inventory(inventory, site_passwords(inventory)).hosts("all"))
        start = deploy.app_start_seconds()
        cases = [parse_case(text) for text in arguments.cases.split(",")]
        if "deploy" in sections:
            for case in cases:
                if case.replicas > 2 * lab_hosts:
                    continue
                print(f"[{now()}] deploy: {case.name} on {lab_hosts} hosts", flush=True)
                timing = deploy.bench_case(case, work, start, lab_hosts)
                document["deploy"]["runs"].append({"measured_at": now(), **asdict(timing), "rolling_vs_floor": timing.rolling_vs_floor})
                save()
        if not largest:
            return
        load_case = parse_case(LOAD_CASE)
        if not {"deploy"} & set(sections):  # load and discovery need the 3-instance case deployed
            deploy.moorage("deploy", str(load_case.spec(work)), "--version", f"{time.strftime('%H%M%S')}a")
        lbs = deploy.lbs(inventory)
        if "load" in sections:
            print(f"[{now()}] load: {load_case.name} rolled under load through {lbs[0]}", flush=True)
            result = deploy.deploy_under_load(load_case, work, lbs[0])
            document["load"] = {"measured_at": now(), "lab": lab, "lab_hosts": lab_hosts, **asdict(result)}
            save()
        if "discovery" in sections:
            print(f"[{now()}] discovery: {arguments.events} events on {load_case.name}, {len(lbs)} lbs", flush=True)
            token = read_site_secrets(inventory, [password_file(lab)])["consul_bootstrap_token"]
            found = discovery.bench_discovery(inventory, key_path(lab), token, load_case.name, arguments.events)
            document["discovery"] = {
                "measured_at": now(),
                "lab": lab,
                "lab_hosts": lab_hosts,
                "lbs": found.lbs,
                "service": found.service,
                "all": discovery.summary(found.all_ms()),
                "routed": discovery.summary(found.routed_ms),
                "drained": discovery.summary(found.drained_ms),
                "routed_ms": found.routed_ms,
                "drained_ms": found.drained_ms,
            }
    finally:
        if not arguments.keep:
            deploy.moorage_lab_down()


def table_rows(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for run in document.get("deploy", {}).get("runs", []):
        what = f"rolling deploy, {run['instances']} instances on {run['hosts_used']} hosts"
        what += f", maxParallel {run['max_parallel']} (lab of {run['lab_hosts']})"
        rows.append(
            (
                what,
                f"{run['rolling_seconds']:.1f} s",
                f"floor {run['floor_seconds']:.1f} s ({run['batches']} batches): {run['rolling_vs_floor']:.2f}x",
            )
        )
        rows.append(("  controller CPU of that deploy", f"{run['rolling_cpu_seconds']:.1f} s", ""))
        rows.append(
            (
                f"  no-op re-deploy ({run['instances']} instances)",
                f"{run['noop_seconds']:.1f} s",
                f"Ansible changed {run['noop_ansible_changed']}, CPU {run['noop_cpu_seconds']:.1f} s",
            )
        )
    for size in document.get("platform", {}).get("sizes", []):
        hosts = size["hosts"]
        rows.append(
            (
                f"platform converge, {hosts} hosts: moorage / stock",
                f"{size['moorage_converge_seconds']} s / {size['stock_converge_seconds'] or '(not run)'} s",
                f"{size['converge_moorage_over_stock']}x" if size["stock_converge_seconds"] else "-",
            )
        )
        rows.append(
            (
                f"platform no-op, {hosts} hosts: moorage / stock",
                f"{size['moorage_noop_seconds']} s / {size['stock_noop_seconds']} s",
                f"{size['noop_moorage_over_stock']}x",
            )
        )
        if size.get("moorage_full_noop_seconds"):
            rows.append(
                (
                    f"  no-op, the whole playbook (--full), {hosts} hosts: moorage / stock",
                    f"{size['moorage_full_noop_seconds']} s / {size['stock_noop_seconds']} s",
                    f"{size['noop_moorage_full_over_stock']}x",
                )
            )
        if size.get("stock_nocp_noop_seconds"):
            rows.append(
                (
                    f"  no-op vs stock without ControlPersist, {hosts} hosts",
                    f"{size['moorage_noop_seconds']} s / {size['stock_nocp_noop_seconds']} s",
                    f"{size['noop_moorage_over_stock_nocp']}x",
                )
            )
        cpu = {f"{run['settings']} {run['kind']}": run["controller_cpu_seconds"] for run in size["runs"]}
        rows.append((f"  controller CPU, {hosts} hosts", ", ".join(f"{k} {v:.0f} s" for k, v in cpu.items()), ""))
        if size.get("memory"):
            rows.append(
                (
                    f"  memory per converged machine, {hosts} hosts",
                    f"PSS {size['memory']['pss_mib_per_machine']} MiB",
                    f"RSS {size['memory']['rss_mib_per_machine']} MiB",
                )
            )
    found = document.get("discovery")
    if found:
        for kind, label in (
            ("routed", "maintenance off -> routed by every lb"),
            ("drained", "maintenance on -> routed by no lb"),
            ("all", "all events"),
        ):
            stats = found[kind]
            rows.append(
                (
                    f"discovery: {label} ({stats['count']} events, {len(found['lbs'])} lbs)",
                    f"p50 {stats['p50_ms']:.0f} ms",
                    f"p99 {stats['p99_ms']:.0f} ms",
                )
            )
    load = document.get("load")
    if load:
        rows.append(
            (
                f"requests during a rolling deploy ({load['case']}, {load['deploy_seconds']:.0f} s, lb {load['lb']})",
                "failed",
                "non-2xx / connection errors",
            )
        )
        for client in load["clients"]:
            rows.append(
                (
                    f"  {client['client']} {client['method']}: {client['requests']} requests",
                    str(client["non_2xx"] + client["connection_errors"]),
                    f"{client['non_2xx']} / {client['connection_errors']}",
                )
            )
    for key, label in (("controller_of_merged_run", f"the run of {document.get('merged_from')}"), ("controller", "this run")):
        total = document.get(key)
        if total:
            averages = total["load_average"]
            wall = f"in {total['wall_seconds']:.0f} s wall, load avg mean {averages['mean']} max {averages['max']}"
            rows.append((f"controller CPU, {label}", f"{total['cpu_seconds']:.0f} s", wall))
    return rows


def print_table(document: dict[str, Any]) -> None:
    machine_info = document["machine"]
    title = f"moorage bench ({machine_info['cpus']} CPUs, {machine_info['mem_total_mib']} MiB, {document['generated']})"
    table = Table("measure", "value", "vs", title=title)
    for row in table_rows(document):
        table.add_row(*row)
    Console(width=200).print(table)
    if document.get("merged_from"):
        print(f"rows of other lab sizes and sections as measured by the run of {document['merged_from']} (their measured_at says when)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="3,10", help="lab sizes, comma-separated (default 3,10)")
    parser.add_argument("--cases", default="3x1,10x5,20x5", help="deploy cases INSTANCESxMAXPARALLEL (default 3x1,10x5,20x5)")
    parser.add_argument("--events", type=int, default=60, help="discovery events (default 60: 30 each way)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--quick", action="store_true", help="one 4-host lab, cases 3x1 and 6x2, 20 events")
    parser.add_argument("--lab-prefix", default="bench-run", help="labs are PREFIX-N (default bench-run)")
    parser.add_argument("--keep", action="store_true", help="leave the labs running")
    parser.add_argument("--stock-converge-sizes", help="lab sizes whose converge also runs with stock settings (default: every size)")
    parser.add_argument("--merge", action="store_true", help="keep what results.json holds for other lab sizes and sections")
    arguments = parser.parse_args()
    if arguments.stock_converge_sizes is not None:
        arguments.stock_converge_sizes = {int(size) for size in arguments.stock_converge_sizes.split(",") if size}
    if arguments.quick:
        arguments.sizes, arguments.cases, arguments.events = "4", "3x1,6x2", 20
    arguments.sections = [name.strip() for name in arguments.only.split(",") if name.strip()]
    unknown = set(arguments.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    sizes = sorted(int(size) for size in arguments.sizes.split(","))

    merging = arguments.merge or arguments.only != ",".join(SECTIONS)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() and merging else {}
    document: dict[str, Any] = {
        "generated": now(),
        "machine": machine(),
        "options": {"sizes": sizes, "cases": arguments.cases, "events": arguments.events, "sections": arguments.sections},
        "platform": {
            "measured_at": now(),
            "stock_settings": converge.STOCK_SETTINGS,
            "stock_nocp_settings": converge.STOCK_NO_CONTROLPERSIST_SETTINGS,
            "sizes": [],
        },
        "deploy": {"measured_at": now(), "runs": []},
    }
    started, cpu_before = time.monotonic(), cpu_seconds()

    def save(complete: bool = False) -> None:
        """results.json as far as measured (after each lab size, so a failure later keeps what was measured)."""
        document["complete"] = complete
        document["controller"] = {
            "cpu_seconds": round(cpu_seconds() - cpu_before, 1),
            "wall_seconds": round(time.monotonic() - started, 1),
            "load_average": sampler.summary(),
        }
        document["machine_at_end"] = machine()
        for section in SECTIONS:  # sections not run this time: as measured before
            if section not in arguments.sections and section in previous:
                document[section] = previous[section]
        if arguments.merge:  # other lab sizes of a section run this time: as measured before, marked so
            document["merged_from"] = previous.get("generated")
            document["controller_of_merged_run"] = previous.get("controller")
            keep = [
                {**entry, "measured_at": entry.get("measured_at") or previous.get("generated")}
                for entry in previous.get("platform", {}).get("sizes", [])
                if entry["hosts"] not in sizes
            ]
            document["platform"]["sizes"] = sorted(
                keep + [entry for entry in document["platform"]["sizes"] if entry not in keep], key=lambda entry: entry["hosts"]
            )
            runs = [
                {**run, "measured_at": run.get("measured_at") or previous.get("generated")}
                for run in previous.get("deploy", {}).get("runs", [])
                if run["lab_hosts"] not in sizes
            ]
            document["deploy"]["runs"] = runs + [run for run in document["deploy"]["runs"] if run not in runs]
            for section in ("load", "discovery"):
                if section not in document and section in previous:
                    document[section] = previous[section]
        document["table"] = [list(row) for row in table_rows(document)]
        RESULTS.write_text(json.dumps(document, indent=2) + "\n")

    with LoadSampler() as sampler, tempfile.TemporaryDirectory(prefix="moorage-bench-") as work:
        for size in sizes:
            run_size(size, arguments, document, size == sizes[-1], Path(work), save)
            save(complete=size == sizes[-1])
    print_table(document)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
