"""The deploy agent as the controller runs it: one SSH command per host, the hosts in parallel.

The agent (``moorage.agents.instance``) is one zipapp named after its digest
(``moorage.deploy.archives.agent_zipapp``); :func:`ensure_agent` puts it on the hosts that lack
that very one (over the same SSH connections), so a host always runs the controller's agent. It
prints its progress as JSON lines and ends with a result line; progress goes to the reporter as
it comes (``instance`` events), the result becomes :class:`HostRun`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from moorage.agents.layout import agent_path
from moorage.deploy.archives import Shipped
from moorage.deploy.remote import Connections
from moorage.reporting import Reporter

HOST_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class InstanceResult:
    instance: str
    ok: bool
    changed: bool
    release: int | None
    message: str
    reverted: bool


@dataclass
class HostRun:
    """What one agent run on one host did (``failure``: the run itself failed, e.g. the host is unreachable)."""

    host: str
    instances: list[InstanceResult] = field(default_factory=list)
    document: dict[str, Any] = field(default_factory=dict)  # the result line
    failure: str | None = None
    unreachable: bool = False

    @property
    def ok(self) -> bool:
        return self.failure is None and bool(self.document.get("ok"))

    def failure_text(self) -> str:
        if self.failure is not None:
            return self.failure
        return "; ".join(result.message for result in self.instances if not result.ok) or "failed without a message"


def ensure_agent(connections: Connections, agent: Shipped, hosts: Sequence[str]) -> dict[str, str]:
    """The agent on every host of ``hosts`` (uploaded where missing, in parallel); host -> why it could not be."""
    problems: dict[str, str] = {}
    remote = agent_path(agent.digest)

    def one(host: str) -> None:
        present = connections.run(host, ["test", "-f", remote], lambda _: None, root=False)
        if present.returncode == 0:
            return
        done = present if present.unreachable else connections.upload(host, agent.path, remote)
        if done.returncode != 0:
            problems[host] = f"host {host}: {'unreachable' if done.unreachable else 'could not install the deploy agent'}: {done.reason()}"

    threads = [threading.Thread(target=one, args=(host,)) for host in sorted(set(hosts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return problems


def agent_command(digest: str, host: str, *args: str) -> list[str]:
    return [HOST_PYTHON, "-I", agent_path(digest), "instance", "--host", host, *args]


def switch_args(service: str, release: int, instances: Sequence[str], *, max_parallel: int, revert: bool) -> list[str]:
    return ["switch", service, str(release), *instances, "--max-parallel", str(max_parallel), *([] if revert else ["--no-revert"])]


def remove_args(service: str, instances: Sequence[str], lbs: Sequence[str]) -> list[str]:
    return ["remove", service, *instances, *(item for lb in lbs for item in ("--lb", lb))]


def status_args(service: str) -> list[str]:
    return ["status", service]


def run_agents(connections: Connections, digest: str, calls: Mapping[str, Sequence[str]], reporter: Reporter) -> dict[str, HostRun]:
    """``calls``: host -> the agent's arguments; every host at once. Returns each host's run."""
    runs: dict[str, HostRun] = {}

    def one(host: str, args: Sequence[str]) -> None:
        run = HostRun(host)

        def on_line(line: str) -> None:
            try:
                event = json.loads(line)
            except ValueError:
                return
            if not isinstance(event, dict):
                return
            if event.get("event") == "progress":
                reporter.instance_step(host, str(event.get("instance", "")), str(event.get("step", "")), _detail(event))
            elif event.get("event") == "result":
                run.document = event

        done = connections.run(host, agent_command(digest, host, *args), on_line)
        run.instances = [_instance(item) for item in run.document.get("instances") or [] if isinstance(item, dict)]
        if done.unreachable:
            run.failure, run.unreachable = f"host {host} is unreachable: {done.reason()}", True
        elif not run.document:
            run.failure = f"host {host}: the deploy agent did not answer (exit {done.returncode}): {done.reason()}"
        runs[host] = run

    threads = [threading.Thread(target=one, args=(host, args), name=f"agent-{host}") for host, args in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return runs


def _detail(event: Mapping[str, Any]) -> str:
    detail = str(event.get("detail") or "")
    seconds = event.get("seconds")
    return f"{detail} [{seconds}s]".strip() if seconds is not None else detail


def _instance(item: Mapping[str, Any]) -> InstanceResult:
    release = item.get("release")
    return InstanceResult(
        instance=str(item.get("instance", "")),
        ok=bool(item.get("ok")),
        changed=bool(item.get("changed")),
        release=None if release is None else int(release),
        message=str(item.get("message") or ""),
        reverted=bool(item.get("reverted")),
    )
