"""How the deploy reaches Consul and the platform's vault for an inventory.

Consul: ``CONSUL_HTTP_ADDR``/``CONSUL_HTTP_TOKEN`` when set, else the first host of the
inventory's ``consul_servers`` group on port 8500 with the management token from the
platform's vault (``moorage.vault``). Ansible gets the vault files' paths and decrypts them
itself (``ANSIBLE_VAULT_IDENTITY_LIST``), so no secret is ever an extra variable, a command
line argument or an ansible-runner artifact.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import consul

from moorage import vault
from moorage.errors import BadInput
from moorage.inventory import Inventory

CONSUL_HTTP_PORT = 8500


@dataclass(frozen=True)
class SecretsFile:
    """``--secrets FILE --vault-password-file P``: the service's secret values, an Ansible Vault file."""

    vault: Path
    password_file: Path


@dataclass(frozen=True)
class PlatformAccess:
    client: consul.Consul
    consul_vault_file: Path | None  # the platform's vault (consul_bootstrap_token), for the playbook
    vault_password_file: Path | None


def platform_access(inventory: Inventory) -> PlatformAccess:
    inventory_path = inventory.path
    secrets = vault.secrets_dir(inventory_path)
    vault_file = secrets / vault.CONSUL_SECRETS_FILE
    password_file = secrets / vault.VAULT_PASSWORD_FILE
    has_vault = vault_file.exists() and password_file.exists()
    token = os.environ.get("CONSUL_HTTP_TOKEN") or (
        vault.read_consul_secrets(inventory_path).get("consul_bootstrap_token") if has_vault else None
    )
    if not token:
        raise BadInput(
            f"{inventory_path}: no Consul token: no platform secrets for this inventory in {secrets} "
            f"(run 'moorage platform up -i {inventory_path}', or set CONSUL_HTTP_TOKEN)"
        )
    if os.environ.get("CONSUL_HTTP_ADDR"):
        client = consul.Consul(token=token)
    else:
        servers = inventory.hosts("consul_servers")
        client = consul.Consul(host=servers[0].address, port=CONSUL_HTTP_PORT, token=token)
    return PlatformAccess(
        client=client,
        consul_vault_file=vault_file if has_vault else None,
        vault_password_file=password_file if has_vault else None,
    )


@contextmanager
def vault_identities(password_files: dict[str, Path]) -> Iterator[None]:
    """Ansible (run by ansible-runner, which inherits this environment) may open these vaults."""
    listing = ",".join(f"{label}@{path}" for label, path in password_files.items())
    previous = os.environ.get("ANSIBLE_VAULT_IDENTITY_LIST")
    if listing:
        os.environ["ANSIBLE_VAULT_IDENTITY_LIST"] = listing
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("ANSIBLE_VAULT_IDENTITY_LIST", None)
        else:
            os.environ["ANSIBLE_VAULT_IDENTITY_LIST"] = previous
