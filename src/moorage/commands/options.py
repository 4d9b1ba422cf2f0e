"""Options shared by the commands, declared once, and the CLI's defaults.

Which inventory a command uses is decided here, in the CLI layer, like ``KUBECONFIG``: ``-i``,
else ``MOORAGE_INVENTORY``, else the running lab's (``moorage lab up``), else one line saying so.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from moorage.deploy.connection import SecretsFile
from moorage.errors import BadInput
from moorage.lab.paths import inventory_path as lab_inventory_path
from moorage.lab.vault import password_for as lab_password_for
from moorage.output import OutputFormat, use_format
from moorage.spec.units import parse_duration
from moorage.vault import PASSWORD_ENV

F = TypeVar("F", bound=Callable[..., Any])

NO_INVENTORY_HINT = "no inventory: pass -i INVENTORY, set MOORAGE_INVENTORY or start the lab with 'moorage lab up'"
INVENTORY_ENV = "MOORAGE_INVENTORY"


# What Ansible would read as an inventory source in a directory: files with these suffixes (or
# none, like ``hosts``); group_vars/, host_vars/, hidden files and notes such as README.md are not.
INVENTORY_SUFFIXES = frozenset({"", ".yml", ".yaml", ".ini", ".json", ".toml", ".cfg", ".py", ".sh"})
NOT_INVENTORY = frozenset({"ansible.cfg"})


def chosen_inventory(option: Path | None) -> Path:
    """``-i`` (or ``MOORAGE_INVENTORY``, which click reads into the option) when given, else the running lab's.

    A given path must be an inventory file or a directory holding one: a typo is one line before
    anything runs, never an Ansible run against a host named like the path.
    """
    if option is not None:
        return existing_inventory(option)
    lab_inventory = lab_inventory_path()
    if lab_inventory.exists():
        return lab_inventory
    raise BadInput(NO_INVENTORY_HINT)


def existing_inventory(path: Path) -> Path:
    if path.is_dir():
        if not any(_inventory_source(entry) for entry in path.iterdir()):
            raise BadInput(f"{path}: inventory not found: the directory holds no inventory file (e.g. hosts.yml)")
        return path
    if not path.is_file():
        raise BadInput(f"{path}: inventory not found")
    return path


def _inventory_source(entry: Path) -> bool:
    if entry.name.startswith(".") or entry.name in NOT_INVENTORY or not entry.is_file():
        return False
    return entry.suffix.lower() in INVENTORY_SUFFIXES


def site_passwords(inventory: Path, *given: Path | None) -> tuple[Path, ...]:
    """The vault password files that may open the site's vault file, in the order they are tried.

    Those given on the command line (``--vault-password-file``), then the lab's own password when
    ``inventory`` is a lab's, then ``ANSIBLE_VAULT_PASSWORD_FILE`` (Ansible's own convention). A new
    site's vault file is encrypted with the first.
    """
    candidates = [path for path in given if path is not None]
    lab_password = lab_password_for(inventory)
    if lab_password is not None:
        candidates.append(lab_password)
    if os.environ.get(PASSWORD_ENV):
        candidates.append(Path(os.environ[PASSWORD_ENV]).expanduser())
    return tuple(dict.fromkeys(candidates))


def vault_password_option(command: F) -> F:
    """``--vault-password-file P``: opens the site's vault file (the command gets ``vault_password_file``)."""
    return click.option(
        "--vault-password-file",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        default=None,
        help=f"Opens the site's Ansible Vault files (default: ${PASSWORD_ENV}; the lab's own for the lab).",
    )(command)


def inventory_option(help_text: str = "Ansible inventory (default: $MOORAGE_INVENTORY, else the running lab's).") -> Callable[[F], F]:
    """``-i/--inventory``; the command gets a Path or None (then :func:`chosen_inventory` decides)."""
    return click.option(
        "-i", "--inventory", "inventory", type=click.Path(path_type=Path), envvar=INVENTORY_ENV, default=None, help=help_text
    )


def _chosen_format(_context: click.Context, _parameter: click.Parameter, value: OutputFormat) -> OutputFormat:
    use_format(value)
    return value


def output_option(command: F) -> F:
    """``-o/--output text|json|yaml`` on every command (as kubectl's ``-o``)."""
    return click.option(
        "-o",
        "--output",
        "output_format",
        type=click.Choice(["text", "json", "yaml"]),
        default="text",
        show_default=True,
        callback=_chosen_format,
        help="text for people; json (JSON Lines) or yaml (a stream of documents) for machines.",
    )(command)


class _LockWait(click.ParamType[timedelta]):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value)
        except ValueError as error:
            raise BadInput(f"--lock-wait: {error}") from None


def lock_wait_option(command: F) -> F:
    """``--lock-wait DURATION``: the command gets a timedelta."""
    return click.option(
        "--lock-wait",
        "lock_wait",
        type=_LockWait(),
        default="0s",
        show_default=True,
        help="How long to wait for another deploy of the service to finish, e.g. 2m.",
    )(command)


@dataclass(frozen=True)
class VaultOptions:
    """What ``--secrets`` and ``--vault-password-file`` gave a command that (re)starts instances."""

    secrets: SecretsFile | None  # the spec's secrets and the password that opens them
    password_file: Path | None  # also opens the site's vault file, with or without --secrets

    def site_passwords(self, inventory: Path) -> tuple[Path, ...]:
        """The passwords to try on ``inventory``'s site vault file (:func:`site_passwords`)."""
        return site_passwords(inventory, self.password_file)


def secrets_options(command: F) -> F:
    """``--secrets FILE --vault-password-file P``: the command gets ``vault: VaultOptions``.

    Every command that (re)starts instances needs the values. The password also opens the site's
    vault file, with or without ``--secrets`` (:func:`site_passwords`).
    """

    @functools.wraps(command)
    def with_secrets(*args: Any, secrets_vault: Path | None, vault_password_file: Path | None, **kwargs: Any) -> Any:
        return command(*args, vault=VaultOptions(_secrets_file(secrets_vault, vault_password_file), vault_password_file), **kwargs)

    with_secrets = click.option(
        "--vault-password-file",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        default=None,
        help=f"Opens the --secrets vault and the site's vault file (default for the site's: ${PASSWORD_ENV}).",
    )(with_secrets)
    with_secrets = click.option(
        "--secrets",
        "secrets_vault",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        default=None,
        help="Ansible Vault file with the spec's secrets.",
    )(with_secrets)
    return cast(F, with_secrets)


def _secrets_file(vault: Path | None, password_file: Path | None) -> SecretsFile | None:
    if vault is None:
        return None
    if password_file is None:
        raise BadInput("--secrets needs --vault-password-file")
    return SecretsFile(vault, password_file)
