"""Start, stop and inspect an instance on its host: a systemd unit or a Docker container.

A graceful stop is the runtime's own: systemd sends the unit's ``KillSignal=``, waits
``TimeoutStopSec=`` (the spec's ``stop.gracePeriod``) and then kills; ``docker stop`` sends the
container's stop signal, waits ``--time`` and then kills.

Switching a systemd instance to another release rewrites its env file and points its ``current``
link at the release's files; the unit stays the same file, so no ``daemon-reload`` is needed
(only when the unit itself changes, such as another command or memory limit, or is new).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .definition import InstanceDefinition
from .files import link_atomic, locked, remove_path, write_atomic
from .layout import UNPACKED_MARKER, ServiceLayout

COMMAND_TIMEOUT = 60.0
LOG_LINES = 20


class RuntimeFailure(Exception):
    """systemctl or docker refused (the message holds its words)."""


def run(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RuntimeFailure(f"{' '.join(argv[:3])}: {err}") from err
    if check and done.returncode != 0:
        words = " ".join((done.stderr.strip() or done.stdout.strip()).split())[:300]
        raise RuntimeFailure(f"{' '.join(argv[:3])} exited {done.returncode}: {words}")
    return done


class Runtime(Protocol):
    def is_running(self, instance: str) -> bool: ...

    def stop(self, instance: str, grace: float) -> None: ...

    def install(self, definition: InstanceDefinition) -> None: ...

    def start(self, definition: InstanceDefinition) -> None: ...

    def remove(self, instance: str, grace: float) -> None: ...

    def last_lines(self, instance: str, count: int = LOG_LINES) -> list[str]: ...


def runtime_for(kind: str, layout: ServiceLayout) -> Runtime:
    return Docker(layout) if kind == "docker" else Systemd(layout)


class Systemd:
    def __init__(self, layout: ServiceLayout) -> None:
        self.layout = layout

    def is_running(self, instance: str) -> bool:
        try:
            return run(["systemctl", "is-active", "--quiet", self.layout.unit_name(instance)], check=False).returncode == 0
        except RuntimeFailure:
            return False

    def stop(self, instance: str, grace: float) -> None:
        if self.is_running(instance):
            run(["systemctl", "stop", self.layout.unit_name(instance)], timeout=grace + COMMAND_TIMEOUT)

    def install(self, definition: InstanceDefinition) -> None:
        layout = self.layout
        files = layout.release_dir(definition.files_release)
        if not (files / UNPACKED_MARKER).exists():
            raise RuntimeFailure(f"the files of release {definition.files_release} are not on this host ({files})")
        write_atomic(layout.env_file(definition.instance), definition.env_text(), 0o600)
        link_atomic(layout.current_link(definition.instance), files)
        unit = layout.unit_file(definition.instance)
        changed = write_atomic(unit, definition.unit, 0o644)
        link_atomic(layout.wants_link(definition.instance), unit)  # enabled: started at boot
        if changed or self._needs_reload(definition.instance):
            self._daemon_reload()

    def start(self, definition: InstanceDefinition) -> None:
        unit = self.layout.unit_name(definition.instance)
        # A release that crashed or was OOM-killed in a loop leaves the unit over its start limit
        # ("Start request repeated too quickly"); the release started now (often the previous one,
        # on revert) gets the unit's counters fresh.
        run(["systemctl", "reset-failed", unit], check=False)
        run(["systemctl", "start", unit])

    def remove(self, instance: str, grace: float) -> None:
        self.stop(instance, grace)
        removed = [remove_path(path) for path in (self.layout.wants_link(instance), self.layout.unit_file(instance))]
        for path in (self.layout.env_file(instance), self.layout.current_link(instance)):
            remove_path(path)
        if any(removed):
            self._daemon_reload()

    def last_lines(self, instance: str, count: int = LOG_LINES) -> list[str]:
        done = run(["journalctl", "--no-pager", "-o", "cat", "-n", str(count), "-u", self.layout.unit_name(instance)], check=False)
        return [line for line in done.stdout.splitlines() if line.strip()][-count:]

    def _needs_reload(self, instance: str) -> bool:
        done = run(["systemctl", "show", "-p", "NeedDaemonReload,LoadState", self.layout.unit_name(instance)], check=False)
        return "NeedDaemonReload=yes" in done.stdout or "LoadState=not-found" in done.stdout

    def _daemon_reload(self) -> None:
        # Instances switched side by side on one host reload one after the other.
        with locked(Path(self.layout.config_root) / ".daemon-reload.lock"):
            run(["systemctl", "daemon-reload"])


class Docker:
    def __init__(self, layout: ServiceLayout) -> None:
        self.layout = layout

    def is_running(self, instance: str) -> bool:
        try:
            done = run(["docker", "inspect", "--format", "{{.State.Running}}", self.layout.container_name(instance)], check=False)
        except RuntimeFailure:
            return False
        return done.returncode == 0 and done.stdout.strip() == "true"

    def stop(self, instance: str, grace: float) -> None:
        name = self.layout.container_name(instance)
        if shutil.which("docker") is None:
            return  # no Docker on this host: no container either
        if run(["docker", "inspect", "--format", "{{.Id}}", name], check=False).returncode != 0:
            return
        run(["docker", "stop", "--time", str(int(grace)), name], timeout=grace + COMMAND_TIMEOUT)
        run(["docker", "rm", name])

    def install(self, definition: InstanceDefinition) -> None:
        write_atomic(self.layout.env_file(definition.instance), definition.env_text(), 0o600)

    def start(self, definition: InstanceDefinition) -> None:
        docker = definition.docker
        if docker is None:
            raise RuntimeFailure(f"{definition.instance}: no container defined")
        argv = [
            "docker", "run", "--detach",
            "--name", self.layout.container_name(definition.instance),
            "--env-file", str(self.layout.env_file(definition.instance)),
            "--restart", "unless-stopped",
            "--log-driver", "journald", "--log-opt", f"tag={definition.service}",
            "--stop-signal", docker.stop_signal, "--stop-timeout", str(int(docker.stop_grace)),
            "--label", f"moorage.service={definition.service}", "--label", f"moorage.release={definition.release}",
        ]  # fmt: skip
        for port in docker.ports:
            argv += ["--publish", port]
        for volume in docker.volumes:
            argv += ["--volume", volume]
        if docker.memory is not None:
            argv += ["--memory", str(docker.memory)]
        if docker.cpus is not None:
            argv += ["--cpus", f"{docker.cpus:g}"]
        run([*argv, docker.image, *docker.command])

    def remove(self, instance: str, grace: float) -> None:
        self.stop(instance, grace)
        remove_path(self.layout.env_file(instance))

    def last_lines(self, instance: str, count: int = LOG_LINES) -> list[str]:
        done = run(["docker", "logs", "--tail", str(count), self.layout.container_name(instance)], check=False)
        return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()][-count:]
