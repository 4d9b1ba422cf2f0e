"""The site's secrets: an Ansible Vault file in the inventory's directory, so they travel with it.

``INVENTORY_DIR/group_vars/all/moorage.vault.yml`` (``INVENTORY_DIR``: the inventory when it is a
directory, else the directory of the inventory file) holds ``consul_gossip_key``,
``consul_token_seed`` (every agent and component token is derived from it) and, once the
cluster's ACLs are bootstrapped, ``consul_bootstrap_token`` (the management token). Ansible loads
it like any other group_vars file and opens it with its own conventions (``--vault-password-file``,
``ANSIBLE_VAULT_PASSWORD_FILE``); the ``consul`` role writes it (0600) when it mints or changes a
secret. Any controller holding a copy of the inventory directory and the password can run the
platform and deploy; without the password it is one line, exit 2.

Sites of moorage before 0.2 kept the same values under ``STATE_ROOT/platform/HASH/``
(``vault-password`` + ``consul.vault.yml``); :func:`migrate_legacy_secrets` moves them into the
inventory once (docs/platform.md).

Read it by hand with ``ansible-vault view --vault-password-file P INVENTORY_DIR/group_vars/all/moorage.vault.yml``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ansible.constants import DEFAULT_VAULT_ID_MATCH
from ansible.errors import AnsibleError
from ansible.parsing.vault import VaultLib, VaultSecret

from moorage.errors import BadInput
from moorage.state_paths import legacy_platform_secrets_dir

SITE_VAULT_FILE = Path("group_vars") / "all" / "moorage.vault.yml"
PASSWORD_ENV = "ANSIBLE_VAULT_PASSWORD_FILE"
NO_PASSWORD_HINT = f"pass --vault-password-file or set {PASSWORD_ENV}"
LEGACY_PASSWORD_FILE = "vault-password"
LEGACY_SECRETS_FILE = "consul.vault.yml"


def inventory_dir(inventory: Path) -> Path:
    """Where Ansible looks for the inventory's group_vars: the directory itself, or the file's directory."""
    return inventory if inventory.is_dir() else inventory.parent


def site_vault_file(inventory: Path) -> Path:
    return inventory_dir(inventory) / SITE_VAULT_FILE


@dataclass(frozen=True)
class SiteVault:
    """The site's vault file and the password files that may open it (the first that does is used)."""

    file: Path
    passwords: tuple[Path, ...]

    @property
    def exists(self) -> bool:
        return self.file.exists()

    def opening_password(self) -> Path:
        """The password file that opens the vault file (the first given when there is no file yet)."""
        if not self.passwords:
            raise BadInput(f"{self.file}: no vault password to open the site's secrets: {NO_PASSWORD_HINT}")
        if not self.exists:
            return self.passwords[0]
        ciphertext = self.file.read_bytes()
        for password in self.passwords:
            try:
                _vault(password).decrypt(ciphertext)
            except AnsibleError:
                continue
            return password
        tried = ", ".join(str(password) for password in self.passwords)
        raise BadInput(f"{self.file}: the vault password ({tried}) does not open it")

    def read(self) -> dict[str, Any]:
        """The decrypted secrets; one line (exit 2) when the file is missing or no password opens it."""
        if not self.exists:
            raise BadInput(f"{self.file}: no platform secrets yet; run 'moorage platform up' with this inventory first")
        password = self.opening_password()
        document = yaml.safe_load(_vault(password).decrypt(self.file.read_bytes()))
        if not isinstance(document, dict):
            raise BadInput(f"{self.file}: expected a mapping of platform secrets")
        return document


def site_vault(inventory: Path, passwords: Sequence[Path]) -> SiteVault:
    return SiteVault(site_vault_file(inventory), tuple(passwords))


def read_site_secrets(inventory: Path, passwords: Sequence[Path]) -> dict[str, Any]:
    """The decrypted ``moorage.vault.yml`` of the site whose inventory is ``inventory``."""
    return site_vault(inventory, passwords).read()


def migrate_legacy_secrets(inventory: Path, passwords: Sequence[Path]) -> bool:
    """Move secrets kept under ``STATE_ROOT/platform/HASH/`` (moorage < 0.2) into the inventory's vault file.

    Only when the inventory has no vault file yet; re-encrypted with the site's password, written
    0600. The old directory stays (a copy nobody reads) until its owner removes it. True if moved.
    """
    vault = site_vault(inventory, passwords)
    legacy = legacy_platform_secrets_dir(inventory)
    old_file, old_password = legacy / LEGACY_SECRETS_FILE, legacy / LEGACY_PASSWORD_FILE
    if vault.exists or not (old_file.exists() and old_password.exists()):
        return False
    plaintext = _vault(old_password).decrypt(old_file.read_bytes())
    ciphertext = _vault(vault.opening_password()).encrypt(plaintext)
    write_private(vault.file, ciphertext)
    return True


def write_private(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` readable by its owner only, from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(content)
    temporary.replace(path)


def vault_secrets(passwords: Sequence[Path]) -> list[tuple[str, VaultSecret]]:
    """The password files as Ansible's loader takes them (each tried on every vault file)."""
    return [(DEFAULT_VAULT_ID_MATCH, _secret(password)) for password in passwords]


def _vault(password_file: Path) -> VaultLib:
    return VaultLib([(DEFAULT_VAULT_ID_MATCH, _secret(password_file))])


def _secret(password_file: Path) -> VaultSecret:
    try:
        return VaultSecret(password_file.read_bytes().strip())
    except OSError as error:
        raise BadInput(f"vault password file {password_file}: {error.strerror}") from None
