"""Commands on the hosts over SSH, reached the way Ansible reaches them, one warm connection per host.

User, port, key and common arguments come from the inventory (:class:`moorage.inventory.SshTarget`).
:class:`Connections` keeps one SSH master connection per host (``ControlMaster``) for the whole
command, so every later command to a host costs one round trip instead of a handshake. A command
that needs root runs as root: directly when the SSH user is root, else through ``sudo -n`` (the
hosts' passwordless sudo, as Ansible's ``become``).
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from moorage.inventory import Inventory, SshTarget

# A host that stops answering is given up on after about 15 s instead of TCP's minutes.
KEEPALIVE = ("-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3")
CONTROL_PERSIST_SECONDS = 120
SSH_FAILED = 255  # ssh's own exit status when the connection failed


def as_root(command: Sequence[str]) -> str:
    """A remote shell line that runs ``command`` as root: as it is for root, else with ``sudo -n``."""
    line = shlex.join(command)
    return f'if [ "$(id -u)" = 0 ]; then exec {line}; else exec sudo -n -- {line}; fi'  # --: a command is never read as an option of sudo


def ssh_argv(target: SshTarget, remote_line: str, *, control_path: Path | None = None, connect_timeout: int = 10) -> list[str]:
    """``ssh ... HOST -- LINE``; connection options of ours come first (ssh takes an option's first value)."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}", *KEEPALIVE]
    if control_path is not None:
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control_path}", "-o", f"ControlPersist={CONTROL_PERSIST_SECONDS}"]
    if target.private_key:
        argv += ["-i", target.private_key]
    if target.port is not None:
        argv += ["-p", str(target.port)]
    argv += target.common_args
    destination = f"{target.user}@{target.address}" if target.user else target.address
    return [*argv, destination, "--", remote_line]


@dataclass(frozen=True)
class Completed:
    host: str
    returncode: int
    stderr: str

    @property
    def unreachable(self) -> bool:
        return self.returncode == SSH_FAILED

    def reason(self) -> str:
        lines = [line for line in self.stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"exit {self.returncode}"


def _feed(pipe: Any, data: bytes) -> None:
    # The CLI gives SIGPIPE its default action (`moorage logs -f | head` ends quietly), which would kill
    # the whole command when an ssh exits before reading its stdin (an unreachable host): this thread
    # blocks it, so the write fails with EPIPE instead and the host's run reports the ssh failure.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
    with contextlib.suppress(BrokenPipeError, OSError):
        pipe.write(data)
        pipe.close()


class Connections:
    """``with Connections(inventory) as hosts: hosts.run("lab-1", LINE, on_line)``; masters closed at the end."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._dir: Path | None = None  # made on first use (a short path: sockets have a length limit)
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def control_path(self, host: str) -> Path:
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="moorage-ssh-"))
            self._used.add(host)
            return self._dir / host

    def argv(self, host: str, remote_line: str) -> list[str]:
        return ssh_argv(self.inventory.ssh_target(host), remote_line, control_path=self.control_path(host))

    def run(self, host: str, line: str, on_line: Callable[[str], None] = lambda _: None, *, stdin: bytes | Path | None = None) -> Completed:
        """The shell ``line`` on ``host`` (``stdin``: bytes or a file it reads); its stdout lines go to ``on_line`` as they come."""
        source: Any = subprocess.DEVNULL if stdin is None else subprocess.PIPE if isinstance(stdin, bytes) else stdin.open("rb")
        try:
            with subprocess.Popen(self.argv(host, line), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=source) as process:
                if isinstance(stdin, bytes) and process.stdin is not None:
                    feeder = threading.Thread(target=_feed, args=(process.stdin, stdin), daemon=True)
                    feeder.start()
                errors: list[bytes] = []
                reader = threading.Thread(target=lambda: errors.append(process.stderr.read() if process.stderr else b""), daemon=True)
                reader.start()
                for output in process.stdout or []:
                    on_line(output.decode(errors="replace").rstrip("\n"))
                reader.join()
        finally:
            if isinstance(stdin, Path) and not isinstance(source, int):
                source.close()
        return Completed(host, process.returncode, b"".join(errors).decode(errors="replace"))

    def upload(self, host: str, source: Path, destination: str) -> Completed:
        """``source`` to ``destination`` on ``host`` as root (mode 0644), written whole, then renamed."""
        directory = destination.rsplit("/", 1)[0] or "/"
        script = f'mkdir -p {shlex.quote(directory)} && cat > "$0.$$" && chmod 0644 "$0.$$" && mv "$0.$$" "$0"'
        return self.run(host, as_root(["sh", "-c", script, destination]), stdin=source)

    def warm(self, hosts: Iterable[str]) -> None:
        """Open the master connections now, in the background (while something else runs)."""
        for host in sorted(set(hosts)):
            threading.Thread(target=self.run, args=(host, "true"), daemon=True).start()

    def close(self) -> None:
        """Close the master connections (each in its own ``ssh -O exit``) and forget them."""
        with self._lock:
            directory, used = self._dir, sorted(self._used)
            self._dir, self._used = None, set()
        if directory is None:
            return
        for host in used:
            exit_argv = ssh_argv(self.inventory.ssh_target(host), "true", control_path=directory / host)
            subprocess.run([*exit_argv[:1], "-O", "exit", *exit_argv[1:-2]], capture_output=True, timeout=10, check=False)
        shutil.rmtree(directory, ignore_errors=True)
