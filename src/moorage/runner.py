"""Run one of moorage's playbooks through ansible-runner and report what happened.

Every Ansible setting moorage relies on lives here (no ansible.cfg, no shell strings): roles and
plugins from :mod:`moorage.paths`, SSH pipelining and ControlPersist, forks, a JSON fact cache per
inventory. Each event goes to the caller's ``on_event`` while the play runs (a
:class:`moorage.reporting.Reporter` shows them); the caller gets a :class:`PlaybookResult` with
per-host counts and the failed tasks.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from moorage import paths
from moorage.state_paths import fact_cache_dir

DEFAULT_FORKS = 20
SSH_ARGS = "-o ControlMaster=auto -o ControlPersist=120s -o ServerAliveInterval=15"
FACT_CACHE_SECONDS = 3600

EventHandler = Callable[[Mapping[str, Any]], None]
NO_MESSAGE = "failed (no message)"  # a failure without words (e.g. a no_log task's censored result)


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class TaskFailure:
    host: str
    play: str
    task: str
    message: str
    unreachable: bool = False


@dataclass
class PlaybookResult:
    playbook: str
    rc: int
    hosts: dict[str, HostStats] = field(default_factory=dict)
    failures: list[TaskFailure] = field(default_factory=list)
    output_tail: list[str] = field(default_factory=list)  # Ansible's own words when it failed before any task

    @property
    def succeeded(self) -> bool:
        return self.rc == 0 and not self.failures

    @property
    def changed(self) -> int:
        return sum(stats.changed for stats in self.hosts.values())

    def first_failure(self) -> str:
        """The first failed task as ``host: message``, or the exit status when no task failed."""
        first = self.failures[0] if self.failures else None
        return f"{first.host}: {first.message}" if first else f"ansible-playbook exited with status {self.rc}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "ok": self.succeeded,
            "rc": self.rc,
            "hosts": {host: asdict(stats) for host, stats in sorted(self.hosts.items())},
            "failures": [asdict(failure) for failure in self.failures],
        }


def ansible_envvars() -> dict[str, str]:
    """moorage's tuned Ansible settings, as the environment ansible-playbook reads them from."""
    plugins = paths.plugins_dir()
    # This Python's ansible-playbook first, whatever the caller's PATH (e.g. a venv not activated).
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    return {
        "PATH": search_path,
        "ANSIBLE_ROLES_PATH": str(paths.roles_dir()),
        "ANSIBLE_COLLECTIONS_PATH": paths.collections_search_path(),  # moorage.platform.* by FQCN
        "ANSIBLE_INVENTORY_PLUGINS": str(plugins / "inventory"),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": SSH_ARGS,
        "ANSIBLE_FORKS": str(DEFAULT_FORKS),
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": str(FACT_CACHE_SECONDS),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_INTERPRETER_PYTHON": "auto_silent",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_NOCOLOR": "True",
    }


def run_playbook(
    name: str,
    inventory: Path,
    extravars: Mapping[str, Any] | None = None,
    *,
    check: bool = False,
    limit: str | None = None,
    vault_password_files: Sequence[Path] = (),
    on_event: EventHandler | None = None,
) -> PlaybookResult:
    """Run ``playbooks/<name>`` against ``inventory``; never raises for a failed play.

    ``vault_password_files`` open the inventory's Ansible Vault files (``--vault-password-file``).
    """
    playbook = paths.playbook(name)
    collector = _ResultCollector(name, on_event)
    # MOORAGE_KEEP_RUNS=DIR keeps each run's ansible-runner directory (events, artifacts) under DIR.
    keep_under = os.environ.get("MOORAGE_KEEP_RUNS")
    run_dir = (
        nullcontext(tempfile.mkdtemp(prefix="moorage-run-", dir=keep_under))
        if keep_under
        else tempfile.TemporaryDirectory(prefix="moorage-run-")
    )
    with run_dir as private_data_dir:
        runner = ansible_runner.run(
            private_data_dir=private_data_dir,
            playbook=str(playbook),
            inventory=str(inventory.resolve()),
            extravars=dict(extravars or {}),
            envvars=ansible_envvars(),
            # ansible-runner sets the jsonfile cache's directory itself (an environment variable
            # would be overwritten with the run's own, thrown-away artifacts directory).
            fact_cache_type="jsonfile",
            fact_cache=str(fact_cache_dir(inventory)),
            cmdline=_cmdline(check, vault_password_files),
            limit=limit,
            event_handler=collector.handle,
            quiet=True,
            suppress_env_files=True,
        )
        collector.result.rc = runner.rc
    return collector.result


def _cmdline(check: bool, vault_password_files: Sequence[Path]) -> str | None:
    arguments = ["--check", "--diff"] if check else []
    for password in vault_password_files:
        arguments += ["--vault-password-file", str(password.absolute())]
    return shlex.join(arguments) if arguments else None


class _ResultCollector:
    """Folds the event stream into a PlaybookResult and passes each event on."""

    def __init__(self, playbook: str, on_event: EventHandler | None) -> None:
        self.result = PlaybookResult(playbook=playbook, rc=-1)
        self._on_event = on_event

    def handle(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind == "runner_on_failed" and not data.get("ignore_errors"):
            self.result.failures.append(_failure(data, unreachable=False))
        elif kind == "runner_on_unreachable":
            self.result.failures.append(_failure(data, unreachable=True))
        elif kind == "playbook_on_stats":
            self.result.hosts = _host_stats(data)
        elif kind in ("verbose", "error") and event.get("stdout", "").strip():
            self.result.output_tail = [*self.result.output_tail[-19:], *event["stdout"].strip().splitlines()]
        if self._on_event is not None:
            self._on_event(event)
        return True  # keep the event in ansible-runner's artifacts too


def _failure(data: Mapping[str, Any], *, unreachable: bool) -> TaskFailure:
    return TaskFailure(
        host=data.get("host", "?"),
        play=data.get("play", ""),
        task=data.get("task", ""),
        message=failure_message(data.get("res", {})),
        unreachable=unreachable,
    )


def failure_message(res: Mapping[str, Any]) -> str:
    """The one line that says why a task failed: its msg and stderr, or a failed loop item's."""
    for item in res.get("results", []) or []:
        if isinstance(item, Mapping) and item.get("failed"):
            return failure_message(item)
    parts = [res.get(key) for key in ("msg", "stderr", "module_stderr")]
    text = ": ".join(part.strip() for part in parts if isinstance(part, str) and part.strip())
    return " ".join(text.split()) or NO_MESSAGE


def _host_stats(data: Mapping[str, Any]) -> dict[str, HostStats]:
    columns = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable", "skipped": "skipped"}
    hosts: dict[str, HostStats] = {}
    for column, attribute in columns.items():
        for host, count in (data.get(column) or {}).items():
            setattr(hosts.setdefault(host, HostStats()), attribute, count)
    for host in data.get("processed") or {}:
        hosts.setdefault(host, HostStats())
    return hosts
