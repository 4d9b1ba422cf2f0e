"""`moorage deploy | plan | status | releases | rollback | scale | promote | logs`.

Each command parses its arguments, calls one function of ``moorage.deploy.operations`` with a
session opened once, and prints what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import click
from rich.table import Table

from moorage.commands.options import (
    VaultOptions,
    chosen_inventory,
    inventory_option,
    lock_wait_option,
    output_option,
    secrets_options,
    site_passwords,
)
from moorage.deploy import operations
from moorage.deploy.operations import Outcome, RolloutFailed, Session
from moorage.deploy.steps import StepResult, command_failed
from moorage.errors import EXIT_CHANGES_PENDING, EXIT_OK, BadInput, MoorageError
from moorage.junit import write_junit
from moorage.output import OutputFormat, console, emit_document, emit_result, is_structured
from moorage.reporting import reporter_for
from moorage.spec.units import MAX_COUNT


def _rollout(
    output_format: OutputFormat,
    inventory: Path | None,
    vault: VaultOptions,
    lock_wait: timedelta,
    work: Callable[[Session], Outcome],
    junit: _JunitReport | None = None,
) -> None:
    """Open the session, do the work with progress shown, print the outcome (a failed rollout too).

    With ``junit`` the steps also go to a JUnit file, whatever the end: a command that failed before
    any step of its own gets one failed case saying why.
    """
    steps: list[StepResult] = []
    with reporter_for(output_format) as reporter:
        try:
            inventory_path = chosen_inventory(inventory)
            passwords = vault.site_passwords(inventory_path)
            session = operations.open_session(
                inventory_path, reporter=reporter, secrets=vault.secrets, lock_wait=lock_wait, passwords=passwords
            )
            steps = session.context.steps.results
            outcome = work(session)
        except MoorageError as error:
            failed_outcome = error.outcome if isinstance(error, RolloutFailed) else None
            if junit is not None:
                junit.write(steps, failed_outcome, error)
            if failed_outcome is not None and is_structured(output_format):
                emit_result({**failed_outcome.as_dict(), "steps": [step.as_dict() for step in steps], "exit_code": error.exit_code})
                raise SystemExit(error.exit_code) from None
            raise
    if junit is not None:
        junit.write(steps, outcome, None)
    if is_structured(output_format):
        emit_result({**outcome.as_dict(), "steps": [step.as_dict() for step in steps]})
    else:
        console.print(outcome.message, markup=False)


@dataclass(frozen=True)
class _JunitReport:
    """``--junit FILE``: where the report goes, and what the command was (its suite's name when no step names the service)."""

    path: Path
    command: str

    def write(self, steps: list[StepResult], outcome: Outcome | None, error: MoorageError | None) -> None:
        results = list(steps)
        if error is not None and not any(step.failed for step in results):
            results.append(command_failed(self.command, error))
        service = next((step.service for step in results if step.service), None)
        properties = {"command": self.command, "exit_code": str(EXIT_OK if error is None else error.exit_code)}
        if outcome is not None and outcome.release is not None:
            release = outcome.release
            properties |= {"service": release.service.name, "release": str(release.number), "version": release.version}
            properties |= {"status": release.status, "commit": release.commit or "", "note": release.note}
        suite = f"moorage deploy {service}" if service else self.command
        try:
            write_junit(self.path, suite, results, properties=properties)
        except OSError as problem:
            raise MoorageError(f"--junit {self.path}: cannot write the report: {problem.strerror or problem}") from None


def _session(inventory: Path | None) -> Session:
    """A session for commands that only read (no progress, no secrets, no lock)."""
    inventory_path = chosen_inventory(inventory)
    return operations.open_session(inventory_path, passwords=site_passwords(inventory_path))


@click.command()
@click.argument("spec_file", type=click.Path(path_type=Path))
@inventory_option()
@click.option(
    "--version", "version", default=None, help="The version instances get as MOORAGE_VERSION (default: a hash of artifact and spec)."
)
@click.option(
    "--canary",
    type=click.IntRange(min=1),
    default=None,
    help="Start N instances of the new release beside the old; `moorage promote` rolls the rest, `moorage rollback` drops them.",
)
@click.option("--note", default="", help="Why this release: recorded with it and shown by `moorage releases`.")
@click.option("--commit", default=None, help="The source commit this release was built from: recorded with it.")
@click.option(
    "--junit",
    "junit",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the rollout as a JUnit XML report to FILE: a case per step, batch and health gate (for CI servers).",
)
@secrets_options
@lock_wait_option
@output_option
def deploy(
    spec_file: Path,
    inventory: Path | None,
    version: str | None,
    canary: int | None,
    note: str,
    commit: str | None,
    junit: Path | None,
    vault: VaultOptions,
    lock_wait: timedelta,
    output_format: OutputFormat,
) -> None:
    """Roll SPEC_FILE out: health-gated, batch by batch, reverting on failure.

    Exit status: 0 deployed (or no change), 1 failed (reverted when autoRevert), 2 bad input (nothing touched), 3 locked.
    """
    report = None if junit is None else _JunitReport(junit, f"moorage deploy {spec_file}")
    _rollout(
        output_format,
        inventory,
        vault,
        lock_wait,
        lambda session: operations.deploy(session, spec_file, version, canary, note, commit),
        report,
    )


@click.command()
@click.argument("spec_file", type=click.Path(path_type=Path))
@inventory_option()
@click.option("--version", "version", default=None, help="The version a deploy would give (default: a hash of artifact and spec).")
@output_option
@click.pass_context
def plan(context: click.Context, spec_file: Path, inventory: Path | None, version: str | None, output_format: OutputFormat) -> None:
    """What a deploy of SPEC_FILE would change, per host (changes nothing).

    Exit status: 0 no change, 4 changes pending, 2 bad input, 1 failed.
    """
    preview = operations.preview(_session(inventory), spec_file, version)
    if is_structured(output_format):
        emit_document(preview.as_dict())
    else:
        table = Table("host", "instance", "port", "action")
        for change in preview.changes.instances:
            table.add_row(change.host, change.instance, str(change.port), change.action)
        console.print(table)
        changing = len(preview.changes.changing)
        console.print(
            f"{preview.service}: {changing} instance(s) would change" if preview.changes.pending else f"{preview.service}: no change"
        )
    if preview.changes.pending:
        context.exit(EXIT_CHANGES_PENDING)


@click.command()
@click.argument("service", required=False)
@inventory_option()
@output_option
def status(service: str | None, inventory: Path | None, output_format: OutputFormat) -> None:
    """Instances of SERVICE (or of every moorage service): host, port, release, version, health, since."""
    rows = [{"service": name, **row.as_dict()} for name, row in operations.instances(_session(inventory), service)]
    if is_structured(output_format):
        emit_document({"instances": rows})
        return
    table = Table("service", "instance", "host", "port", "release", "version", "health", "since")
    for row in rows:
        table.add_row(*(str(row[key]) for key in ("service", "instance", "host", "port", "release", "version", "health", "since")))
    console.print(table)


@click.command()
@click.argument("service")
@inventory_option()
@output_option
def releases(service: str, inventory: Path | None, output_format: OutputFormat) -> None:
    """The kept releases of SERVICE (newest last)."""
    kept = operations.releases(_session(inventory), service)
    if is_structured(output_format):
        emit_document({"service": service, "releases": [release.summary() for release in kept]})
        return
    table = Table("release", "version", "commit", "status", "created", "by", "note")
    for release in kept:
        commit = "" if release.commit is None else release.commit[:12]
        table.add_row(str(release.number), release.version, commit, release.status, release.created, release.by, release.note)
    console.print(table)


@click.command()
@click.argument("service")
@click.option("--to", "to", type=int, default=None, help="Release number (default: the previous deployed one).")
@inventory_option()
@secrets_options
@lock_wait_option
@output_option
def rollback(
    service: str,
    to: int | None,
    inventory: Path | None,
    vault: VaultOptions,
    lock_wait: timedelta,
    output_format: OutputFormat,
) -> None:
    """Roll SERVICE back to an earlier release (as a new release, the same rolling way); a canary still out is dropped."""
    _rollout(output_format, inventory, vault, lock_wait, lambda session: operations.rollback(session, service, to))


@click.command()
@click.argument("assignment", metavar="SERVICE=N")
@inventory_option()
@secrets_options
@lock_wait_option
@output_option
def scale(
    assignment: str,
    inventory: Path | None,
    vault: VaultOptions,
    lock_wait: timedelta,
    output_format: OutputFormat,
) -> None:
    """Add or remove instances without touching the others."""
    name, _, count = assignment.partition("=")
    if not name or not count.isascii() or not count.isdigit():
        raise BadInput(f"{assignment!r}: expected SERVICE=N, e.g. hello=5")
    if int(count) > MAX_COUNT:
        raise BadInput(f"{assignment!r}: at most {MAX_COUNT} instances")
    _rollout(output_format, inventory, vault, lock_wait, lambda session: operations.scale(session, name, int(count)))


@click.command()
@click.argument("service")
@inventory_option()
@secrets_options
@lock_wait_option
@output_option
def promote(
    service: str,
    inventory: Path | None,
    vault: VaultOptions,
    lock_wait: timedelta,
    output_format: OutputFormat,
) -> None:
    """Roll SERVICE's instances to its canary release, then remove the canaries."""
    _rollout(output_format, inventory, vault, lock_wait, lambda session: operations.promote(session, service))


@click.command()
@click.argument("service")
@inventory_option()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--since", default=None, help="journalctl --since, e.g. '10 min ago'.")
@output_option
def logs(service: str, inventory: Path | None, follow: bool, since: str | None, output_format: OutputFormat) -> None:
    """The journal of SERVICE's instances on every host, prefixed by host (over SSH); -o json: one {"host", "line"} per line."""

    def show(host: str, line: str) -> None:
        if is_structured(output_format):
            emit_document({"host": host, "line": line})
        else:
            console.print(f"{host} {line}", markup=False)

    operations.logs(_session(inventory), service, show, follow=follow, since=since)


COMMANDS: list[click.Command] = [deploy, plan, status, releases, rollback, scale, promote, logs]
