"""The rolling update: one Ansible run puts the release on the hosts, then Python drives the batches.

1. prepare (one run of ``playbooks/deploy.yml``, first play only, on the placement group): every
   host is checked first (ports, secrets, routes, runtime; a failure or an unreachable host is bad
   input, exit 2, and nothing was written anywhere), then each gets the release next to what runs:
   its files (an archive built once per content, shipped only where missing), each instance's
   definition, the service's token. Nothing that runs changes. Meanwhile the controller opens one
   SSH connection per host and puts the deploy agent there (``moorage.deploy.agent``).
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

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import consul

from moorage.deploy import status as service_status
from moorage.deploy.agent import ensure_agent, remove_args, run_agents, status_args, switch_args
from moorage.deploy.archives import Shipped, agent_zipapp, cached_archive, release_archive
from moorage.deploy.remote import Connections
from moorage.errors import BadInput, MoorageError
from moorage.inventory import Inventory
from moorage.plan import Instance
from moorage.release import Release
from moorage.reporting import QuietReporter, Reporter
from moorage.runner import PlaybookResult, run_playbook
from moorage.spec.units import format_duration
from moorage.targets.classic import playbook_extravars

PLAYBOOK = "deploy.yml"
# The prepare run's read-only task (roles/service/tasks/prepare.yml): its failures are bad input.
CHECK_TASK = "Prepare | check that this host can take the release (ports, secrets, routes, runtime)"
LB_GROUP = "lb"


@dataclass
class RolloutReport:
    service: str
    release: int
    version: str
    switched: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)
    failure: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DeployContext:
    """What every step of a deploy needs besides the release: the hosts and how to reach them."""

    inventory: Inventory
    consul_vault_file: Path | None
    secrets_file: Path | None
    reporter: Reporter
    connections: Connections

    @property
    def lbs(self) -> list[str]:
        """The lb hosts (their Consul node names are their inventory names)."""
        return [host.name for host in self.inventory.groups.get(LB_GROUP, ())]


@dataclass(frozen=True)
class Prepared:
    """A release put on the hosts: the agent that switches its instances, the archive its files came in."""

    agent: Shipped
    archive: Shipped | None
    changed: int  # tasks the prepare run changed


def batches(instances: Sequence[Instance], size: int) -> list[list[Instance]]:
    return [list(instances[start : start + size]) for start in range(0, len(instances), size)]


def failure_text(result: PlaybookResult) -> str:
    if result.failures:
        last_per_host = {failure.host: failure.message for failure in result.failures}
        return "; ".join(f"{host}: {message}" for host, message in last_per_host.items())
    return " ".join(result.output_tail[-3:]) or f"ansible-playbook exited {result.rc}"


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
    built = release_archive(source)
    if release.files_digest is not None and built.digest != release.files_digest:
        raise BadInput(f"{source}: changed since release {release.number} was made; deploy the service again to ship it")
    return built


def prepare(context: DeployContext, release: Release) -> Prepared:
    """The one Ansible run of a deploy: every host checked, then the release put next to what runs.

    BadInput when a host cannot take it (nothing was written on any host); MoorageError when writing failed.
    """
    context.reporter.stage(f"release {release.number} (version {release.version}): checking the hosts, shipping files")
    archive = files_archive(release)
    agent = agent_zipapp()
    hosts = sorted({instance.host for instance in release.plan.all_instances})
    agent_problems: dict[str, str] = {}
    # The SSH connections and the agent, while Ansible works.
    installer = threading.Thread(target=lambda: agent_problems.update(ensure_agent(context.connections, agent, hosts)), name="agent")
    installer.start()
    extravars = playbook_extravars(
        release,
        "prepare",
        consul_vault_file=context.consul_vault_file,
        secrets_file=context.secrets_file,
        archive=None if archive is None else archive.variables(),
    )
    result = run_playbook(PLAYBOOK, context.inventory.path, extravars, on_event=context.reporter.ansible_event)
    installer.join()
    if not result.succeeded:
        first = result.failures[0] if result.failures else None
        if first is not None and first.unreachable:
            raise BadInput(f"host {first.host} is unreachable: {first.message}")
        if first is not None and first.task == CHECK_TASK:
            raise BadInput(first.message)
        raise MoorageError(f"putting release {release.number} on the hosts failed: {failure_text(result)}")
    if agent_problems:
        raise MoorageError("; ".join(sorted(agent_problems.values())))
    return Prepared(agent, archive, result.changed)


def roll(
    context: DeployContext,
    prepared: Prepared,
    new: Release,
    previous: Release | None,
    targets: Sequence[Instance],
    removed: Sequence[Instance],
    *,
    revert_on_failure: bool = True,
) -> RolloutReport:
    """Switch ``targets`` batch by batch, then remove ``removed``; revert on failure (``update.autoRevert``)."""
    update = new.service.spec.update
    report = RolloutReport(service=new.service.name, release=new.number, version=new.version)
    all_batches = batches(targets, update.max_parallel)
    touched: list[Instance] = []
    for number, batch in enumerate(all_batches, start=1):
        names = ", ".join(f"{instance.id}@{instance.host}" for instance in batch)
        context.reporter.stage(
            f"batch {number}/{len(all_batches)}: {names} -> release {new.number} (healthy for {format_duration(update.min_healthy)})"
        )
        touched.extend(batch)
        failure = switch(context, prepared.agent, new, batch, revert=update.auto_revert)
        if failure is not None:
            report.failure = f"batch {number}/{len(all_batches)} failed: {failure}"
            if update.auto_revert and revert_on_failure:
                revert(context, prepared.agent, new, previous, touched, report)
            return report
        report.switched.extend(instance.id for instance in batch)
    if removed:
        removal = remove_instances(context, prepared.agent, new, removed)
        report.removed, report.failure = removal.removed, removal.failure
    return report


def _by_host(instances: Sequence[Instance]) -> dict[str, list[str]]:
    hosts: dict[str, list[str]] = {}
    for instance in instances:
        hosts.setdefault(instance.host, []).append(instance.id)
    return hosts


def switch(context: DeployContext, agent: Shipped, release: Release, batch: Sequence[Instance], *, revert: bool) -> str | None:
    """``batch`` to ``release``: one agent run per host, the hosts at once. None, or what failed."""
    calls = {
        host: switch_args(release.service.name, release.number, ids, max_parallel=len(ids), revert=revert)
        for host, ids in _by_host(batch).items()
    }
    runs = run_agents(context.connections, agent.digest, calls, context.reporter)
    failures = [f"{host}: {run.failure_text()}" for host, run in sorted(runs.items()) if not run.ok]
    return "; ".join(failures) or None


def remove_instances(context: DeployContext, agent: Shipped, release: Release, removed: Sequence[Instance]) -> RolloutReport:
    """Drain, deregister and stop ``removed`` (e.g. after scaling down, or dropped canaries)."""
    report = RolloutReport(service=release.service.name, release=release.number, version=release.version)
    context.reporter.stage(f"removing {', '.join(instance.id for instance in removed)}")
    problems = ensure_agent(context.connections, agent, sorted({instance.host for instance in removed}))
    if problems:
        report.failure = f"removing instances failed: {'; '.join(sorted(problems.values()))}"
        return report
    calls = {host: remove_args(release.service.name, ids, context.lbs) for host, ids in _by_host(removed).items()}
    runs = run_agents(context.connections, agent.digest, calls, context.reporter)
    failures = [f"{host}: {run.failure_text()}" for host, run in sorted(runs.items()) if not run.ok]
    done = {result.instance for run in runs.values() for result in run.instances if result.ok}
    report.removed.extend(instance.id for instance in removed if instance.id in done)
    if failures:
        report.failure = f"removing instances failed: {'; '.join(failures)}"
    return report


def revert(
    context: DeployContext, agent: Shipped, new: Release, previous: Release | None, touched: Sequence[Instance], report: RolloutReport
) -> None:
    """Every touched instance back to ``previous``; instances ``previous`` did not have are removed."""
    before = {instance.id for instance in previous.plan.all_instances} if previous else set()
    back = [instance for instance in touched if instance.id in before]
    extra = [instance for instance in touched if instance.id not in before]
    if previous is not None and back:
        context.reporter.stage(f"auto-revert: {', '.join(instance.id for instance in back)} -> release {previous.number}")
        for batch in batches(back, previous.service.spec.update.max_parallel):
            failure = switch(context, agent, previous, batch, revert=False)
            if failure is not None:
                raise MoorageError(f"{report.failure}; and the revert to release {previous.number} failed too: {failure}")
            report.reverted.extend(instance.id for instance in batch)
    if extra:
        removal = remove_instances(context, agent, new, extra)
        report.reverted.extend(removal.removed)


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
    agent = agent_zipapp()
    hosts = sorted({instance.host for instance in planned.values()})
    unreachable = ensure_agent(context.connections, agent, hosts)
    runs = run_agents(
        context.connections,
        agent.digest,
        {host: status_args(release.service.name) for host in hosts if host not in unreachable},
        QuietReporter(),
    )
    for instance in planned.values():
        if instance.host in unreachable:
            problems.setdefault(instance.id, unreachable[instance.host])
            continue
        run = runs[instance.host]
        state = (run.document.get("instances") or {}).get(instance.id) if run.ok else None
        if not run.ok:
            problems.setdefault(instance.id, run.failure_text())
        elif state is None or not (state.get("running") and state.get("healthy") and state.get("files")):
            problems.setdefault(instance.id, f"on {instance.host}: {state or 'never started'}")
    return problems
