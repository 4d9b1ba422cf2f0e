"""The rolling update: the deploy agent on the hosts does the work, Python drives it, over warm SSH.

Everything runs through the deploy agent (``moorage.agents``, the same code the Ansible modules
``moorage.platform.release`` and ``moorage.platform.instance`` run for ``playbooks/deploy.yml``),
one SSH command per host at a time over one master connection per host (``moorage.deploy.remote``):

1. prepare, on every host of the placement group: each is checked first (ports, secrets, routes,
   runtime; a failure or an unreachable host is bad input, exit 2, and nothing was written on any
   host), then each gets the release next to what runs: its files (an archive built once per
   content, uploaded only where missing), each instance's definition, the service's token. Nothing
   that runs changes. Secret values go to the hosts on the agent's stdin, nowhere else.
2. batches of ``update.maxParallel`` instances (Python drives them: ``maxParallel`` counts
   instances, several may share a host, which Ansible's ``serial`` cannot express). Per batch, one
   SSH command per host runs the deploy agent on that host's instances of the batch, in parallel
   (``moorage.agents.instance``: drain, graceful stop, start, health gate, register, back in
   rotation). A failed batch stops the rollout; with ``autoRevert`` every instance touched so far
   goes back to the previous release the same way (its files and definitions are still on the host;
   the failed instance's own host has already put it back), and instances the previous release did
   not have are removed.
3. instances no longer in the plan (scaled down, dropped canaries) are drained and removed.

A no-change deploy runs no playbook: Consul's registrations and one parallel look at each host
(``check_hosts``) say whether the current release runs as it should.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import consul

from moorage.build import ensure_artifact
from moorage.deploy import status as service_status
from moorage.deploy.agent import HostAgents, HostRun, remove_args, status_args, switch_args
from moorage.deploy.archives import Shipped, agent_zipapp, cached_archive, release_archive
from moorage.deploy.changes import replaced_beside
from moorage.deploy.connection import SecretsFile
from moorage.deploy.lock import LockGuard
from moorage.deploy.remote import Connections
from moorage.deploy.secret_values import read_secret_values
from moorage.deploy.steps import StepLog, StepResult
from moorage.errors import BadInput, MoorageError
from moorage.inventory import Inventory
from moorage.plan import Instance
from moorage.release import Release
from moorage.reporting import Reporter
from moorage.spec.units import format_duration
from moorage.targets.classic import release_parameters

LB_GROUP = "lb"


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
class DeployContext:
    """What every step of a deploy needs besides the release: the hosts, how to reach them, the secrets."""

    inventory: Inventory
    reporter: Reporter
    connections: Connections
    management_token: str
    secrets: SecretsFile | None = None
    guard: LockGuard = field(default_factory=LockGuard)  # no step starts once the service's deploy lock is lost

    @property
    def lbs(self) -> list[str]:
        """The lb hosts (their Consul node names are their inventory names)."""
        return [host.name for host in self.inventory.groups.get(LB_GROUP, ())]

    @cached_property
    def steps(self) -> StepLog:
        """What each step of this command did (the JUnit report and the ``deploy_step_done`` events)."""
        return StepLog(self.reporter)

    @cached_property
    def agents(self) -> HostAgents:
        """The deploy agent of this moorage on the hosts."""
        return HostAgents(self.connections, agent_zipapp())

    def secret_values(self, release: Release) -> dict[str, str]:
        names = release.service.spec.secrets
        if self.secrets is None:
            return read_secret_values(names, None, None)
        return read_secret_values(names, self.secrets.vault, self.secrets.password_file)


@dataclass(frozen=True)
class Prepared:
    """A release put on the hosts, and the archive its files came in."""

    archive: Shipped | None
    changed: int  # hosts where something was written


def batches(instances: Sequence[Instance], size: int) -> list[list[Instance]]:
    return [list(instances[start : start + size]) for start in range(0, len(instances), size)]


def failures(runs: dict[str, HostRun]) -> str | None:
    """What failed on which host (None: nothing)."""
    text = [f"{host}: {run.failure_text()}" for host, run in sorted(runs.items()) if not run.ok]
    return "; ".join(text) or None


def files_archive(release: Release) -> Shipped | None:
    """The archive of ``release``'s files: built from the spec's artifact (or image archive) for its
    own files, else the one it was shipped in when this controller still has it (None: the hosts
    must have the files already)."""
    source = release.spec.image_archive if release.service.spec.runtime == "docker" else release.spec.artifact
    if release.files_digest is not None:
        cached = cached_archive(release.files_digest)
        if cached is not None or release.files_release is not None:
            return cached
    if source is None or release.files_release is not None:
        return None
    if not source.exists():
        raise BadInput(f"{source}: the artifact of release {release.number} is gone (deploy the service again)")
    if release.service.spec.runtime == "systemd":
        source = ensure_artifact(release.service.name, source, release.version)  # with its requirements, when it has some
    built = release_archive(source)
    if release.files_digest is not None and built.digest != release.files_digest:
        raise BadInput(f"{source}: changed since release {release.number} was made; deploy the service again to ship it")
    return built


def prepare(context: DeployContext, release: Release) -> Prepared:
    """Put ``release`` on every host of its group: all checked first (step ``preflight``), then written (``ship``).

    BadInput when a host cannot take it or cannot be reached (nothing was written on any host);
    MoorageError when writing failed.
    """
    context.guard.check()
    context.reporter.stage(f"release {release.number} (version {release.version}): checking the hosts, shipping files")
    service = release.service.name
    hosts = [host.name for host in context.inventory.hosts(release.plan.group)]
    placed = {instance.host for instance in release.plan.all_instances}
    with context.steps.timed("preflight", f"preflight: release {release.number} on {', '.join(hosts)}", service):
        archive = files_archive(release)
        secrets = context.secret_values(release)
        documents = {
            host: json.dumps(
                release_parameters(
                    release,
                    host,
                    archive=None if archive is None else archive.variables(),
                    secrets=secrets,
                    management_token=context.management_token,
                    lbs=context.lbs,
                )
            ).encode()
            for host in hosts
        }
        checked = context.agents.run({host: ["release", "check"] for host in hosts}, stdin=documents)
        for host in hosts:
            run = checked[host]
            if run.unreachable:
                raise BadInput(f"host {host} is unreachable: {run.failure_text().removeprefix(f'host {host} is unreachable: ')}")
            if not run.ok:
                raise BadInput(run.failure_text())
    with context.steps.timed("ship", f"ship: release {release.number} to {', '.join(sorted(placed))}", service):
        if archive is not None:
            missing = [host for host in sorted(placed) if not checked[host].document.get("archive_present")]
            _upload(context, archive, {host: str(checked[host].document["archive_dest"]) for host in missing})
        shipped = context.agents.run({host: ["release", "ship"] for host in sorted(placed)}, stdin=documents)
        failed = failures(shipped)
        if failed is not None:
            raise MoorageError(f"putting release {release.number} on the hosts failed: {failed}")
    return Prepared(archive, sum(1 for run in shipped.values() if run.document.get("changed")))


def _upload(context: DeployContext, archive: Shipped, destinations: dict[str, str]) -> None:
    problems: list[str] = []

    def one(host: str, destination: str) -> None:
        done = context.connections.upload(host, archive.path, destination)
        if done.returncode != 0:
            problems.append(f"{host}: uploading {archive.path.name} failed: {done.reason()}")

    threads = [threading.Thread(target=one, args=item) for item in destinations.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if problems:
        raise MoorageError("; ".join(sorted(problems)))


def roll(
    context: DeployContext,
    new: Release,
    previous: Release | None,
    targets: Sequence[Instance],
    removed: Sequence[Instance],
    *,
    revert_on_failure: bool = True,
) -> RolloutReport:
    """Switch ``targets`` batch by batch, then remove ``removed``; revert on failure (``update.autoRevert``).

    Each batch is a step, and so is each instance's health gate in it; batches after a failed one are skipped steps.
    """
    update = new.service.spec.update
    report = RolloutReport(service=new.service.name, release=new.number, version=new.version)
    all_batches = batches(targets, update.max_parallel)
    beside = replaced_beside(previous, targets)
    touched: list[Instance] = []
    for number, batch in enumerate(all_batches, start=1):
        name = batch_name(number, len(all_batches), batch, new.number)
        old = [beside[instance.id] for instance in batch if instance.id in beside]
        context.reporter.stage(
            f"{name} (healthy for {format_duration(update.min_healthy)})"
            + (f", beside {', '.join(item.id for item in old)}" if old else "")
        )
        context.guard.check()
        # A start-first batch: the old instances go back to the previous release if anything fails
        # (still running: nothing to do), the new ones are removed.
        touched.extend([*old, *batch])
        started = time.monotonic()
        runs = switch_runs(context, new, batch, revert=update.auto_revert)
        failure = failures(runs)
        seconds = time.monotonic() - started
        record_gates(context, new, batch, runs)
        if failure is None and old and previous is not None:
            # The new instances are healthy and routed: the old ones drain and go.
            gone = remove_instances(context, previous, old)
            report.removed.extend(gone.removed)
            failure = gone.failure
            seconds = time.monotonic() - started
        context.steps.add(StepResult("batch", name, "passed" if failure is None else "failed", seconds, new.service.name, failure or ""))
        if failure is not None:
            report.failure = f"batch {number}/{len(all_batches)} failed: {failure}"
            for later, rest in enumerate(all_batches[number:], start=number + 1):
                context.steps.add(
                    StepResult(
                        "batch", batch_name(later, len(all_batches), rest, new.number), "skipped", 0.0, new.service.name,
                        f"not started: batch {number}/{len(all_batches)} failed",
                    )
                )  # fmt: skip
            if update.auto_revert and revert_on_failure:
                revert(context, new, previous, touched, report)
            return report
        report.switched.extend(instance.id for instance in batch)
    if removed:
        removal = remove_instances(context, new, removed)
        report.removed.extend(removal.removed)  # after the old instances of start-first batches, already gone
        report.failure = removal.failure
    return report


def batch_name(number: int, total: int, batch: Sequence[Instance], release: int) -> str:
    """``batch 1/3: hello-1@lab-1 -> release 5``."""
    return f"batch {number}/{total}: {', '.join(f'{instance.id}@{instance.host}' for instance in batch)} -> release {release}"


def record_gates(context: DeployContext, release: Release, batch: Sequence[Instance], runs: dict[str, HostRun]) -> None:
    """One ``gate`` step per instance of ``batch``: its health gate as its host's agent reported it.

    The gate's time runs from the instance's start to its ``healthy`` (or ``failed``) progress line; an
    instance that already ran the release passes at once.
    """
    min_healthy = format_duration(release.service.spec.update.min_healthy)
    for instance in batch:
        run = runs.get(instance.host)
        name = f"health gate: {instance.id}@{instance.host} release {release.number} (healthy for {min_healthy})"
        result = next((item for item in run.instances if item.instance == instance.id), None) if run is not None else None
        if run is None or result is None:
            reason = run.failure_text() if run is not None else "no answer from its host"
            context.steps.add(StepResult("gate", name, "failed", 0.0, release.service.name, f"{instance.host}: {reason}"))
            continue
        marks: dict[str, float] = {}
        for item in run.progress:
            if item.instance != instance.id:
                continue
            if item.step == "reverting":  # the agent's own revert of a failed switch: its start and health are not this gate's
                break
            if item.seconds is not None:
                marks.setdefault(item.step, item.seconds)
        end = marks.get("healthy", marks.get("failed"))
        seconds = max(0.0, end - marks.get("started", 0.0)) if end is not None else 0.0
        context.steps.add(
            StepResult(
                "gate", name, "passed" if result.ok else "failed", seconds, release.service.name, "" if result.ok else result.message
            )
        )


def _by_host(instances: Sequence[Instance]) -> dict[str, list[str]]:
    hosts: dict[str, list[str]] = {}
    for instance in instances:
        hosts.setdefault(instance.host, []).append(instance.id)
    return hosts


def switch_runs(context: DeployContext, release: Release, batch: Sequence[Instance], *, revert: bool) -> dict[str, HostRun]:
    """``batch`` to ``release``: one agent run per host, the hosts at once."""
    name = release.service.name
    calls = {
        host: switch_args(host, name, release.number, ids, max_parallel=len(ids), revert=revert) for host, ids in _by_host(batch).items()
    }
    return context.agents.run(calls, context.reporter)


def switch(context: DeployContext, release: Release, batch: Sequence[Instance], *, revert: bool) -> str | None:
    """``batch`` to ``release``. None, or what failed."""
    return failures(switch_runs(context, release, batch, revert=revert))


def remove_instances(context: DeployContext, release: Release, removed: Sequence[Instance]) -> RolloutReport:
    """Drain, deregister and stop ``removed`` (e.g. after scaling down, or dropped canaries)."""
    report = RolloutReport(service=release.service.name, release=release.number, version=release.version)
    names = ", ".join(instance.id for instance in removed)
    context.reporter.stage(f"removing {names}")
    with context.steps.timed("remove", f"remove: {names}", release.service.name) as step:
        calls = {host: remove_args(host, release.service.name, ids, context.lbs) for host, ids in _by_host(removed).items()}
        runs = context.agents.run(calls, context.reporter)
        done = {result.instance for run in runs.values() for result in run.instances if result.ok}
        report.removed.extend(instance.id for instance in removed if instance.id in done)
        failed = failures(runs)
        if failed is not None:
            report.failure = step.failure = f"removing instances failed: {failed}"
    return report


def revert(context: DeployContext, new: Release, previous: Release | None, touched: Sequence[Instance], report: RolloutReport) -> None:
    """Every touched instance back to ``previous``; instances ``previous`` did not have are removed.

    A batch that cannot be switched back (its host unreachable, say) does not stop the others: as
    many instances as possible go back, and those that could not are named in the report.
    """
    before = {instance.id for instance in previous.plan.all_instances} if previous else set()
    back = [instance for instance in touched if instance.id in before]
    extra = [instance for instance in touched if instance.id not in before]
    problems: list[str] = []
    if previous is not None and back:
        name = f"auto-revert: {', '.join(instance.id for instance in back)} -> release {previous.number}"
        context.reporter.stage(name)
        with context.steps.timed("revert", name, new.service.name) as step:
            for batch in batches(back, previous.service.spec.update.max_parallel):
                failure = switch(context, previous, batch, revert=False)
                if failure is None:
                    report.reverted.extend(instance.id for instance in batch)
                else:
                    report.not_reverted.extend(instance.id for instance in batch)
                    problems.append(failure)
            step.failure = "; ".join(problems) or None
    if extra:
        removal = remove_instances(context, new, extra)
        report.reverted.extend(removal.removed)
        report.not_reverted.extend(instance.id for instance in extra if instance.id not in removal.removed)
        if removal.failure is not None:
            problems.append(removal.failure)
    if problems:
        target = f"release {previous.number}" if previous is not None else "nothing"
        report.failure = f"{report.failure}; reverting {', '.join(report.not_reverted)} to {target} failed too: {'; '.join(problems)}"


def check_hosts(context: DeployContext, client: consul.Consul, release: Release) -> dict[str, str]:
    """Whether ``release`` runs as it should, without changing anything: instance -> what is wrong.

    Consul: each planned instance registered, passing, with the release's version, on its host (no
    other instance registered). Each host, over SSH in parallel, through the deploy agent: the
    instance runs, got healthy, has its files.
    """
    planned = {instance.id: instance for instance in release.plan.all_instances}
    problems: dict[str, str] = {}
    rows = {row.instance: row for row in service_status.instances(client, release.service.name)}
    for instance in planned.values():
        row = rows.get(instance.id)
        if row is None:
            problems[instance.id] = "not registered in Consul"
        elif row.health != "passing" or row.version != release.version or row.host != instance.host:
            problems[instance.id] = f"in Consul: {row.health}, version {row.version}, on {row.host}"
    problems |= {name: "registered in Consul but not planned" for name in rows if name not in planned}
    hosts = sorted({instance.host for instance in planned.values()})
    runs = context.agents.run({host: status_args(host, release.service.name) for host in hosts})
    for instance in planned.values():
        run = runs[instance.host]
        state = (run.document.get("instances") or {}).get(instance.id) if run.ok else None
        if not run.ok:
            problems.setdefault(instance.id, run.failure_text())
        elif state is None or not (state.get("running") and state.get("healthy") and state.get("files")):
            problems.setdefault(instance.id, f"on {instance.host}: {state or 'never started'}")
    return problems
