"""The platform's secrets on the controller: one directory per inventory, readable by root only.

``moorage platform up`` hands this directory to the ``consul`` role as ``consul_secrets_dir``.
The role keeps there (and nowhere else):

- ``vault-password``: the Ansible Vault password, generated once, mode 0600;
- ``consul.vault.yml``: an Ansible Vault file with ``consul_gossip_key``, ``consul_token_seed``
  (every agent/service token is derived from it) and, once the cluster's ACLs are bootstrapped,
  ``consul_bootstrap_token`` (the management token).

Read it by hand with ``ansible-vault view --vault-password-file DIR/vault-password DIR/consul.vault.yml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from ansible.constants import DEFAULT_VAULT_ID_MATCH
from ansible.parsing.vault import VaultLib, VaultSecret

from moorage.errors import MoorageError
from moorage.state_paths import platform_secrets_dir

VAULT_PASSWORD_FILE = "vault-password"
CONSUL_SECRETS_FILE = "consul.vault.yml"


def secrets_dir(inventory: Path) -> Path:
    """``STATE_ROOT/platform/<hash of the inventory's absolute path>``, 0700 (``moorage.state_paths``)."""
    return platform_secrets_dir(inventory)


def read_consul_secrets(inventory: Path) -> dict[str, Any]:
    """The decrypted ``consul.vault.yml`` of the platform built from ``inventory``."""
    directory = secrets_dir(inventory)
    password_file = directory / VAULT_PASSWORD_FILE
    vault_file = directory / CONSUL_SECRETS_FILE
    if not vault_file.exists() or not password_file.exists():
        raise MoorageError(f"{vault_file}: no platform secrets yet; run 'moorage platform up' first")
    secret = VaultSecret(password_file.read_bytes().strip())
    plaintext = VaultLib([(DEFAULT_VAULT_ID_MATCH, secret)]).decrypt(vault_file.read_bytes())
    document = yaml.safe_load(plaintext)
    if not isinstance(document, dict):
        raise MoorageError(f"{vault_file}: expected a mapping of platform secrets")
    return document
