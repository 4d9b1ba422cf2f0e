"""SSH into lab machines with the lab's own key (generated once per lab, kept 0600 in its state dir)."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from moorage.lab.host import run
from moorage.lab.paths import lab_dir

# Machines are recreated with new host keys; the lab trusts its bridge instead of a known_hosts file.
SSH_OPTIONS = (
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "IdentitiesOnly=yes",
    "-o", "LogLevel=ERROR",
)  # fmt: skip


def key_path(lab_name: str | None = None) -> Path:
    return lab_dir(lab_name) / "id_ed25519"


def ensure_key(lab_name: str) -> Path:
    """The lab's private key, generated on first use; its ``.pub`` goes into every machine."""
    key = key_path(lab_name)
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"moorage-lab-{lab_name}", "-f", key], what="ssh-keygen")
    key.chmod(0o600)
    return key


def ssh_argv(key: Path, address: str, *, interactive: bool = False, connect_timeout: int = 5) -> list[str]:
    """``ssh`` up to (not including) the remote command."""
    mode = ["-t"] if interactive else ["-o", "BatchMode=yes"]
    return ["ssh", *SSH_OPTIONS, *mode, "-o", f"ConnectTimeout={connect_timeout}", "-i", str(key), f"root@{address}"]


def command_argv(key: Path, address: str, command: Sequence[str]) -> list[str]:
    """``ssh`` running ``command`` on the machine with each argument as given, like ``kubectl exec``.

    ssh joins everything after the host with spaces and the remote shell splits it again, so each
    argument is quoted for that shell (``"a b"`` stays one argument, ``$HOME`` stays text); ``--``
    keeps ssh from reading an argument such as ``-v`` as its own option. No command: a login shell.
    """
    if not command:
        return ssh_argv(key, address, interactive=True)
    return [*ssh_argv(key, address), "--", shlex.join(command)]


def run_remote(key: Path, address: str, command: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a shell command on a machine; the result says how it went (no exception for a non-zero exit)."""
    return subprocess.run([*ssh_argv(key, address), command], capture_output=True, text=True, timeout=timeout, check=False)
