"""The journal of a service's instances, read over SSH from every host that runs one, in parallel.

SSH goes the way Ansible would (``moorage.deploy.remote``: user, port, key and common arguments
from the inventory), for work that streams from hosts, such as ``moorage logs -f``, where a
playbook run does not fit.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Sequence

from moorage.deploy.remote import as_root, ssh_argv
from moorage.errors import BadInput, MoorageError
from moorage.inventory import Inventory

LineHandler = Callable[[str, str], None]  # (host, line)


def journal_command(service: str, *, follow: bool, since: str | None) -> list[str]:
    return (
        ["journalctl", "--no-pager", "-o", "short-iso", "-t", service] + (["-f"] if follow else []) + (["--since", since] if since else [])
    )


def stream_journals(
    inventory: Inventory, service: str, hosts: Sequence[str], on_line: LineHandler, *, follow: bool = False, since: str | None = None
) -> None:
    """Every line of ``service``'s journal on ``hosts`` goes to ``on_line(host, line)`` as it comes.

    Raises once all hosts are done, naming each host whose journal could not be read.
    """
    if not hosts:
        raise BadInput(f"{service}: no instances registered in Consul")
    command = journal_command(service, follow=follow, since=since)
    argvs = {host: ssh_argv(inventory.ssh_target(host), as_root(command)) for host in sorted(set(hosts))}
    failures: list[str] = []

    def read(host: str) -> None:
        with subprocess.Popen(argvs[host], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
            for line in process.stdout or []:
                on_line(host, line.rstrip())
            error = (process.stderr.read() if process.stderr else "").strip()
        if process.returncode != 0:
            failures.append(f"{host}: {error.splitlines()[-1] if error else f'exit {process.returncode}'}")

    readers = [threading.Thread(target=read, args=(host,), daemon=True) for host in argvs]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    if failures:
        raise MoorageError(f"{service}: could not read the journal on {'; '.join(sorted(failures))}")
