"""SSH into lab machines with the lab's own key (generated once per lab, kept 0600 in its state dir).

The lab logs in as its user (``LAB_USER``, passwordless sudo; root login is off, as on cloud images),
and what it runs there runs as root through ``sudo -n``, as Ansible's ``become`` does.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from moorage.deploy.remote import as_root
from moorage.lab.host import run
from moorage.lab.image import LAB_USER
from moorage.lab.paths import lab_dir

# An interactive root shell: the user's login, then root's (``sudo -i``: root's login shell in root's home).
ROOT_LOGIN = "exec sudo -i"
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
    """``ssh`` as the lab user, up to (not including) the remote command (which runs as that user)."""
    mode = ["-t"] if interactive else ["-o", "BatchMode=yes"]
    return ["ssh", *SSH_OPTIONS, *mode, "-o", f"ConnectTimeout={connect_timeout}", "-i", str(key), f"{LAB_USER}@{address}"]


def command_argv(key: Path, address: str, command: Sequence[str]) -> list[str]:
    """``ssh`` running ``command`` as root on the machine with each argument as given, like ``kubectl exec``.

    ssh joins everything after the host with spaces and the remote shell splits it again, so each
    argument is quoted for that shell (``"a b"`` stays one argument, ``$HOME`` stays text); ``--``
    keeps ssh from reading an argument such as ``-v`` as its own option. No command: root's login shell.
    """
    if not command:
        return [*ssh_argv(key, address, interactive=True), "--", ROOT_LOGIN]
    return [*ssh_argv(key, address), "--", as_root(command)]


def run_remote(key: Path, address: str, command: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a shell command as root on a machine; the result says how it went (no exception for a non-zero exit).

    The line reaches root's shell on its stdin (``sudo -n sh -s``), not on sudo's command line: sudo
    logs its command line to the machine's journal, and a check's command may carry a value (a token,
    a secret a test looks for) that has no business there. sudo's own log stays for everything else.
    """
    argv = [*ssh_argv(key, address), "--", as_root(["sh", "-s"])]
    return subprocess.run(argv, input=command + "\n", capture_output=True, text=True, timeout=timeout, check=False)
