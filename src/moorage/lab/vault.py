"""The lab's vault password: the site's secrets of a lab are vaulted in its inventory like any site's.

A lab keeps its password in its own state directory (``labs/NAME/vault-password``, 0600, random,
made on first use) and the CLI uses it for the lab's inventory when no other password is given,
the way it uses the lab's inventory when no ``-i`` is given. A copy of the lab's inventory
elsewhere is another site: it needs the password passed explicitly.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from moorage.lab.paths import lab_dir
from moorage.state_paths import labs_dir
from moorage.vault import write_private

PASSWORD_FILE = "vault-password"
INVENTORY_FILE = "hosts.yml"


def password_file(name: str | None = None) -> Path:
    """``labs/NAME/vault-password``, made (0600, 48 random characters) when missing."""
    path = lab_dir(name) / PASSWORD_FILE
    if not path.exists():
        write_private(path, (secrets.token_urlsafe(36) + "\n").encode())
    return path


def password_for(inventory: Path) -> Path | None:
    """The lab's password file when ``inventory`` is a lab's own inventory (``labs/NAME/hosts.yml``), else None."""
    resolved = inventory.resolve()
    if resolved.name != INVENTORY_FILE or resolved.parent.parent != labs_dir().resolve():
        return None
    return password_file(resolved.parent.name)
