"""Where moorage finds its Ansible content: the collection ``moorage.platform``.

The collection is this repository's ``playbooks/``, ``roles/`` and ``plugins/`` (with
``galaxy.yml``). A wheel carries it under ``moorage/_ansible/ansible_collections/moorage/platform``,
so ``moorage/_ansible`` is a collections path as it is. A source checkout (editable install,
tests) has it at the repository root; its collections path is ``.ansible/collections`` there
(git-ignored, the place ansible-lint uses too), holding one link back to the root, made on first use.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

COLLECTION_NAMESPACE = "moorage"
COLLECTION_NAME = "platform"
# Where Ansible looks for collections when nothing is configured; moorage's path comes first.
DEFAULT_COLLECTIONS_PATHS = ("~/.ansible/collections", "/usr/share/ansible/collections")

_PACKAGE_DIR = Path(__file__).resolve().parent
_BUNDLED_COLLECTIONS = _PACKAGE_DIR / "_ansible"
_IN_COLLECTIONS = Path("ansible_collections") / COLLECTION_NAMESPACE / COLLECTION_NAME


def _bundled() -> bool:
    return (_BUNDLED_COLLECTIONS / _IN_COLLECTIONS / "playbooks").is_dir()


def ansible_root() -> Path:
    """The collection's root: the directory that holds ``playbooks/``, ``roles/`` and ``plugins/``."""
    if _bundled():
        return _BUNDLED_COLLECTIONS / _IN_COLLECTIONS
    return _PACKAGE_DIR.parent.parent


def playbook(name: str) -> Path:
    return ansible_root() / "playbooks" / name


def roles_dir() -> Path:
    return ansible_root() / "roles"


def plugins_dir() -> Path:
    return ansible_root() / "plugins"


def collections_dir() -> Path:
    """A directory whose ``ansible_collections/moorage/platform`` is ``ansible_root()``.

    In a checkout the link is made when missing (or replaced when it points elsewhere).
    """
    if _bundled():
        return _BUNDLED_COLLECTIONS
    root = ansible_root()
    collections = root / ".ansible" / "collections"
    link = collections / _IN_COLLECTIONS
    if link.exists() and link.resolve() == root.resolve():
        return collections
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    with contextlib.suppress(FileExistsError):  # made by a concurrent run
        link.symlink_to(Path(*[os.pardir] * len(link.relative_to(root).parts[:-1])), target_is_directory=True)
    return collections


def collections_search_path() -> str:
    """``ANSIBLE_COLLECTIONS_PATH``: moorage's collection first, then Ansible's defaults."""
    return os.pathsep.join([str(collections_dir()), *DEFAULT_COLLECTIONS_PATHS])
