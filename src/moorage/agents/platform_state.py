"""What the platform's last converge left on this host, and whether the host still holds it.

After a converge, the controller records on each host (module moorage.platform.platform_state)
the digest of the platform's inputs and what its tasks managed there: the files they wrote or
checked (content, mode, owner), the units they started, plus the installed packages and the
host's addresses. ``moorage platform up`` compares before it runs the playbook: when every host
still holds its record and the inputs are the same, there is nothing to converge. Anything that
differs (a file edited or removed, a unit stopped, a package removed, an address changed, a role
or an inventory variable changed) sends it through the full playbook, which puts it back and
records again. Standard library only: it runs on the hosts.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .files import write_atomic

STAMP = Path("/var/lib/moorage/platform/state.json")
STAMP_VERSION = 1
DPKG_STATUS = Path("/var/lib/dpkg/status")


@dataclass(frozen=True)
class Watch:
    """What one host's converge managed: files (path -> whether their content counts) and units."""

    files: dict[str, bool]
    units: tuple[str, ...]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Watch:
        files = {str(entry["path"]): bool(entry.get("content", True)) for entry in params.get("files") or []}
        return cls(files=files, units=tuple(sorted(set(params.get("units") or []))))

    def as_dict(self) -> dict[str, Any]:
        return {"files": [{"path": path, "content": content} for path, content in sorted(self.files.items())], "units": list(self.units)}


@dataclass(frozen=True)
class Verdict:
    holds: bool  # the host holds what its last converge recorded, for the same inputs
    reason: str  # why not (empty when it holds)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_file(path: str, content: bool) -> str:
    """Type, mode and owner of ``path`` (not followed), with its content's digest when ``content``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    except OSError as error:
        return f"unreadable {error.errno}"
    owner = f"{stat.S_IMODE(info.st_mode):o} {info.st_uid}:{info.st_gid}"
    if stat.S_ISLNK(info.st_mode):
        return f"link {os.readlink(path)}"
    if stat.S_ISDIR(info.st_mode):
        return f"dir {owner}"
    if stat.S_ISREG(info.st_mode):
        return f"file {owner} {_sha256(Path(path)) if content else ''}".rstrip()
    return f"other {owner}"


RUNNING = ("active", "reloading")  # ActiveState of a unit that runs
SETTLING = ("activating", "deactivating", "reloading")  # on its way, just after a (re)start


def unit_states(units: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """``(ActiveState, UnitFileState)`` of each unit, in one systemctl call."""
    if not units:
        return {}
    shown = subprocess.run(
        ["systemctl", "show", "--property=ActiveState,UnitFileState", "--", *units],
        capture_output=True,
        text=True,
        check=False,
    )
    blocks = shown.stdout.strip().split("\n\n") if shown.returncode == 0 else []
    states: dict[str, tuple[str, str]] = {}
    for unit, block in zip(units, blocks, strict=False):
        values = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[unit] = (values.get("ActiveState") or "unknown", values.get("UnitFileState") or "")
    return {unit: states.get(unit, ("unknown", "")) for unit in units}


def settled_unit_states(units: tuple[str, ...], within: float = 30.0) -> dict[str, tuple[str, str]]:
    """Unit states once none is still starting, stopping or reloading (at most ``within`` seconds)."""
    deadline = time.monotonic() + within
    states = unit_states(units)
    while any(active in SETTLING for active, _ in states.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
        states = unit_states(units)
    return states


def addresses() -> list[str]:
    """This host's global addresses (a converge wrote them into configurations)."""
    try:
        shown = subprocess.run(["ip", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True, check=False)
    except OSError:
        return []
    return sorted(fields[3] for fields in (line.split() for line in shown.stdout.splitlines()) if len(fields) > 3)


def observe(watch: Watch, units: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """What this host holds now, of what ``watch`` names (``units``: their states, when read already)."""
    states = unit_states(watch.units) if units is None else units
    return {
        "files": {path: describe_file(path, content) for path, content in sorted(watch.files.items())},
        "units": {unit: list(state) for unit, state in states.items()},
        "packages": _sha256(DPKG_STATUS) if DPKG_STATUS.exists() else "",
        "addresses": addresses(),
    }


def difference(recorded: dict[str, Any], now: dict[str, Any]) -> str:
    """The first way ``now`` differs from ``recorded``, in words; empty when it does not."""
    files_now, files_then = now.get("files", {}), recorded.get("files", {})
    changed = [path for path in sorted(files_then) if files_now.get(path) != files_then[path]]
    if changed:
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        return f"{changed[0]} changed ({files_now.get(changed[0])}){more}"
    # The converge started every unit it names: each must run now, enabled as it was then.
    units_now, units_then = now.get("units", {}), recorded.get("units", {})
    for unit in sorted(units_then):
        active, enabled = units_now.get(unit) or ("unknown", "")
        if active not in RUNNING:
            return f"unit {unit} is {active}"
        if enabled != units_then[unit][1]:
            return f"unit {unit} is {enabled or 'not installed'} (was {units_then[unit][1]})"
    if now.get("packages") != recorded.get("packages"):
        return "the installed packages changed"
    if now.get("addresses") != recorded.get("addresses"):
        return "its addresses changed"
    return ""


def read_stamp(path: Path = STAMP) -> dict[str, Any] | None:
    try:
        stamp = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and stamp.get("version") == STAMP_VERSION else None


def check(inputs: str, path: Path = STAMP) -> Verdict:
    """Whether this host holds what its last converge recorded, for the platform's ``inputs``."""
    stamp = read_stamp(path)
    if stamp is None:
        return Verdict(False, "no record of a converge")
    if stamp.get("inputs") != inputs:
        return Verdict(False, "the roles, playbooks or inventory changed since its last converge")
    watch = Watch.from_params(stamp.get("watch") or {})
    differs = difference(stamp.get("observed") or {}, observe(watch))
    return Verdict(not differs, differs)


def record(inputs: str, watch: Watch, path: Path = STAMP) -> bool:
    """Record what this host holds now as its last converge's; True when the record changed."""
    stamp = {
        "version": STAMP_VERSION,
        "inputs": inputs,
        "watch": watch.as_dict(),
        "observed": observe(watch, settled_unit_states(watch.units)),
    }
    previous = read_stamp(path)
    if previous is not None and {key: previous.get(key) for key in stamp} == stamp:
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, json.dumps({**stamp, "recorded_at": datetime.now(UTC).isoformat(timespec="seconds")}, indent=1) + "\n", 0o600)
    return True
