"""``moorage remove SERVICE``: take a service off the platform as if it had never been deployed.

Two steps, so the command can ask before anything changes:

:func:`survey` (reads only)
    What there is of the service: its release records and other keys under
    ``moorage/services/NAME/`` in Consul KV, and its instances (those the kept releases placed and
    those registered in the Consul catalog). Nothing of either: bad input (exit 2), the same for a
    service that was never deployed and one removed already, since a removal leaves no trace. A
    name that the catalog holds without the ``moorage`` tag (``consul``, say) is refused.
:func:`remove` (holding the service's deploy lock)
    1. every host of the inventory, at once, over the deploy agent (``moorage.agents.purge``):
       each instance found there drains (maintenance on, every lb stops routing it), is
       deregistered and stopped, its unit or container and env file deleted; then the service's
       files (``/opt/moorage/NAME``) and configuration (``/etc/moorage/NAME``: definitions, env
       files with secrets, state, the token file). A host that fails, or cannot be reached, stops
       the removal here: the records stay, and running ``moorage remove`` again finishes it.
    2. Consul: no instance may be registered any more; the service's ACL token is deleted, then
       its KV keys (releases, and the lock key once the lock is let go).

NGINX routes, Prometheus targets and the lbs' acknowledgments come from the Consul catalog
through the host agents, so they go with the registrations. Kept: the data of the spec's
``volumes``, Docker images, the journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import consul

from moorage.agents.prepare import service_token
from moorage.deploy import status as service_status
from moorage.deploy.agent import purge_args
from moorage.deploy.keys import PORT_CLAIMS, lock_key, service_prefix
from moorage.deploy.operations import Session, unknown_service
from moorage.deploy.ports import release_claims
from moorage.deploy.rollout import failures
from moorage.errors import BadInput, MoorageError

SERVICE_TAG = "moorage"


@dataclass(frozen=True)
class Survey:
    """What there is of a service before it is removed."""

    service: str
    releases: tuple[int, ...]
    instances: dict[str, str]  # instance -> host
    keys: tuple[str, ...]  # under moorage/services/NAME/
    version: str  # of the newest release ("" when none is kept)

    @property
    def hosts(self) -> list[str]:
        return sorted(set(self.instances.values()))

    def question(self) -> str:
        """What the command asks on a terminal (click adds ``[y/N]``)."""
        hosts = self.hosts
        where = f"{len(hosts)} host{'' if len(hosts) == 1 else 's'} ({', '.join(hosts)})" if hosts else "0 hosts"
        instances = ", ".join(sorted(self.instances)) or "none running"
        return f"Remove {self.service} from {where}, instances {instances}, and its {len(self.releases)} release record(s)?"


@dataclass
class Removal:
    """What ``remove`` did (``-o json`` prints it)."""

    service: str
    hosts: dict[str, list[str]] = field(default_factory=dict)  # host -> what was removed there
    instances: list[str] = field(default_factory=list)
    releases: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    token: bool = False  # the service's Consul ACL token was deleted

    @property
    def message(self) -> str:
        hosts = sorted(host for host, removed in self.hosts.items() if removed)
        return (
            f"{self.service}: removed {len(self.instances)} instance(s) ({', '.join(self.instances) or 'none running'}) "
            f"and its files from {', '.join(hosts) or 'no host'}; {len(self.releases)} release record(s) deleted "
            f"({len(self.keys)} Consul key(s) in all){', and its Consul token' if self.token else ''}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            "changed": True,
            "service": self.service,
            "instances": self.instances,
            "hosts": self.hosts,
            "releases": self.releases,
            "consul_keys": self.keys,
            "consul_token_deleted": self.token,
            "message": self.message,
        }


class RemovalFailed(MoorageError):
    """Some host could not take the service off (exit 1); what stayed is named, running it again finishes."""


def survey(session: Session, service: str) -> Survey:
    """What there is of ``service`` (BadInput: nothing, or not a moorage service)."""
    client = session.access.client
    _, keys = client.kv.get(service_prefix(service), keys=True)
    kept = session.store(service).all()
    _, catalog = client.catalog.services()
    tags = catalog.get(service)
    if tags is not None and SERVICE_TAG not in tags and not kept:
        raise BadInput(f"{service}: not a moorage service (registered in Consul without the {SERVICE_TAG!r} tag); not removing it")
    registered = service_status.instances(client, service) if tags is not None else []
    placed = {instance.id: instance.host for release in kept for instance in release.plan.all_instances}
    instances = {**placed, **{row.instance: row.host for row in registered}}
    if not kept and not instances and not keys:
        raise BadInput(unknown_service(service))
    return Survey(
        service=service,
        releases=tuple(release.number for release in kept),
        instances=instances,
        keys=tuple(sorted(keys or [])),
        version=kept[-1].version if kept else "",
    )


def remove(session: Session, plan: Survey) -> Removal:
    """Take ``plan.service`` off every host, then out of Consul (see the module's docstring)."""
    service, context, client = plan.service, session.context, session.access.client
    store = session.store(service)
    removal = Removal(service)
    with session.locked(store, plan.version or "-", "remove"), session.hosts():
        context.guard.check()
        hosts = sorted(session.inventory.ssh_targets)
        context.reporter.stage(f"removing {service} from every host ({', '.join(hosts)}): drain, deregister, stop, delete files")
        token = session.access.management_token.encode()  # on stdin: never an argument
        runs = context.agents.run(
            {host: purge_args(host, service, context.lbs) for host in hosts}, context.reporter, stdin=dict.fromkeys(hosts, token)
        )
        for host, run in sorted(runs.items()):
            removal.hosts[host] = [result.instance for result in run.instances if result.ok and result.changed] + [
                str(item) for item in run.document.get("removed") or []
            ]
            removal.instances += [result.instance for result in run.instances if result.ok]
        removal.instances.sort()
        failed = failures(runs)
        if failed is not None:
            raise RemovalFailed(
                f"{service}: removing failed on some hosts, its records are kept (run 'moorage remove {service}' again): {failed}"
            )
        context.guard.check()
        left = service_status.instances(client, service)
        if left:
            named = ", ".join(f"{row.instance} on {row.host}" for row in left)
            raise RemovalFailed(f"{service}: still registered in Consul after every host removed it: {named}; its records are kept")
        removal.token = _delete_token(client, session.access.management_token, service)
        if release_claims(client, service):
            removal.keys.append(f"{PORT_CLAIMS} ({service}'s ports)")
        removal.releases = [release.number for release in store.all()]
        _, keys = client.kv.get(service_prefix(service), keys=True)
        for key in sorted(keys or []):
            if key != lock_key(service):
                client.kv.delete(key)
                removal.keys.append(key)
    if _delete_lock_key(client, service):
        removal.keys.append(lock_key(service))
    return removal


def _delete_token(client: consul.Consul, management_token: str, service: str) -> bool:
    """The service's own ACL token (made by the first deploy) goes; True when there was one."""
    _, accessor = service_token(management_token, service)
    tokens = client.acl.token.list()
    if not any(token.get("AccessorID") == accessor for token in tokens or []):
        return False
    client.acl.token.delete(accessor)
    return True


def _delete_lock_key(client: consul.Consul, service: str) -> bool:
    """The lock key, left empty by the lock let go; only if nobody took the lock meanwhile (check-and-set)."""
    _, entry = client.kv.get(lock_key(service))
    if entry is None or entry.get("Session"):
        return False
    return bool(client.kv.delete(lock_key(service), cas=entry["ModifyIndex"]))
