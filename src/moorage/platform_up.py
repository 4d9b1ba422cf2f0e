"""Make the hosts of an inventory a moorage platform: one run of ``playbooks/platform.yml``.

Consul (ACLs, gossip encryption; its secrets in the site's vault file next to the inventory,
``moorage.vault``), the NGINX ingress, Prometheus, node_exporter, logging and Docker. Unless told
``full`` (or ``check``), it first asks every host whether it still holds what its last converge
recorded, for the same inputs (:mod:`moorage.platform_state`): when all do, there is nothing to
converge and the playbook does not run. After a converge each host records it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.errors import BadInput, MoorageError
from moorage.platform_state import WatchRecorder, inputs_digest, probe, record
from moorage.reporting import Reporter
from moorage.runner import PlaybookResult, run_playbook
from moorage.vault import migrate_legacy_secrets, site_vault

PLATFORM_PLAYBOOK = "platform.yml"
PREFLIGHT_PLAY = "Preflight"  # the first play of platform.yml; a failure there changed nothing


@dataclass(frozen=True)
class PlatformUp:
    """What ``platform up`` did: platform.yml's run, or the hosts' answers when none needed it."""

    result: PlaybookResult
    converged: bool  # whether platform.yml ran
    reason: str  # why it ran: the first host that did not hold its last converge ("" with full or check)

    def as_dict(self) -> dict[str, Any]:
        return {**self.result.as_dict(), "converged": self.converged, "reason": self.reason}


def platform_up(inventory: Path, passwords: Sequence[Path], reporter: Reporter, *, check: bool = False, full: bool = False) -> PlatformUp:
    """Converge the platform (idempotent); ``check`` only shows what would change. Never raises for a failed play.

    ``passwords``: the vault password files to try on the site's vault file (BadInput before any
    run when none opens it); the one that does, or the first for a new site, encrypts what the
    consul role writes there. ``full`` runs the playbook even when every host holds its last converge.
    """
    if migrate_legacy_secrets(inventory, passwords):
        reporter.note(f"moved this inventory's secrets from moorage's state directory into {site_vault(inventory, passwords).file}")
    password = site_vault(inventory, passwords).opening_password()
    vault_password_files = [password, *(other for other in passwords if other != password)]
    reason = ""
    if not (check or full):
        answers = probe(inventory, inputs_digest(inventory), vault_password_files)
        if answers.nothing_to_do:
            return PlatformUp(answers.result, converged=False, reason="")
        reason = answers.first_difference()
        reporter.note(f"converging every host: {reason}")
    recorder = WatchRecorder()

    def on_event(event: Mapping[str, Any]) -> None:
        recorder.handle(event)
        reporter.ansible_event(event)

    result = run_playbook(
        PLATFORM_PLAYBOOK,
        inventory,
        {"consul_vault_password_file": str(password.absolute())},
        check=check,
        vault_password_files=vault_password_files,
        on_event=on_event,
    )
    if result.succeeded and not check:
        # After the run: the first converge of a site writes its secrets into the inventory's vault file.
        recorded = record(inventory, inputs_digest(inventory), recorder.records(), vault_password_files)
        if not recorded.succeeded:
            reporter.note(f"converged, but not recorded (the next platform up converges again): {recorded.first_failure()}")
    return PlatformUp(result, converged=True, reason=reason)


def failure_error(result: PlaybookResult) -> MoorageError:
    """One line that names the host (and the group or variable, from the failed assertion)."""
    if not result.failures:
        return MoorageError(f"platform up failed: {ansible_error(result)}")
    first = result.failures[0]
    more = f" (and {len(result.failures) - 1} more failures)" if len(result.failures) > 1 else ""
    error = BadInput if first.play == PREFLIGHT_PLAY else MoorageError
    if first.unreachable:
        return error(f"host {first.host} is unreachable: {first.message}{more}")
    if error is BadInput:
        return BadInput(f"{first.message} [host {first.host}]{more}")
    return MoorageError(f"{first.host}: task '{first.task}' failed: {first.message}{more}")


def ansible_error(result: PlaybookResult) -> str:
    """Ansible's own complaint when it failed before any task (e.g. a playbook it cannot load), in one line."""
    lines = result.output_tail
    first_error = next((index for index, line in enumerate(lines) if "ERROR" in line), None)
    if first_error is None:
        return f"ansible-playbook exited with status {result.rc}"
    return " ".join(" ".join(lines[first_error:]).split())[:500]
