"""`moorage deploy | plan | status | releases | rollback | scale | promote | logs`."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from moorage.deploy import operations
from moorage.deploy import status as service_status
from moorage.deploy.connection import platform_access
from moorage.deploy.identity import content_version, spec_hash
from moorage.deploy.operations import Outcome, RolloutFailed, Session
from moorage.deploy.releases import ReleaseStore
from moorage.deploy.remote import ssh_argv
from moorage.deploy.rollout import PlaybookContext
from moorage.errors import BadInput, MoorageError
from moorage.inventory import resolve_inventory
from moorage.output import console, emit_event, emit_json, emit_result, err_console, output_option
from moorage.progress import JsonEventReporter, LiveProgressReporter
from moorage.spec.loader import load_spec
from moorage.spec.units import parse_duration
from moorage.targets.classic import render

inventory_option = click.option(
    "-i", "--inventory", "inventory", type=click.Path(path_type=Path), default=None, help="Ansible inventory (default: the running lab's)."
)


def secrets_options(command: Any) -> Any:
    """``--secrets FILE --vault-password-file P``: every command that (re)starts instances needs the values."""
    command = click.option(
        "--vault-password-file",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        default=None,
        help="Opens the --secrets vault.",
    )(command)
    return click.option(
        "--secrets",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        default=None,
        help="Ansible Vault file with the spec's secrets.",
    )(command)


def _secrets_pair(secrets: Path | None, vault_password_file: Path | None) -> None:
    if secrets is not None and vault_password_file is None:
        raise BadInput("--secrets needs --vault-password-file")


lock_wait_option = click.option(
    "--lock-wait", default="0s", show_default=True, help="How long to wait for another deploy of the service to finish, e.g. 2m."
)


def _session(
    inventory: Path | None, output_format: str, lock_wait: str, secrets: Path | None = None, secrets_password_file: Path | None = None
) -> tuple[Session, Any]:
    inventory_path = resolve_inventory(inventory)
    access = platform_access(inventory_path)
    if output_format == "json":
        reporter: Any = JsonEventReporter()
        say: Callable[[str], None] = lambda line: emit_event({"event": "deploy_step", "message": line})  # noqa: E731
    else:
        reporter = LiveProgressReporter()
        say = lambda line: err_console.print(f"[bold]>[/bold] {line}", markup=True)  # noqa: E731
    context = PlaybookContext(
        inventory=inventory_path, consul_vault_file=access.consul_vault_file, secrets_file=secrets, reporter=reporter, say=say
    )
    try:
        wait = parse_duration(lock_wait)
    except ValueError as error:
        raise BadInput(f"--lock-wait: {error}") from None
    return Session(inventory_path, access, context, wait, secrets_password_file), reporter


def _show(outcome: Outcome, output_format: str) -> None:
    if output_format == "json":
        emit_result(outcome.as_dict())
    else:
        console.print(outcome.message, markup=False)


def _run(output_format: str, work: Callable[[], Outcome]) -> None:
    try:
        outcome = work()
    except RolloutFailed as failed:
        if output_format == "json":
            emit_result({**failed.outcome.as_dict(), "exit_code": failed.exit_code})
            raise SystemExit(failed.exit_code) from None
        raise
    _show(outcome, output_format)


@click.command()
@click.argument("spec_file", type=click.Path(path_type=Path))
@inventory_option
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
    secrets: Path | None,
    vault_password_file: Path | None,
    lock_wait: str,
    output_format: str,
) -> None:
    """Roll SPEC_FILE out: health-gated, batch by batch, reverting on failure."""
    _secrets_pair(secrets, vault_password_file)
    session, reporter = _session(inventory, output_format, lock_wait, secrets, vault_password_file)
    with _live(reporter):
        _run(output_format, lambda: operations.deploy(session, spec_file, version, canary))


def _live(reporter: Any) -> Any:
    return reporter if hasattr(reporter, "__enter__") else _Nothing()


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


@click.command()
@click.argument("spec_file", type=click.Path(path_type=Path))
@inventory_option
@click.option("--version", "version", default=None)
@output_option
def plan(spec_file: Path, inventory: Path | None, version: str | None, output_format: str) -> None:
    """What a deploy of SPEC_FILE would change, per host (changes nothing)."""
    inventory_path = resolve_inventory(inventory)
    service = load_spec(spec_file)
    variables = render(service, spec_file, inventory_path)
    version = version or content_version(variables["moorage_service"])
    current = ReleaseStore(platform_access(inventory_path).client, service.name).current()
    rows = service_status.changes(current, variables, version, spec_hash(variables["moorage_service"]))
    changing = [row for row in rows if row["action"] != "keep"]
    if output_format == "json":
        emit_json(
            {
                "service": service.name,
                "version": version,
                "current_release": None if current is None else current.number,
                "changes": rows,
                "changed": bool(changing),
            }
        )
        return
    table = Table("host", "instance", "port", "action")
    for row in rows:
        table.add_row(row["host"], row["instance"], str(row["port"]), row["action"])
    console.print(table)
    console.print(f"{service.name}: {len(changing)} instance(s) would change" if changing else f"{service.name}: no change")


@click.command()
@click.argument("service", required=False)
@inventory_option
@output_option
def status(service: str | None, inventory: Path | None, output_format: str) -> None:
    """Instances of SERVICE (or of every moorage service): host, port, release, version, health, since."""
    client = platform_access(resolve_inventory(inventory)).client
    names = [service] if service else service_status.services(client)
    rows = [{"service": name, **row} for name in names for row in service_status.instances(client, name)]
    if output_format == "json":
        emit_json({"instances": rows})
        return
    table = Table("service", "instance", "host", "port", "release", "version", "health", "since")
    for row in rows:
        table.add_row(*(str(row[key]) for key in ("service", "instance", "host", "port", "release", "version", "health", "since")))
    console.print(table)


@click.command()
@click.argument("service")
@inventory_option
@output_option
def releases(service: str, inventory: Path | None, output_format: str) -> None:
    """The kept releases of SERVICE (newest last)."""
    kept = ReleaseStore(platform_access(resolve_inventory(inventory)).client, service).all()
    if output_format == "json":
        emit_json({"service": service, "releases": [release.summary() for release in kept]})
        return
    table = Table("release", "version", "status", "created", "by", "note")
    for release in kept:
        table.add_row(str(release.number), release.version, release.status, release.created, release.by, release.note)
    console.print(table)


@click.command()
@click.argument("service")
@click.option("--to", "to", type=int, default=None, help="Release number (default: the previous deployed one).")
@inventory_option
@secrets_options
@lock_wait_option
@output_option
def rollback(
    service: str,
    to: int | None,
    inventory: Path | None,
    secrets: Path | None,
    vault_password_file: Path | None,
    lock_wait: str,
    output_format: str,
) -> None:
    """Roll SERVICE back to an earlier release (as a new release, the same rolling way)."""
    _secrets_pair(secrets, vault_password_file)
    session, reporter = _session(inventory, output_format, lock_wait, secrets, vault_password_file)
    with _live(reporter):
        _run(output_format, lambda: operations.rollback(session, service, to))


@click.command()
@click.argument("assignment", metavar="SERVICE=N")
@inventory_option
@secrets_options
@lock_wait_option
@output_option
def scale(
    assignment: str, inventory: Path | None, secrets: Path | None, vault_password_file: Path | None, lock_wait: str, output_format: str
) -> None:
    """Add or remove instances without touching the others."""
    name, _, count = assignment.partition("=")
    if not name or not count.isdigit():
        raise BadInput(f"{assignment!r}: expected SERVICE=N, e.g. hello=5")
    _secrets_pair(secrets, vault_password_file)
    session, reporter = _session(inventory, output_format, lock_wait, secrets, vault_password_file)
    with _live(reporter):
        _run(output_format, lambda: operations.scale(session, name, int(count)))


@click.command()
@click.argument("service")
@inventory_option
@secrets_options
@lock_wait_option
@output_option
def promote(
    service: str, inventory: Path | None, secrets: Path | None, vault_password_file: Path | None, lock_wait: str, output_format: str
) -> None:
    """Roll SERVICE's instances to its canary release, then remove the canaries."""
    _secrets_pair(secrets, vault_password_file)
    session, reporter = _session(inventory, output_format, lock_wait, secrets, vault_password_file)
    with _live(reporter):
        _run(output_format, lambda: operations.promote(session, service))


@click.command()
@click.argument("service")
@inventory_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--since", default=None, help="journalctl --since, e.g. '10 min ago'.")
def logs(service: str, inventory: Path | None, follow: bool, since: str | None) -> None:
    """The journal of SERVICE's instances on every host, prefixed by host (over SSH)."""
    inventory_path = resolve_inventory(inventory)
    client = platform_access(inventory_path).client
    rows = service_status.instances(client, service)
    if not rows:
        raise BadInput(f"{service}: no instances registered in Consul")
    command = (
        ["journalctl", "--no-pager", "-o", "short-iso", "-t", service] + (["-f"] if follow else []) + (["--since", since] if since else [])
    )
    failures: list[str] = []

    def stream(host: str) -> None:
        with subprocess.Popen(
            ssh_argv(inventory_path, host, command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as process:
            for line in process.stdout or []:
                console.print(f"{host} {line.rstrip()}", markup=False)
            error = (process.stderr.read() if process.stderr else "").strip()
        if process.returncode != 0:
            failures.append(f"{host}: {error.splitlines()[-1] if error else f'exit {process.returncode}'}")

    readers = [threading.Thread(target=stream, args=(host,), daemon=True) for host in sorted({row["host"] for row in rows})]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    if failures:
        raise MoorageError(f"{service}: could not read the journal on {'; '.join(sorted(failures))}")


COMMANDS: list[click.Command] = [deploy, plan, status, releases, rollback, scale, promote, logs]
