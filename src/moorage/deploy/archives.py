"""What a deploy ships to the hosts, built once per content and cached on the controller.

- The release's files: a directory artifact packed reproducibly (sorted, owner root, time 0,
  gzip without a name or time), so the same files make the same archive, and a host that holds
  an archive of that digest gets nothing; a tarball artifact or a Docker image archive is
  shipped as it is. Kept in ``CACHE_ROOT/archives/DIGEST.SUFFIX``, so ``rollback`` and ``scale``
  ship an older release's files even after the artifact directory changed.
- The deploy agent: the package ``moorage.agents`` as one zipapp (``python3 -I agent.pyz
  instance ...``), also reproducible, in ``CACHE_ROOT/agents/``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import moorage.agents
from moorage.state_paths import cache_root

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Shipped:
    """A file on the controller the prepare run ships: its path, sha256 and how its name ends."""

    path: Path
    digest: str
    suffix: str

    def variables(self) -> dict[str, str]:
        return {"path": str(self.path), "digest": self.digest, "suffix": self.suffix}


def archives_dir() -> Path:
    return cache_root() / "archives"


def cached_archive(digest: str) -> Shipped | None:
    """The archive of this digest, when this controller built or shipped it before."""
    for suffix in ARCHIVE_SUFFIXES:
        path = archives_dir() / f"{digest}{suffix}"
        if path.exists():
            return Shipped(path, digest, suffix)
    return None


def release_archive(source: Path) -> Shipped:
    """A directory packed, or an archive file as it is; cached by its digest."""
    if source.is_dir():
        data = _pack(source)
        suffix = ".tar.gz"
    else:
        data = source.read_bytes()
        suffix = next((suffix for suffix in ARCHIVE_SUFFIXES if source.name.endswith(suffix)), ".tar")
    digest = hashlib.sha256(data).hexdigest()
    return Shipped(_store(archives_dir() / f"{digest}{suffix}", data), digest, suffix)


def _pack(directory: Path) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            if "__pycache__" in relative.parts:
                continue
            info = tar.gettarinfo(str(path), arcname=relative.as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            info.pax_headers = {}
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0)


def agent_zipapp() -> Shipped:
    """The deploy agent: ``__main__.py`` and ``moorage/agents/*.py``, reproducibly zipped."""
    package = Path(moorage.agents.__file__).parent
    members = {"__main__.py": (package / "__main__.py").read_bytes(), "moorage/__init__.py": b""}
    members |= {f"moorage/agents/{path.name}": path.read_bytes() for path in sorted(package.glob("*.py"))}
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, members[name])
    data = raw.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    return Shipped(_store(cache_root() / "agents" / f"agent-{digest[:16]}.pyz", data), digest, ".pyz")


def _store(path: Path, data: bytes) -> Path:
    """``data`` at ``path`` unless it is there already (written whole, then renamed)."""
    if path.exists() and path.stat().st_size == len(data):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
    return path
