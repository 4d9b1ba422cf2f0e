"""Where a lab keeps its state. Several labs may exist side by side, told apart by name.

The name comes from ``MOORAGE_LAB`` (default ``moorage``); all of a lab's state lives in
``/var/lib/moorage/labs/NAME`` (``MOORAGE_STATE_DIR`` moves the root), and the inventory that
other commands use when no ``-i`` is given is ``hosts.yml`` there.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_LAB_NAME = "moorage"


def lab_name() -> str:
    return os.environ.get("MOORAGE_LAB", DEFAULT_LAB_NAME)


def state_root() -> Path:
    return Path(os.environ.get("MOORAGE_STATE_DIR", "/var/lib/moorage"))


def lab_dir(name: str | None = None) -> Path:
    return state_root() / "labs" / (name or lab_name())


def inventory_path(name: str | None = None) -> Path:
    """The Ansible inventory of the lab ``name`` (written by ``lab up``)."""
    return lab_dir(name) / "hosts.yml"


def cache_root() -> Path:
    """Images and downloaded packages, outside any checkout, keyed by their inputs."""
    return Path(os.environ.get("MOORAGE_CACHE_DIR", "/var/cache/moorage"))
