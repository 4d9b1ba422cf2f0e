"""`moorage deploy | plan | status | releases | rollback | scale | promote | logs`.

Each command parses its arguments, calls one function of ``moorage.deploy.operations`` with a
session opened once, and prints what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import click
from rich.table import Table

from moorage.commands.options import chosen_inventory, inventory_option, lock_wait_option, output_option, secrets_options
from moorage.deploy import operations
from moorage.deploy.connection import SecretsFile
from moorage.deploy.operations import Outcome, RolloutFailed, Session
from moorage.errors import EXIT_CHANGES_PENDING, BadInput
from moorage.output import OutputFormat, console, emit_document, emit_result, is_structured
from moorage.reporting import reporter_for
from moorage.spec.units import MAX_COUNT


def _rollout(
    output_format: OutputFormat,
    inventory: Path | None,
    secrets: SecretsFile | None,
    lock_wait: timedelta,
    work: Callable[[Session], Outcome],
) -> None:
    """Open the session, do the work with progress shown, print the outcome (a failed rollout too)."""
    with reporter_for(output_format) as reporter:
        session = operations.open_session(chosen_inventory(inventory), reporter=reporter, secrets=secrets, lock_wait=lock_wait)
        try:
            outcome = work(session)
        except RolloutFailed as failed:
            if is_structured(output_format):
                emit_result({**failed.outcome.as_dict(), "exit_code": failed.exit_code})
                raise SystemExit(failed.exit_code) from None
            raise
    if is_structured(output_format):
        emit_result(outcome.as_dict())
    else:
        console.print(outcome.message, markup=False)


def _session(inventory: Path | None) -> Session:
    """A session for commands that only read (no progress, no secrets, no lock)."""
    return operations.open_session(chosen_inventory(inventory))


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
@secrets_options
@lock_wait_option
@output_option
def deploy(
    spec_file: Path,
    inventory: Path | None,
    version: str | None,
    canary: int | None,
    secrets: SecretsFile | None,
    lock_wait: timedelta,
    output_format: OutputFormat,
) -> None:
    """Roll SPEC_FILE out: health-gated, batch by batch, reverting on failure."""
    _rollout(output_format, inventory, secrets, lock_wait, lambda session: operations.deploy(session, spec_file, version, canary))


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
    table = Table("release", "version", "status", "created", "by", "note")
    for release in kept:
        table.add_row(str(release.number), release.version, release.status, release.created, release.by, release.note)
    console.print(table)


@click.command()
@click.argument("service")
@click.option("--to", "to", type=int, default=None, help="Release number (default: the previous deployed one).")
@inventory_option()
@secrets_options
@lock_wait_option
@output_option
def rollback(
    service: str, to: int | None, inventory: Path | None, secrets: SecretsFile | None, lock_wait: timedelta, output_format: OutputFormat
) -> None:
    """Roll SERVICE back to an earlier release (as a new release, the same rolling way); a canary still out is dropped."""
    _rollout(output_format, inventory, secrets, lock_wait, lambda session: operations.rollback(session, service, to))


@click.command()
@click.argument("assignment", metavar="SERVICE=N")
@inventory_option()
@secrets_options
@lock_wait_option
@output_option
def scale(assignment: str, inventory: Path | None, secrets: SecretsFile | None, lock_wait: timedelta, output_format: OutputFormat) -> None:
    """Add or remove instances without touching the others."""
    name, _, count = assignment.partition("=")
    if not name or not count.isascii() or not count.isdigit():
        raise BadInput(f"{assignment!r}: expected SERVICE=N, e.g. hello=5")
    if int(count) > MAX_COUNT:
        raise BadInput(f"{assignment!r}: at most {MAX_COUNT} instances")
    _rollout(output_format, inventory, secrets, lock_wait, lambda session: operations.scale(session, name, int(count)))


@click.command()
@click.argument("service")
@inventory_option()
@secrets_options
@lock_wait_option
@output_option
def promote(service: str, inventory: Path | None, secrets: SecretsFile | None, lock_wait: timedelta, output_format: OutputFormat) -> None:
    """Roll SERVICE's instances to its canary release, then remove the canaries."""
    _rollout(output_format, inventory, secrets, lock_wait, lambda session: operations.promote(session, service))


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
