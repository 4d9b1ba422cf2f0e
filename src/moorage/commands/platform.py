"""`moorage platform up`: make the hosts of an inventory a moorage platform (moorage.platform_up)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from moorage.commands.options import chosen_inventory, inventory_option, output_option, site_passwords, vault_password_option
from moorage.output import OutputFormat, console, emit_result, is_structured
from moorage.platform_up import failure_error, platform_up
from moorage.reporting import reporter_for
from moorage.runner import PlaybookResult


@click.group("platform")
def platform_group() -> None:
    """The shared platform: Consul, NGINX ingress, Prometheus, node_exporter, logging, Docker."""


@platform_group.command("up")
@inventory_option()
@vault_password_option
@click.option("--check", is_flag=True, help="Show what would change; change nothing.")
@output_option
def up(inventory: Path | None, vault_password_file: Path | None, check: bool, output_format: OutputFormat) -> None:
    """Install and configure the platform on every host of the inventory (idempotent)."""
    inventory_path = chosen_inventory(inventory)
    passwords = site_passwords(inventory_path, vault_password_file)
    with reporter_for(output_format) as reporter:
        result = platform_up(inventory_path, passwords, reporter, check=check)
    if is_structured(output_format):
        emit_result({"check": check, **result.as_dict()})
    else:
        print_summary(result, check=check)
    if not result.succeeded:
        raise failure_error(result)


def print_summary(result: PlaybookResult, *, check: bool) -> None:
    table = Table("host", "ok", "changed", "failed", "unreachable", box=None, pad_edge=False)
    for host, stats in sorted(result.hosts.items()):
        table.add_row(host, str(stats.ok), str(stats.changed), str(stats.failed), str(stats.unreachable))
    if result.hosts:
        console.print(table)
    if result.succeeded:
        verb = "would change" if check else "changed"
        console.print(f"platform up: {len(result.hosts)} hosts converged, {verb} {result.changed} tasks")


COMMANDS: list[click.Command] = [platform_group]
