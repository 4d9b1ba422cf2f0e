"""A real OpenSSH server on this host for one test's duration, and the client options that reach it.

Debian's ``openssh-server`` (``/usr/sbin/sshd``, installed by ``make setup`` with its system daemon
not started) runs as ``sshd -D -e -f CONFIG`` on 127.0.0.1 and a free port, with everything of
its own in one directory: a host key, the AuthorizedKeysFile holding a fresh client key, its pid
file and its log. Nothing of the system's ``/etc/ssh`` or ``~/.ssh`` is read or changed. The client
checks the server's host key against a known_hosts file holding it (``StrictHostKeyChecking=yes``).

``StrictModes no``: the directory lives under /tmp, which is world-writable, and sshd's strict
modes refuse an AuthorizedKeysFile below such a directory (the file itself is the test's own, 0600).
"""

from __future__ import annotations

import getpass
import shlex
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from waiting import eventually, stop_process

SSHD = Path("/usr/sbin/sshd")
# Where sshd's unprivileged child chroots; the package's tmpfiles.d makes it when the system's daemon starts.
PRIVILEGE_SEPARATION_DIR = Path("/run/sshd")
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str  # the login the client uses: the one running the test (root, as the lab needs)
    client_key: Path
    known_hosts: Path
    log: Path

    @property
    def address(self) -> str:
        """``USER@HOST:PORT``, as ``moorage remote add --ssh-host`` takes it."""
        return f"{self.user}@{LOOPBACK}:{self.port}"

    @property
    def ssh_command(self) -> str:
        """The client as GIT_SSH_COMMAND gives it to git: the test's key, the test's known_hosts, nothing of ~/.ssh."""
        options = [
            "-F", "/dev/null", "-i", str(self.client_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
        ]  # fmt: skip
        return shlex.join(["ssh", *options])

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        """COMMAND in a login session of the server, as git's ``git-receive-pack`` runs there."""
        argv = [*shlex.split(self.ssh_command), "-p", str(self.port), f"{self.user}@{LOOPBACK}", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def _keygen(path: Path, comment: str) -> str:
    """A new ed25519 key pair at PATH (private, 0600) and PATH.pub; the public key's ``TYPE BASE64`` part."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True, capture_output=True)
    kind, key, *_ = path.with_name(path.name + ".pub").read_text().split()
    return f"{kind} {key}"


@contextmanager
def openssh_server(directory: Path) -> Iterator[SshServer]:
    """sshd running (and answering) on 127.0.0.1:PORT while the block runs; stopped after it."""
    if not SSHD.is_file():
        pytest.fail(f"{SSHD} is missing: the openssh-server package is part of `make setup` (Makefile APT_PACKAGES)")
    user, port = getpass.getuser(), free_port()
    host_key = directory / "ssh_host_ed25519_key"
    host_public = _keygen(host_key, "moorage-test-sshd")
    client_key = directory / "id_ed25519"
    authorized_keys = directory / "authorized_keys"
    authorized_keys.write_text(_keygen(client_key, "developer@moorage-test") + "\n")
    authorized_keys.chmod(0o600)
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[{LOOPBACK}]:{port} {host_public}\n")
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress {LOOPBACK}:{port}\n"
        f"HostKey {host_key}\n"
        f"PidFile {directory / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized_keys}\n"
        f"AllowUsers {user}\n"
        "AuthenticationMethods publickey\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "X11Forwarding no\n"
        "AllowTcpForwarding no\n"
    )
    checked = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True)
    if checked.returncode != 0 and "privilege separation directory" in checked.stderr:
        PRIVILEGE_SEPARATION_DIR.mkdir(mode=0o755, exist_ok=True)
        checked = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, f"sshd -t: {checked.stderr.strip()}"
    log = directory / "sshd.log"
    with log.open("w") as output:
        # A minimal environment of its own: sshd builds each session's environment afresh anyway.
        process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=output, stderr=subprocess.STDOUT,
                                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})  # fmt: skip
    try:

        def listening() -> bool | None:
            if process.poll() is not None:
                pytest.fail(f"sshd exited {process.returncode}: {log.read_text().strip()[-2000:]}")
            return True if f"Server listening on {LOOPBACK} port {port}" in log.read_text() else None

        eventually(listening, within=30, every=0.2, what=f"sshd listening on {LOOPBACK}:{port}")
        yield SshServer(port, user, client_key, known_hosts, log)
    finally:
        stop_process(process)
