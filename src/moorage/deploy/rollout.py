"""The rolling update: Python drives the batches, Ansible does each batch's work on the hosts.

Why Python drives (docs/deploy.md): ``update.maxParallel`` counts instances, not hosts, and
several instances may share a host, which Ansible's ``serial`` cannot express. Each phase is
one run of ``playbooks/deploy.yml`` limited to the hosts it touches:

1. preflight (all hosts, reads only): a failure is bad input (exit 2), nothing changed;
2. prepare (all hosts): ship the release's files next to the running ones;
3. one switch run per batch: maintenance on -> wait until no lb routes to it -> graceful stop
   -> start the release -> its own check passes for minHealthy within healthyDeadline ->
   maintenance off. A failed batch stops the rollout; with autoRevert every instance touched
   (the failed batch included) is switched back to the previous release the same way;
4. remove (instances no longer in the plan, e.g. after scaling down).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moorage.deploy.lock import LockGuard
from moorage.errors import BadInput, MoorageError
from moorage.inventory import Inventory
from moorage.plan import Instance
from moorage.release import Release
from moorage.reporting import Reporter
from moorage.runner import NO_MESSAGE, PlaybookResult, TaskFailure, run_playbook
from moorage.spec.units import format_duration
from moorage.targets.classic import Phase, playbook_extravars

PLAYBOOK = "deploy.yml"


@dataclass
class RolloutReport:
    service: str
    release: int
    version: str
    switched: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)
    not_reverted: list[str] = field(default_factory=list)  # touched instances the revert could not switch back
    failure: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PlaybookContext:
    """What every run of the deploy playbook needs besides the release."""

    inventory: Inventory
    consul_vault_file: Path | None
    secrets_file: Path | None
    reporter: Reporter
    guard: LockGuard = field(default_factory=LockGuard)  # no step runs once the service's deploy lock is lost


def batches(instances: Sequence[Instance], size: int) -> list[list[Instance]]:
    return [list(instances[start : start + size]) for start in range(0, len(instances), size)]


def run_phase(
    context: PlaybookContext, release: Release, phase: Phase, batch: Sequence[Instance] = (), instances: Sequence[Instance] | None = None
) -> PlaybookResult:
    context.guard.check()
    extravars = playbook_extravars(
        release, phase, batch, instances, consul_vault_file=context.consul_vault_file, secrets_file=context.secrets_file
    )
    limit = ",".join(sorted({instance.host for instance in batch})) if batch else None
    return run_playbook(PLAYBOOK, context.inventory.path, extravars, limit=limit, on_event=context.reporter.ansible_event)


def failure_text(result: PlaybookResult) -> str:
    if result.failures:
        # A host's last failure says it all: a failed health gate is rescued by a task that
        # fails again with the gate's output and the app's last log lines.
        last_per_host = {failure.host: failure for failure in result.failures}
        return "; ".join(_failure_line(failure) for failure in last_per_host.values())
    return " ".join(result.output_tail[-3:]) or f"ansible-playbook exited {result.rc}"


def _failure_line(failure: TaskFailure) -> str:
    if not failure.unreachable:
        return f"{failure.host}: {failure.message}"
    # A no_log task's result is censored, SSH's own words with it.
    detail = "" if failure.message == NO_MESSAGE else f" ({failure.message})"
    return f"host {failure.host} is unreachable{detail}"


def preflight(context: PlaybookContext, release: Release) -> None:
    context.reporter.stage(f"preflight on group {release.plan.group}")
    result = run_phase(context, release, "preflight")
    if not result.succeeded:
        first = result.failures[0] if result.failures else None
        if first is not None and first.unreachable:
            raise BadInput(f"host {first.host} is unreachable: {first.message}")
        raise BadInput(first.message if first is not None else failure_text(result))


def recheck(context: PlaybookContext, current: Release) -> int:
    """A deploy that changes nothing still checks that the hosts hold the current release's files
    (the prepare phase, idempotent); returns how many tasks Ansible changed (0 on intact hosts)."""
    context.reporter.stage(f"release {current.number} (version {current.version}) already deployed: checking its files on the hosts")
    result = run_phase(context, current, "prepare")
    if not result.succeeded:
        raise MoorageError(f"checking release {current.number} on the hosts failed: {failure_text(result)}")
    return result.changed


def roll(
    context: PlaybookContext, new: Release, previous: Release | None, targets: Sequence[Instance], removed: Sequence[Instance]
) -> RolloutReport:
    """Prepare, switch ``targets`` batch by batch, then remove ``removed``; revert on failure."""
    update = new.service.spec.update
    report = RolloutReport(service=new.service.name, release=new.number, version=new.version)
    context.reporter.stage(f"release {new.number} (version {new.version}): shipping files")
    prepared = run_phase(context, new, "prepare")
    if not prepared.succeeded:
        report.failure = f"prepare failed: {failure_text(prepared)}"
        return report
    all_batches = batches(targets, update.max_parallel)
    touched: list[Instance] = []
    for number, batch in enumerate(all_batches, start=1):
        names = ", ".join(f"{instance.id}@{instance.host}" for instance in batch)
        context.reporter.stage(
            f"batch {number}/{len(all_batches)}: {names} -> release {new.number} (healthy for {format_duration(update.min_healthy)})"
        )
        touched.extend(batch)
        result = run_phase(context, new, "switch", batch)
        if not result.succeeded:
            report.failure = f"batch {number}/{len(all_batches)} failed: {failure_text(result)}"
            if update.auto_revert:
                revert(context, new, previous, touched, report)
            return report
        report.switched.extend(instance.id for instance in batch)
    if removed:
        removal = remove_instances(context, new, removed)
        report.removed, report.failure = removal.removed, removal.failure
    return report


def remove_instances(context: PlaybookContext, release: Release, removed: Sequence[Instance]) -> RolloutReport:
    """Drain, deregister and stop ``removed`` (e.g. after scaling down, or dropped canaries)."""
    report = RolloutReport(service=release.service.name, release=release.number, version=release.version)
    context.reporter.stage(f"removing {', '.join(instance.id for instance in removed)}")
    result = run_phase(context, release, "remove", removed, instances=removed)
    if result.succeeded:
        report.removed.extend(instance.id for instance in removed)
    else:
        report.failure = f"removing instances failed: {failure_text(result)}"
    return report


def revert(context: PlaybookContext, new: Release, previous: Release | None, touched: Sequence[Instance], report: RolloutReport) -> None:
    """Every touched instance back to ``previous``; instances ``previous`` did not have are removed.

    A batch that cannot be switched back (its host unreachable, say) does not stop the others: as
    many instances as possible go back, and those that could not are named in the report.
    """
    before = {instance.id for instance in previous.plan.instances} if previous else set()
    back = [instance for instance in touched if instance.id in before]
    extra = [instance for instance in touched if instance.id not in before]
    failures = []
    if previous is not None and back:
        context.reporter.stage(f"auto-revert: {', '.join(instance.id for instance in back)} -> release {previous.number}")
        for batch in batches(back, previous.service.spec.update.max_parallel):
            result = run_phase(context, previous, "switch", batch)
            if result.succeeded:
                report.reverted.extend(instance.id for instance in batch)
            else:
                report.not_reverted.extend(instance.id for instance in batch)
                failures.append(failure_text(result))
    if extra:
        result = run_phase(context, new, "remove", extra, instances=extra)
        if result.succeeded:
            report.reverted.extend(instance.id for instance in extra)
        else:
            report.not_reverted.extend(instance.id for instance in extra)
            failures.append(failure_text(result))
    if failures:
        target = f"release {previous.number}" if previous is not None else "nothing"
        report.failure = f"{report.failure}; reverting {', '.join(report.not_reverted)} to {target} failed too: {'; '.join(failures)}"
