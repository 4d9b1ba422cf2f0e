"""What the lab needs from this host: root, a few programs, the Debian mirror apt already uses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from moorage.errors import BadInput, MoorageError

REQUIRED_PROGRAMS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "apt-ftparchive": "apt-utils",
}
APT_SOURCES = Path("/etc/apt/sources.list")
# Every machine's systemd, journald, logind, networkd... holds inotify instances, all as root: the
# kernel's default of 128 per user stops at about 18 machines on the whole host ("Failed to allocate
# manager object"). The lab raises these limits (never lowers them), as kind's documentation advises.
INOTIFY_MINIMUMS = {"max_user_instances": 8192, "max_user_watches": 524288}
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")


def preflight() -> None:
    """Fail with one line (exit 2) unless we are root and have every program the lab runs."""
    if os.geteuid() != 0:
        raise BadInput("moorage lab needs root (it creates a bridge and boots systemd-nspawn machines); run it with sudo")
    missing = sorted({package for program, package in REQUIRED_PROGRAMS.items() if shutil.which(program) is None})
    if missing:
        raise BadInput(f"moorage lab needs the Debian packages {', '.join(missing)}: run `make setup` or apt-get install them")


def raise_inotify_limits() -> list[str]:
    """Raise the host's inotify limits to what a lab of many machines needs; say what was changed."""
    changed = []
    for name, minimum in INOTIFY_MINIMUMS.items():
        setting = Path("/proc/sys/fs/inotify") / name
        if int(setting.read_text()) < minimum:
            setting.write_text(f"{minimum}\n")
            changed.append(f"fs.inotify.{name}={minimum}")
    return changed


def run(argv: Sequence[str | Path], *, what: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a program to completion; on failure raise one line naming ``what`` and the program's last words."""
    result = subprocess.run([str(arg) for arg in argv], capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if result.returncode != 0:
        last_words = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise MoorageError(f"{what} failed (exit {result.returncode}): {last_words[0]}")
    return result.stdout


def debian_mirror() -> str:
    """The Debian archive this host's apt uses (the lab fetches from the same place, nowhere else)."""
    for uri, suites in _apt_sources():
        if "bookworm" in suites and "security" not in uri:
            return uri.rstrip("/")
    raise BadInput(f"no Debian bookworm source in {APT_SOURCES} or {APT_SOURCES_DIR}: the lab builds its machines from it")


def _apt_sources() -> list[tuple[str, list[str]]]:
    """(URI, suites) of every ``deb`` source, in one-line or deb822 format."""
    sources: list[tuple[str, list[str]]] = []
    files = [APT_SOURCES, *sorted(APT_SOURCES_DIR.glob("*.list"))] if APT_SOURCES_DIR.is_dir() else [APT_SOURCES]
    for path in files:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                sources.append((words[1], [words[2]]))
    for path in sorted(APT_SOURCES_DIR.glob("*.sources")) if APT_SOURCES_DIR.is_dir() else []:
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = {
                key.strip().lower(): value.strip()
                for key, _, value in (line.partition(":") for line in stanza.splitlines() if not line.startswith("#"))
                if value
            }
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                sources.extend((uri, fields.get("suites", "").split()) for uri in fields.get("uris", "").split())
    return sources
