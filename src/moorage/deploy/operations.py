"""The deploy commands' work: deploy, rollback, scale, promote (each under the service's lock)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from moorage.deploy.connection import PlatformAccess, vault_identities
from moorage.deploy.identity import content_version, spec_hash
from moorage.deploy.lock import DeployLock
from moorage.deploy.placement import replan
from moorage.deploy.releases import Release, ReleaseStore
from moorage.deploy.rollout import PlaybookContext, RolloutReport, preflight, recheck, remove_instances, roll
from moorage.errors import BadInput, MoorageError
from moorage.inventory import load_inventory
from moorage.plan import place
from moorage.spec.loader import load_spec
from moorage.spec.model import ServiceSpec
from moorage.targets.classic import instance_variables, render


@dataclass(frozen=True)
class Outcome:
    changed: bool
    release: Release | None
    report: RolloutReport | None
    message: str
    ansible_changed: int | None = None  # tasks Ansible changed, when a no-change deploy checked the hosts

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.report is None or self.report.failure is None,
            "changed": self.changed,
            "release": None if self.release is None else self.release.summary(),
            "report": None if self.report is None else self.report.as_dict(),
            "message": self.message,
            "ansible_changed": self.ansible_changed,
        }


@dataclass(frozen=True)
class Session:
    """Everything one command needs: where, how to reach Consul, how to report."""

    inventory: Path
    access: PlatformAccess
    context: PlaybookContext
    lock_wait: timedelta
    secrets_password_file: Path | None = None  # opens the --secrets vault

    def identities(self) -> Any:
        files = {}
        if self.access.vault_password_file is not None:
            files["platform"] = self.access.vault_password_file
        if self.secrets_password_file is not None:
            files["secrets"] = self.secrets_password_file.resolve()
        return vault_identities(files)


def deploy(session: Session, spec_file: Path, version: str | None, canary: int | None) -> Outcome:
    service = load_spec(spec_file)
    variables = render(service, spec_file, session.inventory)
    canary = canary if canary is not None else service.spec.update.canary
    version = version or content_version(variables["moorage_service"])
    digest = spec_hash(variables["moorage_service"])
    store = ReleaseStore(session.access.client, service.name)
    with DeployLock(session.access.client, service.name, version, "deploy", session.lock_wait):
        current = store.current()
        if (
            current is not None
            and current.version == version
            and current.spec_hash == digest
            and current.variables["moorage_instances"] == variables["moorage_instances"]
        ):
            with session.identities():
                changed_tasks = recheck(session.context, current)
            return Outcome(
                changed=False,
                release=current,
                report=None,
                ansible_changed=changed_tasks,
                message=(
                    f"{service.name}: release {current.number} (version {version}) already deployed; "
                    f"no change (hosts checked, Ansible changed {changed_tasks})"
                ),
            )
        _refuse_during_canary(store)
        # What scale and promote need later: the spec as deployed, and the canaries beside the old.
        canaries = canary_instances(service, session.inventory, canary) if canary else []
        variables = {**variables, "spec_text": spec_file.read_text(), "spec_file": str(spec_file.resolve()), "canary_instances": canaries}
        candidate = Release(number=0, version=version, spec_hash=digest, created="", by="", status="deploying", variables=variables)
        with session.identities():
            preflight(session.context, candidate)
            release = store.create(version, digest, variables, "deploying")
            if canaries:
                report = roll(session.context, release, current, canaries, [])
            else:
                report = roll(session.context, release, current, variables["moorage_instances"], _removed(current, variables))
        return _finish(store, release, report, "canary" if canaries else "deployed")


def rollback(session: Session, service_name: str, to: int | None) -> Outcome:
    store = ReleaseStore(session.access.client, service_name)
    releases = store.all()
    if not releases:
        raise BadInput(f"{service_name}: no releases in Consul (deploy it first)")
    current = store.current()
    if to is None and releases[-1].status == "canary":
        return _drop_canaries(session, store, releases[-1])
    if to is None:
        older = [release for release in releases if release.status == "deployed" and (current is None or release.number < current.number)]
        if not older:
            raise BadInput(f"{service_name}: no earlier deployed release to roll back to (see 'moorage releases {service_name}')")
        target = older[-1]
    else:
        target = store.get(to)
    with DeployLock(session.access.client, service_name, target.version, f"rollback to {target.number}", session.lock_wait):
        variables = {**target.variables, "files_release": target.variables.get("files_release", target.number)}
        with session.identities():
            release = store.create(target.version, target.spec_hash, variables, "deploying", note=f"rollback to {target.number}")
            report = roll(session.context, release, current, variables["moorage_instances"], _removed(current, variables))
        return _finish(store, release, report, "deployed")


def scale(session: Session, service_name: str, replicas: int) -> Outcome:
    """New instances start with the current release; removed ones drain and go; others are untouched."""
    store = ReleaseStore(session.access.client, service_name)
    current = store.current()
    if current is None:
        raise BadInput(f"{service_name}: nothing deployed to scale")
    instances = replan(current, replicas, session.inventory)
    before = {instance["id"] for instance in current.variables["moorage_instances"]}
    added = [instance for instance in instances if instance["id"] not in before]
    variables = {
        **current.variables,
        "moorage_service": {**current.variables["moorage_service"], "replicas": replicas},
        "moorage_instances": instances,
        "files_release": current.variables.get("files_release", current.number),
    }
    _refuse_during_canary(store)
    if not added and len(instances) == len(before):
        return Outcome(changed=False, release=current, report=None, message=f"{service_name}: already {replicas} instances; no change")
    with DeployLock(session.access.client, service_name, current.version, f"scale to {replicas}", session.lock_wait):
        with session.identities():
            release = store.create(current.version, current.spec_hash, variables, "deploying", note=f"scale to {replicas}")
            report = roll(session.context, release, current, added, _removed(current, variables))
        return _finish(store, release, report, "deployed")


def promote(session: Session, service_name: str) -> Outcome:
    """The canary release goes everywhere: the planned instances roll to it, then the canaries go."""
    store = ReleaseStore(session.access.client, service_name)
    latest = store.latest()
    if latest is None or latest.status != "canary":
        raise BadInput(f"{service_name}: no canary release to promote")
    previous = store.current()
    with DeployLock(session.access.client, service_name, latest.version, "promote", session.lock_wait):
        with session.identities():
            removed = latest.variables["canary_instances"] + _removed(previous, latest.variables)
            report = roll(session.context, latest, previous, latest.variables["moorage_instances"], removed)
        if report.failure is None:
            latest = store.mark(latest, "canary", variables={**latest.variables, "canary_instances": []})
        return _finish(store, latest, report, "deployed")


def _drop_canaries(session: Session, store: ReleaseStore, canary: Release) -> Outcome:
    """``rollback`` of a canary release: its extra instances drain and go; the others never changed."""
    with DeployLock(session.access.client, store.service, canary.version, "drop canaries", session.lock_wait):
        with session.identities():
            report = remove_instances(session.context, canary, canary.variables["canary_instances"])
        if report.failure is not None:
            raise RolloutFailed(
                Outcome(
                    changed=True,
                    release=canary,
                    report=report,
                    message=f"{store.service}: dropping the canaries of release {canary.number} failed: {report.failure}",
                )
            )
        dropped = store.mark(
            canary, "reverted", note="canaries dropped by rollback", variables={**canary.variables, "canary_instances": []}
        )
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


def canary_instances(service: ServiceSpec, inventory: Path, count: int) -> list[dict[str, Any]]:
    """``count`` instances beyond the planned ones (the next indexes, placed by the same rule)."""
    hosts = load_inventory(inventory).hosts(service.spec.placement.group)
    widened = service.model_copy(update={"spec": service.spec.model_copy(update={"replicas": service.spec.replicas + count})})
    try:
        return instance_variables(place(widened, hosts))[service.spec.replicas :]
    except BadInput as error:
        raise BadInput(f"--canary {count}: {error}") from None


def _removed(current: Release | None, variables: dict[str, Any]) -> list[dict[str, Any]]:
    if current is None:
        return []
    keep = {instance["id"] for instance in variables["moorage_instances"]}
    return [instance for instance in current.variables["moorage_instances"] if instance["id"] not in keep]


def _finish(store: ReleaseStore, release: Release, report: RolloutReport, success_status: str) -> Outcome:
    if report.failure is None:
        done = store.mark(release, success_status)  # type: ignore[arg-type]
        return Outcome(
            changed=True,
            release=done,
            report=report,
            message=f"{store.service}: release {release.number} (version {release.version}) {success_status}",
        )
    status = "reverted" if report.reverted else "failed"
    failed = store.mark(release, status, note=report.failure)
    raise RolloutFailed(
        Outcome(
            changed=True, release=failed, report=report, message=f"{store.service}: release {release.number} {status}: {report.failure}"
        )
    )


class RolloutFailed(MoorageError):
    """A rollout that failed (exit 1); carries the outcome for the report."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome
