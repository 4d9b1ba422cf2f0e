"""Take a whole service off this host: the deploy agent's part of ``moorage remove``.

Every instance of the service found here, whatever left it (a state file, a definition of any
release, a ``current`` link, an env file, a unit, a container labelled with the service, a
registration with the local Consul agent), is removed the way a scale-down removes one
(``instance.py``: maintenance on, wait until every lb stopped routing it, deregister, graceful
stop, its unit or container and env file deleted). Then the service's directories go:
``ROOT/NAME`` (release files, archives, ``current`` links) and ``CONFIG/NAME`` (definitions, env
files, state, the service's Consul token file). A host that has nothing of the service is left
as it is (``changed`` false), so the controller can ask every host.

Kept: the data of the spec's ``volumes`` (and the ``moorage-NAME`` user owning it), a Docker
image (other services may run it), the journal. The service's Consul ACL token and its KV
records are the controller's to delete (``moorage.deploy.removal``).

``python3 -I AGENT purge --host H SERVICE [--lb LB]...`` reads the Consul token to use on stdin
(the controller's management token; empty: the service's own token file), prints progress as
JSON lines and one result line: ``ok``, ``changed``, ``instances`` (outcomes), ``removed``
(paths, units, containers).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .consul import ConsulClient, ConsulError, read_token
from .files import remove_path
from .instance import Agent, Emit, Outcome, _Lines, add_host_arguments, in_parallel
from .layout import ServiceLayout
from .runtime import Docker, RuntimeFailure, Systemd, run

DEFAULT_GRACE = 30.0


@dataclass
class Purge:
    """What became of the service on this host."""

    instances: list[Outcome] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # paths, units and containers that were here
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(outcome.ok for outcome in self.instances)

    @property
    def changed(self) -> bool:
        return bool(self.removed) or any(outcome.changed for outcome in self.instances)


def unit_files(layout: ServiceLayout) -> dict[str, Path]:
    """instance -> its unit file, for the units of this service (their working directory is under its ``current``)."""
    marker = f"WorkingDirectory={layout.current_dir}/"
    found: dict[str, Path] = {}
    for unit in Path(layout.units_dir).glob("moorage-*.service"):
        try:
            lines = unit.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith(marker):
                found[line.removeprefix(marker).strip()] = unit
    return found


def containers(service: str) -> list[str]:
    """Names of the containers (running or not) labelled with the service; none without Docker."""
    if shutil.which("docker") is None:
        return []
    done = run(["docker", "ps", "--all", "--filter", f"label=moorage.service={service}", "--format", "{{.Names}}"], check=False)
    return [name for name in done.stdout.split() if name] if done.returncode == 0 else []


def registrations(client: ConsulClient, service: str) -> list[str]:
    """IDs of the service's instances registered with this host's Consul agent."""
    document = client.get("/v1/agent/services", params={"filter": f'Service == "{service}" and "moorage" in Tags'}, timeout=10).document
    return sorted(document) if isinstance(document, dict) else []


def instances_here(layout: ServiceLayout, client: ConsulClient) -> list[str]:
    """Every instance of the service this host has anything of."""
    names: set[str] = set(layout.instances_with_state())
    if layout.definitions_root.is_dir():
        names |= {path.stem for path in layout.definitions_root.glob("*/*.json")}
    if layout.current_dir.is_dir():
        names |= {path.name for path in layout.current_dir.iterdir()}
    if layout.config_dir.is_dir():
        names |= {path.stem for path in layout.config_dir.glob("*.env")}
    names |= set(unit_files(layout))
    prefix = layout.container_name("")
    names |= {name.removeprefix(prefix) for name in containers(layout.service) if name.startswith(prefix)}
    names |= set(registrations(client, layout.service))
    return sorted(names)


def purge(layout: ServiceLayout, client: ConsulClient, emit: Emit, host: str, lbs: list[str]) -> Purge:
    """Remove every instance of ``layout.service`` here, then its files (see the module's docstring)."""
    result = Purge()
    try:
        found = instances_here(layout, client)
    except (ConsulError, RuntimeFailure) as err:
        result.problems.append(f"{layout.service} on {host}: cannot list its instances: {err}")
        return result
    units, boxes = unit_files(layout), containers(layout.service)
    agent = Agent(layout, client, emit, host)
    result.instances = in_parallel(lambda name: agent.remove(name, lbs), found, len(found) or 1)
    if not all(outcome.ok for outcome in result.instances):
        return result  # the files stay, so that running the removal again finds the instances again
    try:
        for instance in sorted(unit_files(layout)):  # a unit that no instance's state pointed at
            Systemd(layout).remove(instance, DEFAULT_GRACE)
        for name in containers(layout.service):
            Docker(layout).stop(name.removeprefix(layout.container_name("")), DEFAULT_GRACE)
    except RuntimeFailure as err:
        result.problems.append(f"{layout.service} on {host}: {err}")
        return result
    result.removed += [f"unit {unit.name}" for _, unit in sorted(units.items())] + [f"container {name}" for name in boxes]
    for directory in (layout.service_dir, layout.config_dir):
        if remove_path(directory):
            result.removed.append(str(directory))
    return result


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="moorage-agent purge", description="Remove every instance and file of a service on this host.")
    add_host_arguments(parser)
    parser.add_argument("--lb", action="append", default=[], help="lb host that must stop routing an instance first (repeat)")
    parser.add_argument("service")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    arguments = _arguments(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # finish even when the controller's connection goes
    emit = _Lines()
    layout = ServiceLayout(arguments.service, arguments.root, arguments.config_root, arguments.units_dir)
    host = arguments.host or os.uname().nodename
    given = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read().strip()
    try:
        token = given or read_token(os.environ, str(layout.token_file) if layout.token_file.exists() else "")
    except OSError as err:
        emit({"event": "result", "ok": False, "changed": False, "host": host, "instances": [], "msg": f"{layout.token_file}: {err}"})
        return 1
    result = purge(layout, ConsulClient(arguments.consul, token), emit, host, arguments.lb)
    document: dict[str, Any] = {
        "event": "result",
        "ok": result.ok,
        "changed": result.changed,
        "host": host,
        "instances": [outcome.as_dict() for outcome in result.instances],
        "removed": result.removed,
        "msg": "; ".join(result.problems),
    }
    emit(document)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
