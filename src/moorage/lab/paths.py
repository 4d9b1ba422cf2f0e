"""Where a lab keeps its state. Several labs may exist side by side, told apart by name.

The name comes from ``MOORAGE_LAB`` (default ``moorage``); all of a lab's state lives in
``labs/NAME`` under moorage's state root (``moorage.state_paths``), and the inventory that
other commands use when no ``-i`` is given is ``hosts.yml`` there.
"""

from __future__ import annotations

import os
from pathlib import Path

from moorage.state_paths import labs_dir

DEFAULT_LAB_NAME = "moorage"


def lab_name() -> str:
    return os.environ.get("MOORAGE_LAB", DEFAULT_LAB_NAME)


def lab_dir(name: str | None = None) -> Path:
    return labs_dir() / (name or lab_name())


def inventory_path(name: str | None = None) -> Path:
    """The Ansible inventory of the lab ``name`` (written by ``lab up``)."""
    return lab_dir(name) / "hosts.yml"
