"""Small file operations the deploy agent needs: atomic writes and links, a lock file, a safe unpack."""

from __future__ import annotations

import fcntl
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path: Path, content: str | bytes, mode: int) -> bool:
    """Write ``content`` to ``path`` with ``mode`` (root's) in one rename; False when it held that already."""
    data = content.encode() if isinstance(content, str) else content
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o7777) == mode:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def link_atomic(link: Path, target: Path) -> bool:
    """Point ``link`` at ``target`` in one rename; False when it pointed there already."""
    if link.is_symlink() and os.readlink(link) == str(target):
        return False
    link.parent.mkdir(parents=True, exist_ok=True)
    temporary = link.parent / f".{link.name}.new"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    os.replace(temporary, link)
    return True


def ensure_dir(path: Path, mode: int) -> bool:
    """``path`` exists as a directory with ``mode``; True when that took a change."""
    changed = False
    if not path.is_dir():
        path.mkdir(parents=True, mode=mode)
        changed = True
    if (path.stat().st_mode & 0o7777) != mode:
        path.chmod(mode)
        changed = True
    return changed


def remove_path(path: Path) -> bool:
    """Remove a file, link or directory tree; False when there was none."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return True
    if path.is_dir():
        shutil.rmtree(path)
        return True
    return False


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) while the block runs; waits for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class UnsafeArchive(ValueError):
    """A tarball member would land outside the directory, or is no regular file, directory or link inside it."""


def unpack(archive: Path, destination: Path) -> None:
    """Unpack ``archive`` (tar, tar.gz) into ``destination`` as a whole: into a new directory, then renamed.

    Members must stay inside (no absolute paths, no ``..``, links only to inside); owners are not
    kept (root's), modes are (without set-id bits).
    """
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, staging)
                member.uid = member.gid = 0
                member.uname = member.gname = "root"
                member.mode &= 0o777
            tar.extractall(staging, members=members, numeric_owner=True)  # every member checked above
        staging.chmod(0o755)
        if destination.exists():
            remove_path(destination)
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _check_member(member: tarfile.TarInfo, root: Path) -> None:
    target = (root / member.name).resolve()
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchive(f"{member.name}: not a file, directory or link")
    if not _inside(target, root):
        raise UnsafeArchive(f"{member.name}: outside the release directory")
    if member.issym():
        pointed = (target.parent / member.linkname).resolve()
        if not _inside(pointed, root):
            raise UnsafeArchive(f"{member.name}: links outside the release directory ({member.linkname})")
    if member.islnk() and not _inside((root / member.linkname).resolve(), root):
        raise UnsafeArchive(f"{member.name}: hard link outside the release directory")


def _inside(path: Path, root: Path) -> bool:
    resolved_root = root.resolve()
    return path == resolved_root or resolved_root in path.parents
