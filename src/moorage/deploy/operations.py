"""The deploy commands' work: deploy, plan, rollback, scale, promote, status, logs.

A command opens a :class:`Session` once (the inventory parsed, Consul reached, the reporter
chosen) and hands it to one of these functions; each takes the service's lock before it writes.
The data flows one way: spec file -> plan (moorage.plan) -> release (moorage.release, kept in
Consul) -> the hosts (moorage.deploy.rollout: the deploy agent prepares every host, then switches
the instances batch by batch). A release is recorded once every host took it (preparing is also
the preflight), so bad input leaves no record behind. No playbook runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from moorage.deploy import status as service_status
from moorage.deploy.changes import Changes, changes, removed_instances, rollback_removals
from moorage.deploy.connection import PlatformAccess, SecretsFile, platform_access
from moorage.deploy.identity import content_version, spec_hash
from moorage.deploy.lock import DeployLock, current_holder
from moorage.deploy.logs import LineHandler, stream_journals
from moorage.deploy.ports import claimed_plan, ports_in_use
from moorage.deploy.releases import ReleaseStore, draft
from moorage.deploy.remote import Connections
from moorage.deploy.rollout import DeployContext, Prepared, RolloutReport, check_hosts, prepare, remove_instances, roll
from moorage.deploy.steps import StepResult
from moorage.errors import BadInput, MoorageError
from moorage.inventory import Inventory, InventoryHost, load_inventory
from moorage.plan import Plan, assign_ports, plan_service, start_beside
from moorage.ports import PortBook
from moorage.release import Release, ReleaseStatus, interrupted, scaled_spec
from moorage.reporting import QuietReporter, Reporter
from moorage.spec.loader import SpecFile, load_spec


@dataclass(frozen=True)
class Outcome:
    changed: bool
    release: Release | None
    report: RolloutReport | None
    message: str
    ansible_changed: int | None = None  # a no-change deploy: what it had to put right on the hosts (0: nothing)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.report is None or self.report.failure is None,
            "changed": self.changed,
            "release": None if self.release is None else self.release.summary(),
            "report": None if self.report is None else self.report.as_dict(),
            "message": self.message,
            "ansible_changed": self.ansible_changed,
        }


class RolloutFailed(MoorageError):
    """A rollout that failed (exit 1); carries the outcome for the report."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


@dataclass(frozen=True)
class Session:
    """Everything one command needs, built once: the inventory, Consul, how to report, the secrets."""

    inventory: Inventory
    access: PlatformAccess
    context: DeployContext
    lock_wait: timedelta

    def store(self, service: str) -> ReleaseStore:
        return ReleaseStore(self.access.client, service)

    @contextmanager
    def locked(self, store: ReleaseStore, version: str, action: str) -> Iterator[None]:
        """Hold the service's deploy lock; first record releases a dead command left deploying as interrupted."""
        with DeployLock(self.access.client, store.service, version, action, self.lock_wait, self.context.guard):
            for left in store.mark_interrupted():
                self.context.reporter.note(
                    f"{store.service}: release {left.number} (version {left.version}) was left deploying by {left.by}, "
                    "whose command stopped before finishing: recorded as interrupted"
                )
            yield

    def hosts(self) -> Connections:
        """The warm SSH connections of this command (``with session.hosts():`` closes them at the end)."""
        return self.context.connections


def open_session(
    inventory_path: Path,
    *,
    reporter: Reporter | None = None,
    secrets: SecretsFile | None = None,
    lock_wait: timedelta = timedelta(0),
    passwords: Sequence[Path] = (),
) -> Session:
    """``passwords``: the vault password files that may open the site's vault file (its management token)."""
    inventory = load_inventory(inventory_path, passwords)
    access = platform_access(inventory, passwords)
    context = DeployContext(
        inventory=inventory,
        reporter=reporter or QuietReporter(),
        connections=Connections(inventory),
        management_token=access.management_token,
        secrets=secrets,
    )
    return Session(inventory, access, context, lock_wait)


@dataclass(frozen=True)
class Candidate:
    """What a deploy of a spec file would record: the spec, its plan, version and spec hash."""

    spec: SpecFile
    plan: Plan
    version: str
    spec_hash: str

    def release(self) -> Release:
        return draft(self.version, self.spec_hash, self.spec, self.plan)


def candidate(spec: SpecFile, inventory: Inventory, version: str | None, ports: PortBook, current: Release | None) -> Candidate:
    hosts = inventory.hosts(spec.model.spec.placement.group)
    version = version or content_version(spec)
    digest = spec_hash(spec)
    return Candidate(spec, planned(spec, hosts, 0, ports, current, version, digest), version, digest)


def planned(
    spec: SpecFile, hosts: Sequence[InventoryHost], canaries: int, ports: PortBook, current: Release | None, version: str, digest: str
) -> Plan:
    """The plan a deploy records: each instance under the identity it runs under now, or, when the
    release replaces it start-first (``update.order``), beside it under its other one."""
    plan = plan_service(spec.model, hosts, canaries, ports)
    if canaries or current is None or not changes(current, plan, version, digest).pending:
        return plan  # a canary release leaves the planned instances as they run; promote starts them beside
    return start_beside(spec.model, plan, hosts, ports)


def _claimed(session: Session, service: str, current: Release | None, make_plan: Callable[[PortBook], Plan]) -> Plan:
    """A plan whose ports no other service uses or claims, claimed for ``service`` before any host is touched."""
    return claimed_plan(session.access.client, service, None if current is None else current.plan, make_plan)


@dataclass(frozen=True)
class Preview:
    """``moorage plan``: what a deploy of a spec would change, per instance."""

    service: str
    version: str
    changes: Changes

    def as_dict(self) -> dict[str, Any]:
        current = self.changes.current
        return {
            "service": self.service,
            "version": self.version,
            "current_release": None if current is None else current.number,
            "changes": [change.as_dict() for change in self.changes.instances],
            "changed": self.changes.pending,
        }


def preview(session: Session, spec_file: Path, version: str | None) -> Preview:
    """What ``deploy`` would change (reads Consul, touches nothing)."""
    spec = load_spec(spec_file)
    current = session.store(spec.name).current()
    ports = ports_in_use(session.access.client, spec.name, None if current is None else current.plan)
    proposed = candidate(spec, session.inventory, version, ports.book, current)
    return Preview(proposed.spec.name, proposed.version, changes(current, proposed.plan, proposed.version, proposed.spec_hash))


def deploy(
    session: Session, spec_file: Path, version: str | None, canary: int | None, note: str = "", commit: str | None = None
) -> Outcome:
    spec = load_spec(spec_file)
    canaries = spec.model.spec.update.canary if canary is None else canary
    # Placed once before the lock, so a spec that cannot be placed is refused without taking it.
    hosts = session.inventory.hosts(spec.model.spec.placement.group)
    plan_service(spec.model, hosts, canaries)
    version = version or content_version(spec)
    store = session.store(spec.name)
    with session.locked(store, version, "deploy"), session.hosts():
        current = store.current()
        # Ports are given while holding the lock, from what Consul says is in use now, and claimed.
        digest = spec_hash(spec)
        plan = _claimed(session, spec.name, current, lambda ports: planned(spec, hosts, canaries, ports, current, version, digest))
        proposed = Candidate(spec, plan, version, digest)
        if current is not None and not changes(current, proposed.plan, proposed.version, proposed.spec_hash).pending:
            return _unchanged(session, current)
        _refuse_during_canary(store)
        draft = replace(proposed.release(), number=store.next_number())
        prepared = prepare(session.context, draft)
        release = store.create(replace(_with_files(draft, prepared), commit=commit), "deploying", note=note)
        if proposed.plan.canaries:
            report = roll(session.context, release, current, proposed.plan.canaries, [])
        else:
            report = roll(session.context, release, current, proposed.plan.instances, removed_instances(current, proposed.plan))
        return _finish(store, release, report, "canary" if proposed.plan.canaries else "deployed")


def _with_files(release: Release, prepared: Prepared) -> Release:
    """The release as recorded: with the digest of its files' archive when it ships files of its own."""
    if release.files_release is None and prepared.archive is not None:
        return replace(release, files_digest=prepared.archive.digest)
    return release


def _unchanged(session: Session, current: Release) -> Outcome:
    """A deploy of what runs: nothing to do when Consul and the hosts agree that it runs as it should;
    otherwise the release is put on the hosts again and the instances that are not right switched to it."""
    name = current.service.name
    started = time.monotonic()
    problems = check_hosts(session.context, session.access.client, current)
    if not problems:
        session.context.steps.add(
            StepResult(
                "check", f"check: release {current.number} (version {current.version}) runs on every host", "passed",
                time.monotonic() - started, name,
            )
        )  # fmt: skip
        return Outcome(
            changed=False,
            release=current,
            report=None,
            ansible_changed=0,
            message=f"{name}: release {current.number} (version {current.version}) already deployed; no change (hosts checked)",
        )
    session.context.reporter.note("; ".join(f"{instance}: {problem}" for instance, problem in sorted(problems.items())))
    prepared = prepare(session.context, current)
    broken = [instance for instance in current.plan.all_instances if instance.id in problems]
    report = roll(session.context, current, None, broken, [], revert_on_failure=False)
    if report.failure is not None:
        raise RolloutFailed(
            Outcome(
                changed=False,
                release=current,
                report=report,
                message=f"{name}: putting release {current.number} back failed: {report.failure}",
            )
        )
    return Outcome(
        changed=False,
        release=current,
        report=report,
        ansible_changed=prepared.changed + len(report.switched),
        message=f"{name}: release {current.number} (version {current.version}) already deployed; put back {', '.join(report.switched)}",
    )


def rollback(session: Session, service_name: str, to: int | None) -> Outcome:
    """A new release running release ``to``'s files and spec (default: the previous deployed one).

    A canary release still out is dropped too: without ``--to`` that is all a rollback does.
    """
    store = session.store(service_name)
    releases = store.all()
    if not releases:
        raise BadInput(f"{service_name}: no releases in Consul (deploy it first)")
    current = store.current()
    canary = releases[-1] if releases[-1].status == "canary" else None
    if to is None and canary is not None:
        return _drop_canaries(session, store, canary)
    if to is None:
        older = [release for release in releases if release.status == "deployed" and (current is None or release.number < current.number)]
        if not older:
            raise BadInput(f"{service_name}: no earlier deployed release to roll back to (see 'moorage releases {service_name}')")
        target = older[-1]
    else:
        target = store.get(to)
    with session.locked(store, target.version, f"rollback to {target.number}"), session.hosts():
        # The target's instances keep the ports they have now; one another service took meanwhile gets a free one.
        hosts = session.inventory.hosts(target.plan.group)
        # A start-first service starts the target's instances beside the ones that run now.
        plan = _claimed(
            session,
            service_name,
            current,
            lambda ports: start_beside(
                target.service, assign_ports(target.service, target.plan.without_canaries(), hosts, ports), hosts, ports
            ),
        )
        again = replace(target, number=store.next_number(), plan=plan, files_release=target.files_number)
        prepare(session.context, again)
        release = store.create(again, "deploying", note=f"rollback to {target.number}")
        report = roll(session.context, release, current, plan.instances, rollback_removals(current, plan, canary))
        if canary is not None and report.failure is None:
            store.mark(canary, "reverted", note=f"canaries dropped by rollback to {target.number}", plan=canary.plan.without_canaries())
        outcome = _finish(store, release, report, "deployed")
        what = f"release {target.number} (version {target.version}" + (f", {target.note!r})" if target.note else ")")
        return replace(outcome, message=f"{outcome.message}: rolled back to {what}")


def scale(session: Session, service_name: str, replicas: int) -> Outcome:
    """New instances start with the current release; removed ones drain and go; others are untouched."""
    store = session.store(service_name)
    current = store.current()
    if current is None:
        raise BadInput(f"{service_name}: nothing deployed to scale")
    spec = scaled_spec(current.spec, replicas)
    hosts = session.inventory.hosts(current.plan.group)
    placed = plan_service(spec.model, hosts)
    before = {instance.id for instance in current.plan.instances}
    _refuse_during_canary(store)
    # By index: a start-first instance may run under its other identity (NAME-kb).
    if {instance.index for instance in placed.instances} == {instance.index for instance in current.plan.instances}:
        return Outcome(changed=False, release=current, report=None, message=f"{service_name}: already {replicas} instances; no change")
    with session.locked(store, current.version, f"scale to {replicas}"), session.hosts():
        # Kept instances keep their ports; new ones get ports nobody uses or claims.
        plan = _claimed(session, service_name, current, lambda ports: plan_service(spec.model, hosts, ports=ports))
        added = [instance for instance in plan.instances if instance.id not in before]
        scaled = replace(current, number=store.next_number(), spec=spec, plan=plan, files_release=current.files_number)
        prepare(session.context, scaled)
        release = store.create(scaled, "deploying", note=f"scale to {replicas}")
        report = roll(session.context, release, current, added, removed_instances(current, plan))
        return _finish(store, release, report, "deployed")


def promote(session: Session, service_name: str) -> Outcome:
    """The canary release goes everywhere: the planned instances roll to it, then the canaries go."""
    store = session.store(service_name)
    latest = store.latest()
    if latest is None or latest.status != "canary":
        raise BadInput(f"{service_name}: no canary release to promote")
    previous = store.current()
    with session.locked(store, latest.version, "promote"), session.hosts():
        # A start-first service: the planned instances start beside the ones that run (the canaries stay where they are).
        canary = latest
        hosts = session.inventory.hosts(canary.plan.group)
        plan = claimed_plan(
            session.access.client, service_name, canary.plan, lambda ports: start_beside(canary.service, canary.plan, hosts, ports)
        )
        rolling = replace(canary, plan=plan)
        prepare(session.context, rolling)
        removed = [*plan.canaries, *removed_instances(previous, plan)]
        report = roll(session.context, rolling, previous, plan.instances, removed)
        if report.failure is None:
            latest = store.mark(latest, "canary", plan=plan.without_canaries())
        return _finish(store, latest, report, "deployed")


def instances(session: Session, service: str | None) -> list[tuple[str, service_status.InstanceState]]:
    """(service, instance) for SERVICE, or for every moorage service in Consul."""
    client = session.access.client
    names = [service] if service else service_status.services(client)
    rows = [(name, row) for name in names for row in service_status.instances(client, name)]
    if service and not rows and not session.store(service).all():
        raise BadInput(unknown_service(service))
    return rows


def releases(session: Session, service: str) -> list[Release]:
    """The kept releases; one left deploying while nobody holds the lock shows as interrupted."""
    kept = session.store(service).all()
    if not kept:
        raise BadInput(unknown_service(service))
    if current_holder(session.access.client, service) is None:
        kept = [interrupted(release) for release in kept]
    return kept


def unknown_service(service: str) -> str:
    """The one line for a service that Consul knows nothing of (status, releases, remove: exit 2)."""
    return f"{service}: no such service: no release in Consul, no instance registered (never deployed, or removed)"


def logs(session: Session, service: str, on_line: LineHandler, *, follow: bool, since: str | None) -> None:
    """The journal of ``service`` on every host that runs an instance (``on_line(host, line)``)."""
    hosts = [row.host for row in service_status.instances(session.access.client, service)]
    stream_journals(session.inventory, service, hosts, on_line, follow=follow, since=since)


def _drop_canaries(session: Session, store: ReleaseStore, canary: Release) -> Outcome:
    """``rollback`` of a canary release: its extra instances drain and go; the others never changed."""
    with session.locked(store, canary.version, "drop canaries"), session.hosts():
        report = remove_instances(session.context, canary, canary.plan.canaries)
        if report.failure is not None:
            raise RolloutFailed(
                Outcome(
                    changed=True,
                    release=canary,
                    report=report,
                    message=f"{store.service}: dropping the canaries of release {canary.number} failed: {report.failure}",
                )
            )
        dropped = store.mark(canary, "reverted", note="canaries dropped by rollback", plan=canary.plan.without_canaries())
        return Outcome(
            changed=True,
            release=dropped,
            report=report,
            message=f"{store.service}: canaries of release {canary.number} dropped ({', '.join(report.removed)})",
        )


def _refuse_during_canary(store: ReleaseStore) -> None:
    latest = store.latest()
    if latest is not None and latest.status == "canary":
        raise BadInput(
            f"{store.service}: release {latest.number} (version {latest.version}) is a canary; "
            f"'moorage promote {store.service}' or 'moorage rollback {store.service}' first"
        )


def _finish(store: ReleaseStore, release: Release, report: RolloutReport, success_status: ReleaseStatus) -> Outcome:
    if report.failure is None:
        done = store.mark(release, success_status)
        return Outcome(
            changed=True,
            release=done,
            report=report,
            message=f"{store.service}: release {release.number} (version {release.version}) {success_status}",
        )
    status: ReleaseStatus = "reverted" if report.reverted and not report.not_reverted else "failed"
    failed = store.mark(release, status, note=f"{release.note}; {report.failure}" if release.note else report.failure)
    raise RolloutFailed(
        Outcome(
            changed=True, release=failed, report=report, message=f"{store.service}: release {release.number} {status}: {report.failure}"
        )
    )
