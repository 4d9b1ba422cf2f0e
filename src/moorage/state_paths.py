"""Where moorage keeps its files on the controller: one module, so every part agrees.

State (``/var/lib/moorage``; ``MOORAGE_STATE_DIR`` moves it):

- ``labs/NAME/``: a lab's machines, SSH key and inventory (``moorage.lab``);
- ``platform/HASH/``: where moorage < 0.2 kept a site's secrets (read once, to move them into the
  inventory's vault file: ``moorage.vault``);
- ``facts/HASH/``: Ansible's fact cache for one inventory's content (``moorage.runner``);
- ``remotes/SERVICE.git``: the bare git repository whose push deploys SERVICE (``moorage.gitremote``).

``HASH`` is the first 16 hex digits of the sha256 of the inventory's absolute path (and of its
content for caches that must not outlive a change of the inventory).

Cache (``/var/cache/moorage``; ``MOORAGE_CACHE_DIR`` moves it): what can be rebuilt from its
inputs, such as the lab's base image and apt repository.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEFAULT_STATE_ROOT = "/var/lib/moorage"
DEFAULT_CACHE_ROOT = "/var/cache/moorage"


def state_root() -> Path:
    return Path(os.environ.get("MOORAGE_STATE_DIR", DEFAULT_STATE_ROOT))


def cache_root() -> Path:
    """Images and downloaded packages, outside any checkout, keyed by their inputs."""
    return Path(os.environ.get("MOORAGE_CACHE_DIR", DEFAULT_CACHE_ROOT))


def labs_dir() -> Path:
    return state_root() / "labs"


def remotes_dir() -> Path:
    """Where ``moorage remote add`` keeps its bare repositories (``--root`` picks another directory)."""
    return state_root() / "remotes"


def inventory_state_dir(inventory: Path, kind: str, *, by_content: bool = False) -> Path:
    """``STATE_ROOT/KIND/HASH``: a 0700 directory that belongs to one inventory (created if missing)."""
    digest = hashlib.sha256(str(inventory.resolve()).encode())
    if by_content and inventory.is_file():
        digest.update(inventory.read_bytes())
    directory = state_root() / kind / digest.hexdigest()[:16]
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def legacy_platform_secrets_dir(inventory: Path) -> Path:
    """Where moorage < 0.2 kept the vault password and Consul vault file of ``inventory`` (not created)."""
    return state_root() / "platform" / hashlib.sha256(str(inventory.resolve()).encode()).hexdigest()[:16]


def fact_cache_dir(inventory: Path) -> Path:
    """Ansible's gathered facts for ``inventory`` (a changed inventory gets a fresh cache)."""
    return inventory_state_dir(inventory, "facts", by_content=True)
