"""`moorage platform up`: make the hosts of an inventory a moorage platform (playbooks/platform.yml)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from moorage.errors import BadInput, MoorageError
from moorage.inventory import resolve_inventory
from moorage.output import console, emit_result, output_option
from moorage.progress import JsonEventReporter, LiveProgressReporter
from moorage.runner import PlaybookResult, run_playbook
from moorage.vault import secrets_dir

PLATFORM_PLAYBOOK = "platform.yml"
PREFLIGHT_PLAY = "Preflight"  # the first play of platform.yml; a failure there changed nothing


@click.group("platform")
def platform_group() -> None:
    """The shared platform: Consul, NGINX ingress, Prometheus, node_exporter, logging, Docker."""


@platform_group.command("up")
@click.option("-i", "--inventory", type=click.Path(path_type=Path), help="Ansible inventory (default: the running lab's).")
@click.option("--check", is_flag=True, help="Show what would change; change nothing.")
@output_option
def up(inventory: Path | None, check: bool, output_format: str) -> None:
    """Install and configure the platform on every host of the inventory (idempotent)."""
    inventory_path = resolve_inventory(inventory)
    extravars = {"moorage_platform_secrets_dir": str(secrets_dir(inventory_path))}
    if output_format == "json":
        result = run_playbook(PLATFORM_PLAYBOOK, inventory_path, extravars, check=check, reporter=JsonEventReporter())
        emit_result({"check": check, **result.as_dict()})
    else:
        with LiveProgressReporter() as reporter:
            result = run_playbook(PLATFORM_PLAYBOOK, inventory_path, extravars, check=check, reporter=reporter)
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


def failure_error(result: PlaybookResult) -> MoorageError:
    """One line that names the host (and the group or variable, from the failed assertion)."""
    if not result.failures:
        return MoorageError(f"platform up failed: {ansible_error(result)}")
    first = result.failures[0]
    more = f" (and {len(result.failures) - 1} more failures)" if len(result.failures) > 1 else ""
    error = BadInput if first.play == PREFLIGHT_PLAY else MoorageError
    if first.unreachable:
        return error(f"host {first.host} is unreachable: {first.message}{more}")
    if error is BadInput:
        return BadInput(f"{first.message} [host {first.host}]{more}")
    return MoorageError(f"{first.host}: task '{first.task}' failed: {first.message}{more}")


def ansible_error(result: PlaybookResult) -> str:
    """Ansible's own complaint when it failed before any task (e.g. a playbook it cannot load), in one line."""
    lines = result.output_tail
    first_error = next((index for index, line in enumerate(lines) if "ERROR" in line), None)
    if first_error is None:
        return f"ansible-playbook exited with status {result.rc}"
    return " ".join(" ".join(lines[first_error:]).split())[:500]


COMMANDS: list[click.Command] = [platform_group]
