"""`moorage platform up`: make the hosts of an inventory a moorage platform (moorage.platform_up)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from moorage.commands.options import chosen_inventory, inventory_option, output_option, site_passwords, vault_password_option
from moorage.output import OutputFormat, console, emit_result, is_structured
from moorage.platform_up import PlatformUp, failure_error, platform_up
from moorage.reporting import reporter_for


@click.group("platform")
def platform_group() -> None:
    """The shared platform: Consul, NGINX ingress, Prometheus, node_exporter, logging, Docker."""


@platform_group.command("up")
@inventory_option()
@vault_password_option
@click.option("--check", is_flag=True, help="Show what would change; change nothing.")
@click.option("--full", is_flag=True, help="Run the whole playbook even when every host holds its last converge.")
@output_option
def up(inventory: Path | None, vault_password_file: Path | None, check: bool, full: bool, output_format: OutputFormat) -> None:
    """Install and configure the platform on every host of the inventory (idempotent).

    Hosts that still hold what their last converge left (same roles, playbooks and inventory;
    the files, units and packages it managed unchanged) need nothing: when every host does, the
    playbook does not run. Anything that differs converges every host.
    """
    inventory_path = chosen_inventory(inventory)
    passwords = site_passwords(inventory_path, vault_password_file)
    with reporter_for(output_format) as reporter:
        run = platform_up(inventory_path, passwords, reporter, check=check, full=full)
    if is_structured(output_format):
        emit_result({"check": check, **run.as_dict()})
    else:
        print_summary(run, check=check)
    if not run.result.succeeded:
        raise failure_error(run.result)


def print_summary(run: PlatformUp, *, check: bool) -> None:
    result = run.result
    if not run.converged:
        console.print(
            f"platform up: {len(result.hosts)} hosts hold their last converge "
            "(same roles, playbooks and inventory; its files, units and packages unchanged): nothing to do "
            "(--full runs the playbook anyway)"
        )
        return
    table = Table("host", "ok", "changed", "failed", "unreachable", box=None, pad_edge=False)
    for host, stats in sorted(result.hosts.items()):
        table.add_row(host, str(stats.ok), str(stats.changed), str(stats.failed), str(stats.unreachable))
    if result.hosts:
        console.print(table)
    if result.succeeded:
        verb = "would change" if check else "changed"
        console.print(f"platform up: {len(result.hosts)} hosts converged, {verb} {result.changed} tasks")


COMMANDS: list[click.Command] = [platform_group]
