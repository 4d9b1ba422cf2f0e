"""Make the hosts of an inventory a moorage platform: one run of ``playbooks/platform.yml``.

Consul (ACLs, gossip encryption; its secrets in the site's vault file next to the inventory,
``moorage.vault``), the NGINX ingress, Prometheus, node_exporter, logging and Docker.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from moorage.errors import BadInput, MoorageError
from moorage.reporting import Reporter
from moorage.runner import PlaybookResult, run_playbook
from moorage.vault import migrate_legacy_secrets, site_vault

PLATFORM_PLAYBOOK = "platform.yml"
PREFLIGHT_PLAY = "Preflight"  # the first play of platform.yml; a failure there changed nothing


def platform_up(inventory: Path, passwords: Sequence[Path], reporter: Reporter, *, check: bool = False) -> PlaybookResult:
    """Converge the platform (idempotent); ``check`` only shows what would change. Never raises for a failed play.

    ``passwords``: the vault password files to try on the site's vault file (BadInput before any
    run when none opens it); the one that does, or the first for a new site, encrypts what the
    consul role writes there.
    """
    if migrate_legacy_secrets(inventory, passwords):
        reporter.note(f"moved this inventory's secrets from moorage's state directory into {site_vault(inventory, passwords).file}")
    password = site_vault(inventory, passwords).opening_password()
    others = [other for other in passwords if other != password]
    extravars = {"consul_vault_password_file": str(password.absolute())}
    return run_playbook(
        PLATFORM_PLAYBOOK,
        inventory,
        extravars,
        check=check,
        vault_password_files=[password, *others],
        on_event=reporter.ansible_event,
    )


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
