"""``moorage lab up|down|status|ssh|inventory``: the lab of real machines (see moorage.lab)."""

from __future__ import annotations

import os

import click
from rich.table import Table

from moorage import lab
from moorage.commands.options import output_option
from moorage.errors import BadInput
from moorage.lab.network import MAX_HOSTS
from moorage.lab.paths import inventory_path, lab_name
from moorage.lab.ssh import command_argv, key_path
from moorage.output import OutputFormat, console, emit_document, emit_result, is_structured
from moorage.reporting import reporter_for


@click.group("lab")
def lab_group() -> None:
    """Real systemd machines on this host (systemd-nspawn), named by MOORAGE_LAB (default: moorage)."""


@lab_group.command("up")
@click.option("--hosts", "host_count", type=click.IntRange(1, MAX_HOSTS), default=4, show_default=True)
@output_option
def up_command(host_count: int, output_format: OutputFormat) -> None:
    """Boot the lab's machines (idempotent: running machines are left alone) and write its inventory."""
    with reporter_for(output_format) as reporter:
        result = lab.up(host_count, reporter)
    if is_structured(output_format):
        emit_result({"ok": True, **result.as_dict()})
        return
    _print_table(result)
    console.print(f"inventory: {result.inventory}")


@lab_group.command("down")
@output_option
def down_command(output_format: OutputFormat) -> None:
    """Stop every machine and remove the lab's bridge, state and inventory."""
    with reporter_for(output_format) as reporter:
        removed = lab.down(reporter)
    if is_structured(output_format):
        emit_result({"ok": True, "name": lab_name(), "removed": removed})
    else:
        console.print(f"lab {lab_name()!r} is down")


@lab_group.command("status")
@output_option
def status_command(output_format: OutputFormat) -> None:
    """Machines, addresses, groups and whether systemd inside is running."""
    result = lab.status()
    if is_structured(output_format):
        emit_document(result.as_dict() if result else {"name": lab_name(), "machines": []})
    elif result is None:
        console.print(f"lab {lab_name()!r} is not up (run `moorage lab up`)")
    else:
        _print_table(result)


@lab_group.command("ssh", context_settings={"ignore_unknown_options": True})
@click.argument("host")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh_command(host: str, command: tuple[str, ...]) -> None:
    """Log in to HOST (lab-1, ...) as root, or run `-- COMMAND ARG...` there, each argument as given.

    Like `kubectl exec`, no shell reads the command: for pipes and `&&`, run `-- sh -c '...'`.
    """
    argv = command_argv(key_path(), lab.machine_address(host), command)
    os.execvp(argv[0], argv)


@lab_group.command("inventory")
@output_option
def inventory_command(output_format: OutputFormat) -> None:
    """Print where the lab's Ansible inventory is, and what it says."""
    path = inventory_path()
    if not path.is_file():
        raise BadInput(f"lab {lab_name()!r} has no inventory at {path}: run `moorage lab up` first")
    if is_structured(output_format):
        emit_document({"path": str(path), "content": path.read_text()})
    else:
        console.print(f"# {path}", markup=False)
        console.print(path.read_text(), markup=False, end="")


def _print_table(result: lab.LabStatus) -> None:
    table = Table(title=f"lab {result.name} · bridge {result.bridge} · {result.subnet}")
    for column in ("host", "address", "groups", "system", "pid", "note"):
        table.add_column(column)
    for machine in result.machines:
        system_style = "green" if machine.system == "running" else "yellow"
        table.add_row(
            machine.hostname,
            machine.address,
            ", ".join(machine.groups),
            f"[{system_style}]{machine.system}[/]",
            str(machine.pid or "-"),
            machine.action,
        )
    console.print(table)


COMMANDS: list[click.Command] = [lab_group]
