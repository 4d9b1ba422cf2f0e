"""Artifacts that carry their dependencies: an artifact directory and its Python packages as one tarball.

Hosts have no internet, so a service's dependencies are installed when the artifact is built, on
the controller, for the hosts' Python (Debian 12: CPython 3.11, glibc 2.36), never on the hosts.
When the artifact directory has a ``requirements.txt``, pip installs it for that interpreter and
platform (wheels only) and the packages land at the top of the tarball, beside the program: a
``python3 app.py`` or ``python3 -m pkg`` started in the unpacked directory imports them like its
own modules, with nothing to activate and no variable to set. ``docs/build.md`` says what this
ships to each runtime.

The tarball is reproducible (entries sorted, fixed owner, modes and times, no ``__pycache__``,
a gzip header without name or time) and cached by content: the same directory, requirements and
target give the same bytes, built once.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.errors import BadInput, MoorageError

# Bump when the tarball's layout changes: cached builds of an older layout are then never reused.
FORMAT = 1
REQUIREMENTS_FILE = "requirements.txt"
BUILD_INFO_FILE = ".moorage-build.json"  # in the tarball: target interpreter and installed distributions
# A cache entry: the tarball, hard links to it named NAME-VERSION.tar.gz, and what was built.
CACHED_TARBALL = "artifact.tar.gz"
CACHE_INFO_FILE = "build.json"
# 1980-01-01, the oldest time a zip or wheel can hold; SOURCE_DATE_EPOCH overrides it.
DEFAULT_MTIME = 315532800
# pip writes console scripts with this machine's interpreter in their shebang: useless on a host.
DROPPED_FROM_DEPENDENCIES = ("bin",)
SKIPPED_NAMES = ("__pycache__",)
SKIPPED_SUFFIXES = (".pyc", ".pyo")
VERSION_TEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_([a-z0-9_]+)$")
OLDEST_MANYLINUX_GLIBC = 5  # manylinux1 is glibc 2.5
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


@dataclass(frozen=True)
class HostPython:
    """The interpreter that runs the artifact on the hosts: pip picks wheels for it, not for this machine."""

    version: str = "3.11"
    platform: str = "manylinux_2_36_x86_64"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"3\.\d{1,2}", self.version):
            raise BadInput(f"python version {self.version!r}: expected 3.N, e.g. 3.11")
        if not MANYLINUX.match(self.platform):
            raise BadInput(f"platform {self.platform!r}: expected manylinux_GLIBCMAJOR_GLIBCMINOR_ARCH, e.g. manylinux_2_36_x86_64")

    def platform_tags(self) -> list[str]:
        """Every manylinux tag a host with this glibc runs, newest first (pip does not expand them itself)."""
        match = MANYLINUX.match(self.platform)
        assert match is not None
        major, minor, machine = int(match[1]), int(match[2]), match[3]
        tags: list[str] = []
        for glibc_minor in range(minor, OLDEST_MANYLINUX_GLIBC - 1, -1) if major == 2 else []:
            tags.append(f"manylinux_2_{glibc_minor}_{machine}")
            if glibc_minor in LEGACY_MANYLINUX:
                tags.append(f"{LEGACY_MANYLINUX[glibc_minor]}_{machine}")
        return tags

    def pip_options(self) -> list[str]:
        abi = "cp" + self.version.replace(".", "")
        options = ["--only-binary=:all:", "--python-version", self.version, "--implementation", "cp", "--abi", abi]
        for tag in self.platform_tags():
            options += ["--platform", tag]
        return options

    def describe(self) -> str:
        return f"CPython {self.version} on {self.platform}"


# The hosts moorage targets: Debian 12's /usr/bin/python3 on amd64.
DEBIAN_12 = HostPython()


@dataclass(frozen=True)
class Artifact:
    """A built tarball and what went into it."""

    service: str
    version: str
    path: Path
    digest: str  # sha256 of the tarball's bytes
    size: int
    source: Path
    python: HostPython
    dependencies: tuple[str, ...]  # NAME==VERSION of every installed distribution, sorted
    cached: bool  # found in the cache, not built by this call

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "version": self.version,
            "path": str(self.path),
            "digest": f"sha256:{self.digest}",
            "size": self.size,
            "source": str(self.source),
            "python": self.python.describe(),
            "dependencies": list(self.dependencies),
            "cached": self.cached,
        }


def needs_build(artifact: Path) -> bool:
    """An artifact directory with Python requirements cannot be shipped as it is."""
    return artifact.is_dir() and (artifact / REQUIREMENTS_FILE).is_file()


def ensure_artifact(service: str, artifact: Path, version: str | None = None, python: HostPython = DEBIAN_12) -> Path:
    """What a deploy ships for ``artifact``: the built tarball when the directory has requirements, else ``artifact`` itself."""
    if not needs_build(artifact):
        return artifact
    return build_artifact(service, artifact, version, python).path


def controller_cache_dir() -> Path:
    """``MOORAGE_CACHE_DIR``; by default /var/cache/moorage for root, else the user's cache (a developer's laptop)."""
    configured = os.environ.get("MOORAGE_CACHE_DIR")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/cache/moorage")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moorage"


def build_cache_dir() -> Path:
    return controller_cache_dir() / "artifacts"


def build_artifact(
    service: str,
    source: Path,
    version: str | None = None,
    python: HostPython = DEBIAN_12,
    say: Callable[[str], None] = lambda _message: None,
    cache_dir: Path | None = None,
) -> Artifact:
    """The tarball ``NAME-VERSION.tar.gz`` of ``source`` with its requirements installed, from the cache when built before.

    ``version`` only names the file; without it the version is the first 12 hex digits of the inputs' hash.
    ``cache_dir`` defaults to ``build_cache_dir()``.
    """
    cache = cache_dir or build_cache_dir()
    if not source.is_dir():
        raise BadInput(f"{source}: not a directory (a tarball artifact is already built)")
    if version is not None and not VERSION_TEXT.match(version):
        raise BadInput(f"version {version!r}: letters, digits, '.', '_', '+' and '-' only (it names a file)")
    key = input_key(source, python)
    release = version or key[:12]
    entry = cache / service / key
    target = entry / f"{service}-{release}.tar.gz"
    cached = True
    try:
        with _locked(entry.with_name(entry.name + ".lock")):
            if not (entry / CACHE_INFO_FILE).is_file():
                cached = False
                _build_into(entry, source, python, say)
            if not target.exists():
                os.link(entry / CACHED_TARBALL, target)  # the same bytes under this version's name
    except PermissionError as error:
        raise MoorageError(f"cannot write the build cache {cache}: {error.strerror}; set MOORAGE_CACHE_DIR") from None
    info = json.loads((entry / CACHE_INFO_FILE).read_text())
    return Artifact(
        service=service,
        version=release,
        path=target,
        digest=info["digest"],
        size=target.stat().st_size,
        source=source,
        python=python,
        dependencies=tuple(info["dependencies"]),
        cached=cached,
    )


def input_key(source: Path, python: HostPython) -> str:
    """The hash of everything that goes into the tarball: layout, target interpreter, and each source file."""
    layout = {"format": FORMAT, "python": python.version, "platform": python.platform, "mtime": source_date_epoch()}
    digest = hashlib.sha256(json.dumps(layout, sort_keys=True).encode())
    for path, relative in _walk(source):
        digest.update(b"\0" + relative.encode() + b"\0")
        if path.is_symlink():
            digest.update(b"link:" + os.readlink(path).encode())
        elif path.is_dir():
            digest.update(b"dir")
        else:
            digest.update(b"exec" if os.access(path, os.X_OK) else b"file")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _build_into(entry: Path, source: Path, python: HostPython, say: Callable[[str], None]) -> None:
    """Fill a scratch directory beside ``entry`` and rename it into place only when complete."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    scratch.chmod(0o755)  # like the rest of the cache (mkdtemp makes it 0700)
    try:
        staging = scratch / "root"
        shutil.copytree(source, staging, symlinks=True, ignore=_skipped)
        dependencies: list[str] = []
        if (source / REQUIREMENTS_FILE).is_file():
            say(f"installing {source / REQUIREMENTS_FILE} for {python.describe()}")
            dependencies = _install_requirements(source, python, scratch / "dependencies", staging)
        (staging / BUILD_INFO_FILE).write_text(
            json.dumps({"format": FORMAT, "python": python.describe(), "dependencies": dependencies}, indent=2) + "\n"
        )
        tarball = scratch / CACHED_TARBALL
        write_tarball(staging, tarball)
        shutil.rmtree(staging)
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        (scratch / CACHE_INFO_FILE).write_text(json.dumps({"digest": digest, "dependencies": dependencies}, indent=2) + "\n")
        shutil.rmtree(entry, ignore_errors=True)  # a half-made entry of a crashed build
        scratch.rename(entry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _install_requirements(source: Path, python: HostPython, into: Path, staging: Path) -> list[str]:
    """pip installs the requirements for the hosts' interpreter into ``into``; the packages then join ``staging``."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--target",
        str(into),
        "--no-compile",
        "--no-input",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--progress-bar",
        "off",
        *python.pip_options(),
        "--requirement",
        REQUIREMENTS_FILE,
    ]
    # In the artifact directory: a requirements file may name other files beside it.
    result = subprocess.run(command, cwd=source, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise MoorageError(f"{source / REQUIREMENTS_FILE}: pip could not install it for {python.describe()}: {_pip_error(result)}")
    dependencies = sorted(_installed(into))
    for name in DROPPED_FROM_DEPENDENCIES:
        shutil.rmtree(into / name, ignore_errors=True)
    for item in sorted(into.iterdir()):
        if item.name in SKIPPED_NAMES:
            continue
        if (staging / item.name).exists():
            raise BadInput(f"{source / item.name}: a file of the artifact has the name of an installed dependency's {item.name}")
        item.rename(staging / item.name)
    shutil.rmtree(into)
    return dependencies


def _pip_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or [f"exit status {result.returncode}"])[0]


def _installed(directory: Path) -> Iterator[str]:
    for metadata in directory.glob("*.dist-info/METADATA"):
        fields = dict(line.split(": ", 1) for line in metadata.read_text(errors="replace").splitlines()[:20] if ": " in line)
        yield f"{fields.get('Name', metadata.parent.name)}=={fields.get('Version', '?')}"


def _is_bytecode(name: str) -> bool:
    return name in SKIPPED_NAMES or name.endswith(SKIPPED_SUFFIXES)


def _skipped(_directory: str, names: list[str]) -> list[str]:
    """``shutil.copytree``'s ignore function."""
    return [name for name in names if _is_bytecode(name)]


def _walk(root: Path) -> Iterator[tuple[Path, str]]:
    """Every entry under ``root`` except bytecode, in a fixed order, with its relative path."""
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(name for name in dirnames if not _is_bytecode(name))
        here = Path(directory)
        for name in sorted([*dirnames, *(name for name in filenames if not _is_bytecode(name))]):
            path = here / name
            yield path, path.relative_to(root).as_posix()


def source_date_epoch() -> int:
    text = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(text) if text.isdigit() else DEFAULT_MTIME


def write_tarball(root: Path, destination: Path) -> None:
    """A gzipped tar of ``root``'s contents whose bytes depend only on names, contents and executable bits."""
    mtime = source_date_epoch()
    with (
        destination.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for path, relative in sorted(_walk(root), key=lambda pair: pair[1]):
            info = archive.gettarinfo(str(path), arcname=relative)
            executable = info.isdir() or (info.isfile() and bool(info.mode & 0o111))
            info.mode = 0o755 if executable else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = mtime
            if info.isfile():
                with path.open("rb") as content:
                    archive.addfile(info, content)
            else:
                archive.addfile(info)


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """One builder per input key across processes (a deploy and a dev run may build at once)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield
