"""Whether ``moorage platform up`` has anything to converge, and the record that tells it.

The platform's inputs are the collection (playbooks, roles, plugins), the host agents it ships,
moorage's and Ansible's versions, and the inventory with its ``group_vars``/``host_vars``: one
digest (:func:`inputs_digest`). After a converge, :class:`WatchRecorder` has collected from the
run's own events what its tasks managed on each host (the files they wrote or checked, the units
they started); ``playbooks/platform_state.yml`` then records that on each host with the digest
(module ``moorage.platform.platform_state``, logic in :mod:`moorage.agents.platform_state`).
Before the next run the same playbook asks every host whether it still holds its record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import moorage.agents
from moorage import __version__, paths
from moorage.agents.platform_state import Verdict, Watch
from moorage.runner import PlaybookResult, run_playbook

STATE_PLAYBOOK = "platform_state.yml"
STATE_TASK_ACTION = "moorage.platform.platform_state"

# Task actions whose argument names a file on the host, and the argument.
FILE_ARGUMENTS = {
    "ansible.builtin.template": "dest",
    "ansible.builtin.copy": "dest",
    "ansible.builtin.file": "path",
    "ansible.builtin.lineinfile": "path",
    "ansible.builtin.blockinfile": "path",
    "ansible.builtin.stat": "path",
}
UNIT_ACTIONS = ("ansible.builtin.systemd_service", "ansible.builtin.systemd", "ansible.builtin.service")
# file sets attributes only: its paths count by type, mode and owner, not content.
METADATA_ONLY_ACTIONS = ("ansible.builtin.file",)


def _files_under(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


def inventory_sources(inventory: Path) -> list[Path]:
    """The files Ansible reads for ``inventory``: itself (or a directory's files) and its group_vars/host_vars."""
    inventory = inventory.resolve()
    if inventory.is_dir():
        return list(_files_under(inventory))
    beside = [inventory.parent / "group_vars", inventory.parent / "host_vars"]
    return [inventory, *(path for variables in beside if variables.is_dir() for path in _files_under(variables))]


def inputs_digest(inventory: Path) -> str:
    """One digest of everything a converge depends on besides the hosts themselves."""
    digest = hashlib.sha256(f"moorage {__version__} ansible-core {version('ansible-core')}\n".encode())
    trees = [paths.ansible_root() / name for name in ("playbooks", "roles", "plugins")]
    trees.append(Path(moorage.agents.__file__).resolve().parent)
    for tree in trees:
        for path in _files_under(tree):
            digest.update(f"{path.relative_to(tree.parent)}\0".encode())
            digest.update(path.read_bytes())
    for path in inventory_sources(inventory):
        digest.update(f"{path}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass
class HostWatch:
    files: dict[str, bool] = field(default_factory=dict)  # path -> whether its content counts
    units: set[str] = field(default_factory=set)

    def as_record(self) -> dict[str, Any]:
        """The host's record, in the agent's own format (the module reads it back as a Watch)."""
        return Watch(files=self.files, units=tuple(sorted(self.units))).as_dict()


def _module_results(res: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """A task's result, or each of a loop's item results."""
    items = res.get("results")
    if isinstance(items, list):
        yield from (item for item in items if isinstance(item, Mapping))
    else:
        yield res


class WatchRecorder:
    """Collects, from a converge's events, what its tasks managed on each host."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostWatch] = {}

    def handle(self, event: Mapping[str, Any]) -> None:
        if event.get("event") != "runner_on_ok":
            return
        data = event.get("event_data", {})
        action, host = data.get("task_action", ""), data.get("host", "")
        if not host or (action not in FILE_ARGUMENTS and action not in UNIT_ACTIONS):
            return
        watch = self.hosts.setdefault(host, HostWatch())
        for result in _module_results(data.get("res") or {}):
            if "_ansible_delegated_vars" in result:  # done on another host (the controller)
                continue
            arguments = (result.get("invocation") or {}).get("module_args") or {}
            if action in UNIT_ACTIONS:
                if isinstance(name := arguments.get("name") or result.get("name"), str) and name:
                    watch.units.add(name)
                continue
            path = arguments.get(FILE_ARGUMENTS[action]) or arguments.get("path") or result.get("dest") or result.get("path")
            if isinstance(path, str) and path:
                watch.files[path] = watch.files.get(path, True) and content_counts(action, arguments)

    def records(self) -> dict[str, dict[str, Any]]:
        return {host: watch.as_record() for host, watch in sorted(self.hosts.items())}


def content_counts(action: str, arguments: Mapping[str, Any]) -> bool:
    """Whether a managed file's content is the converge's: not for file, and not for a copy or
    template with ``force: false``, which only creates the file for someone else to fill (the
    ingress watcher's routes). Such a copy reports the copy module's own arguments, where
    ``state`` does not exist; an unchanged copy reports the file module's, with ``state``."""
    if action in METADATA_ONLY_ACTIONS:
        return False
    return not (arguments.get("force") is False and "state" not in arguments)


@dataclass(frozen=True)
class Probe:
    """Every host's answer, and whether every host answered."""

    result: PlaybookResult
    verdicts: dict[str, Verdict]

    @property
    def nothing_to_do(self) -> bool:
        answered = self.result.succeeded and set(self.verdicts) == set(self.result.hosts) and bool(self.verdicts)
        return answered and all(verdict.holds for verdict in self.verdicts.values())

    def first_difference(self) -> str:
        """Why a converge is needed, naming the host."""
        if not self.result.succeeded:
            return self.result.first_failure()
        for host, verdict in sorted(self.verdicts.items()):
            if not verdict.holds:
                return f"{host}: {verdict.reason}"
        return ""


def probe(inventory: Path, inputs: str, vault_password_files: Sequence[Path]) -> Probe:
    """Ask every host whether it holds its last converge's record for ``inputs``."""
    verdicts: dict[str, Verdict] = {}

    def on_event(event: Mapping[str, Any]) -> None:
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and data.get("task_action") == STATE_TASK_ACTION:
            res = data.get("res") or {}
            verdicts[data.get("host", "")] = Verdict(bool(res.get("holds")), str(res.get("reason", "")))

    result = run_playbook(
        STATE_PLAYBOOK, inventory, {"platform_inputs": inputs}, vault_password_files=vault_password_files, on_event=on_event
    )
    return Probe(result=result, verdicts=verdicts)


def record(inventory: Path, inputs: str, watched: dict[str, dict[str, Any]], vault_password_files: Sequence[Path]) -> PlaybookResult:
    """Record on each host what the converge that just ended managed there."""
    return run_playbook(
        STATE_PLAYBOOK,
        inventory,
        {"platform_inputs": inputs, "platform_record": watched},
        vault_password_files=vault_password_files,
    )
