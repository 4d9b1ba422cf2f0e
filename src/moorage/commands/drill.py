"""``moorage lab check SPEC...`` and ``moorage drill SITE``: is it really there, and can it be rebuilt?"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from moorage.commands.lab import lab_group
from moorage.commands.options import output_option
from moorage.errors import BadInput, MoorageError
from moorage.inventory import load_inventory
from moorage.lab.checks import LabChecks, ServiceCheck
from moorage.lab.drill import DrillReport, run_drill
from moorage.lab.paths import inventory_path, lab_name
from moorage.lab.ssh import key_path
from moorage.lab.vault import password_file as lab_password_file
from moorage.output import OutputFormat, console, emit_result, is_structured
from moorage.reporting import reporter_for
from moorage.spec.loader import load_spec


class ChecksFailed(MoorageError):
    """A check a person would make by hand failed (exit 1)."""


@lab_group.command("check")
@click.argument("spec_files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--logs", is_flag=True, help="Also look for a request's log line on the logging host.")
@output_option
def check_command(spec_files: tuple[Path, ...], logs: bool, output_format: OutputFormat) -> None:
    """Check deployed services on the lab as a person would: route through NGINX, Consul DNS, Prometheus targets."""
    specs = [load_spec(path) for path in spec_files]
    if not inventory_path().is_file():
        raise BadInput(f"lab {lab_name()!r} is not up (run `moorage lab up`)")
    checks = LabChecks(load_inventory(inventory_path(), [lab_password_file()]), key_path())
    results = [result for spec in specs for result in checks.service(spec, logs=logs)]
    failed = [result for result in results if not result.passed]
    if is_structured(output_format):
        emit_result({"ok": not failed, "checks": [result.as_dict() for result in results]})
    else:
        _print_checks(results)
    if failed:
        summary = "; ".join(f"{result.service} {result.check}: {result.saw}" for result in failed)
        raise ChecksFailed(f"{len(failed)} of {len(results)} checks failed: {summary}")


@click.command("drill")
@click.argument("site", type=click.Path(path_type=Path))
@click.option("--keep", is_flag=True, help="Leave the drill's lab up afterwards (MOORAGE_LAB=<lab>-drill reaches it).")
@output_option
def drill_command(site: Path, keep: bool, output_format: OutputFormat) -> None:
    """Rebuild SITE on a fresh lab from its files, check every service, tear it down, report the time."""
    with reporter_for(output_format) as reporter:
        report = run_drill(site, reporter, keep=keep)
    if is_structured(output_format):
        emit_result(report.as_dict())
    else:
        _print_report(report)
    if not report.ok:
        failed = [step.name for step in report.steps if not step.ok] + [f"{c.service} {c.check}" for c in report.checks if not c.passed]
        raise ChecksFailed(f"drill of {site} failed: {', '.join(failed) or 'no service was checked'}")


def _print_checks(results: list[ServiceCheck]) -> None:
    for result in results:
        mark = "[green]ok[/]  " if result.passed else "[red]FAIL[/]"
        console.print(f"{mark}  {result.service} {result.check}: ", end="")
        console.print(f"{result.what}\n        {result.saw}", markup=False)


def _print_report(report: DrillReport) -> None:
    table = Table(title=f"drill of {report.site} on lab {report.lab} ({report.hosts} hosts)")
    for column in ("step", "ok", "seconds", "result"):
        table.add_column(column)
    for step in report.steps:
        table.add_row(step.name, "ok" if step.ok else "[red]FAILED[/]", f"{step.seconds:.1f}", step.detail)
    console.print(table)
    _print_checks(report.checks)
    rebuilt = "not rebuilt" if report.rebuild_seconds is None else f"rebuilt in {report.rebuild_seconds:.0f} s"
    console.print(f"{report.site}: {rebuilt}; {sum(c.passed for c in report.checks)} of {len(report.checks)} checks passed")


COMMANDS: list[click.Command] = [drill_command]
