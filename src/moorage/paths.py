"""Where moorage finds its Ansible content (playbooks, roles, plugins).

A wheel carries them under ``moorage/_ansible``; a source checkout (editable
install, tests) uses the repository root.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def ansible_root() -> Path:
    """The directory that holds ``playbooks/``, ``roles/`` and ``plugins/``."""
    bundled = _PACKAGE_DIR / "_ansible"
    if (bundled / "playbooks").is_dir():
        return bundled
    return _PACKAGE_DIR.parent.parent


def playbook(name: str) -> Path:
    return ansible_root() / "playbooks" / name


def roles_dir() -> Path:
    return ansible_root() / "roles"


def plugins_dir() -> Path:
    return ansible_root() / "plugins"
