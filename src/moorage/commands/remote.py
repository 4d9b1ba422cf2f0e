"""`moorage remote add | list | remove` (and the hook's hidden `remote receive`): a git remote whose push deploys.

The CLI decides the defaults (the inventory, the moorage executable) and prints; the bare
repository, its hook and what a push does live in ``moorage.gitremote``.
"""

from __future__ import annotations

import os
import shutil
import sys
from datetime import timedelta
from pathlib import Path

import click
from rich.table import Table

from moorage import gitremote, state_paths
from moorage.commands.options import VaultOptions, chosen_inventory, inventory_option, lock_wait_option, output_option, secrets_options
from moorage.errors import BadInput
from moorage.lab.vault import password_for as lab_password_for
from moorage.output import OutputFormat, console, emit_document, is_structured
from moorage.vault import site_vault

root_option = click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Directory of the bare repositories (default: STATE_ROOT/remotes, /var/lib/moorage/remotes).",
)


def _ssh_address(_context: click.Context, _parameter: click.Parameter, value: str | None) -> gitremote.SshAddress | None:
    return None if value is None else gitremote.SshAddress.parse(value)


ssh_host_option = click.option(
    "--ssh-host",
    "ssh_address",
    metavar="[USER@]HOST[:PORT]",
    default=None,
    callback=_ssh_address,
    help="How developers reach this controller over SSH, for the printed ssh:// URL (default: you @ this host's FQDN, port 22).",
)


def _this_moorage() -> Path:
    """The moorage executable running now, by absolute path (the hook runs it without the caller's PATH)."""
    beside = Path(sys.executable).parent / "moorage"
    if beside.is_file():
        return beside.absolute()
    found = shutil.which("moorage")
    if found is None:
        raise BadInput("cannot find the moorage executable to record in the hook (install moorage so `moorage` is on PATH)")
    return Path(found).absolute()


def _duration_text(wait: timedelta) -> str:
    return f"{int(wait.total_seconds())}s"


def _recorded_password(inventory: Path, vault_options: VaultOptions) -> Path | None:
    """The vault password file a push's deploy passes (``--vault-password-file``), recorded now.

    A push over SSH runs its deploy in a fresh login session, without this shell's
    ``ANSIBLE_VAULT_PASSWORD_FILE``: the password that opens the site's vault file (the one given, else
    the variable's) is recorded by path, and checked now rather than at the first push. A lab's
    inventory needs none (the deploy finds the lab's own password from the inventory's path). With
    ``--secrets`` the given password is recorded: the deploy takes one password for both files.
    """
    lab_password = lab_password_for(inventory)
    secrets = vault_options.secrets
    vault = site_vault(inventory, vault_options.site_passwords(inventory))
    if vault.exists:
        site_password: Path | None = vault.opening_password()
    else:  # no secrets yet: `platform up` will encrypt them with the first of these
        site_password = next((password for password in vault.passwords if password != lab_password), lab_password)
    if secrets is not None:
        if site_password not in (secrets.password_file, lab_password):
            raise BadInput(
                f"--vault-password-file {secrets.password_file} opens --secrets but not the site's secrets ({vault.file}): "
                "a push's deploy takes one password for both"
            )
        return secrets.password_file.absolute()
    return None if site_password is None or site_password == lab_password else site_password.absolute()


@click.group()
def remote() -> None:
    """A git remote on this controller whose push deploys a service (`git push lab main`)."""


@remote.command("add")
@click.argument("service")
@click.option("--branch", default="main", show_default=True, help="The branch whose push deploys; other branches are only stored.")
@click.option("--spec", "spec", default="moorage.yml", show_default=True, help="The spec file's path inside the pushed repository.")
@inventory_option("Ansible inventory the pushes deploy to, recorded now (default: $MOORAGE_INVENTORY, else the running lab's).")
@root_option
@ssh_host_option
@secrets_options
@lock_wait_option
@output_option
def add(
    service: str,
    branch: str,
    spec: str,
    inventory: Path | None,
    root: Path | None,
    ssh_address: gitremote.SshAddress | None,
    vault: VaultOptions,
    lock_wait: timedelta,
    output_format: OutputFormat,
) -> None:
    """Create (or update) the bare repository for SERVICE and print the URLs to add as a git remote.

    A push of --branch checks the commit out, deploys its --spec with version = the short commit id
    and note = the commit's subject, and is rejected (the branch not moved) when the deploy fails.
    Running it again keeps the repository and its history and rewrites the hook and settings.
    The vault password that opens the site's secrets (--vault-password-file, else
    $ANSIBLE_VAULT_PASSWORD_FILE; none for a lab) is recorded too: a push over SSH has neither.
    """
    if Path(spec).is_absolute() or ".." in Path(spec).parts:
        raise BadInput(f"--spec {spec!r}: a path inside the repository, e.g. moorage.yml or deploy/app.yml")
    inventory_path = chosen_inventory(inventory).absolute()
    settings = gitremote.RemoteSettings(
        service=service,
        branch=branch,
        spec=spec,
        inventory=inventory_path,
        executable=_this_moorage(),
        state_root=state_paths.state_root().absolute(),
        lock_wait=_duration_text(lock_wait),
        secrets=None if vault.secrets is None else vault.secrets.vault.absolute(),
        vault_password_file=_recorded_password(inventory_path, vault),
    )
    made = gitremote.add(settings, root.absolute() if root else None, ssh_address)
    if is_structured(output_format):
        emit_document(made.as_dict())
        return
    console.print(f"{service}: a push of branch {branch} deploys {spec} to {settings.inventory}", markup=False)
    if settings.vault_password_file is not None:
        console.print(f"the deploy opens the site's secrets with {settings.vault_password_file} (keep it there)", markup=False)
    console.print("add it as a git remote (a local path, or over SSH):", markup=False)
    for url in (str(made.path), made.ssh_url):
        console.print(f"  git remote add lab {url}", markup=False)
    console.print(f"then: git push lab {branch}", markup=False)


@remote.command("list")
@root_option
@ssh_host_option
@output_option
def list_(root: Path | None, ssh_address: gitremote.SshAddress | None, output_format: OutputFormat) -> None:
    """The remotes on this controller: service, branch, spec, inventory, path."""
    remotes = [made.as_dict() for made in gitremote.list_remotes(root, ssh_address)]
    if is_structured(output_format):
        emit_document({"remotes": remotes})
        return
    table = Table("service", "branch", "spec", "inventory", "path")
    for row in remotes:
        table.add_row(*(str(row[key]) for key in ("service", "branch", "spec", "inventory", "path")))
    console.print(table)


@remote.command("remove")
@click.argument("service")
@root_option
@output_option
def remove(service: str, root: Path | None, output_format: OutputFormat) -> None:
    """Delete SERVICE's bare repository (its pushed history); the service keeps running."""
    path = gitremote.remove(service, root)
    if is_structured(output_format):
        emit_document({"service": service, "removed": str(path)})
    else:
        console.print(f"{service}: removed {path} (the service and its releases stay)", markup=False)


@remote.command("receive", hidden=True)
def receive() -> None:
    """The pre-receive hook: OLD NEW REF lines on stdin, run in the bare repository (git sets GIT_DIR)."""
    git_dir = Path(os.environ.get("GIT_DIR", ".")).absolute()
    gitremote.receive(git_dir, sys.stdin, sys.stderr)


COMMANDS: list[click.Command] = [remote]
