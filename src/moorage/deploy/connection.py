"""How the deploy reaches Consul and the platform's vault for an inventory.

Consul: ``CONSUL_HTTP_ADDR``/``CONSUL_HTTP_TOKEN`` when set, else the first host of the
inventory's ``consul_servers`` group on port 8500 with the management token from the
platform's vault (``moorage.vault``). The management token also goes, in memory only, to the
hosts' deploy agent (over SSH, on its stdin), which creates the service's own token from it; no
secret is ever a command line argument or a file on the controller.
"""

from __future__ import annotations

import os
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
    management_token: str


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
    return PlatformAccess(client=client, management_token=token)
