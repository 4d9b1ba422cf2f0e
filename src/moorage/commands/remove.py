"""`moorage remove SERVICE`: every instance, file, registration and record of a service gone.

On a terminal it asks first; when stdin is not a terminal (a script, CI) it refuses without
``--yes`` before reaching anything. Exit status: 0 removed; 1 failed on some host (running it
again finishes) or not confirmed; 2 bad input: no ``--yes`` off a terminal, or no such service
(never deployed, or removed already: a removal leaves no trace to tell the two apart);
3 another command holds the service's lock.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import click

from moorage.commands.options import chosen_inventory, inventory_option, lock_wait_option, output_option, site_passwords
from moorage.deploy import operations, removal
from moorage.errors import BadInput, MoorageError
from moorage.output import OutputFormat, console, emit_result, is_structured
from moorage.reporting import reporter_for


class NotConfirmed(MoorageError):
    """The person at the terminal answered no (exit 1): nothing was touched."""


def refuse_without_terminal(service: str, yes: bool, interactive: bool) -> None:
    """BadInput when nobody could be asked: stdin is no terminal and ``--yes`` was not given."""
    if not yes and not interactive:
        raise BadInput(f"remove {service}: stdin is not a terminal, so nobody can confirm: pass --yes to remove it")


@click.command()
@click.argument("service")
@click.option("-y", "--yes", is_flag=True, help="Do not ask (needed when stdin is not a terminal).")
@inventory_option()
@lock_wait_option
@output_option
def remove(service: str, yes: bool, inventory: Path | None, lock_wait: timedelta, output_format: OutputFormat) -> None:
    """Drain, deregister and stop every instance of SERVICE, delete its files, releases and Consul records.

    Exit status: 0 removed, 1 failed or not confirmed, 2 bad input or no such service (also when removed already), 3 locked.
    """
    refuse_without_terminal(service, yes, sys.stdin.isatty())
    with reporter_for(output_format) as reporter:
        inventory_path = chosen_inventory(inventory)
        session = operations.open_session(inventory_path, reporter=reporter, lock_wait=lock_wait, passwords=site_passwords(inventory_path))
        found = removal.survey(session, service)
        if not yes and not click.confirm(found.question(), default=False, err=True):
            raise NotConfirmed(f"{service}: not removed (not confirmed)")
        done = removal.remove(session, found)
    if is_structured(output_format):
        emit_result(done.as_dict())
    else:
        console.print(done.message, markup=False)


COMMANDS: list[click.Command] = [remove]
