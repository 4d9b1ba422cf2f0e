"""The deploy agent as the controller runs it: one SSH command per host, the hosts in parallel.

The agent (``moorage.agents``: ``release check|ship``, ``instance switch|remove|status`` and ``purge``) is one
zipapp named after its digest (``moorage.deploy.archives.agent_zipapp``). A host that lacks that
very zipapp gets it over the same connection the first time it is asked (the command says so
with exit status ``MISSING``), so a host always runs the controller's agent. The agent prints its
progress as JSON lines and ends with a result line; progress goes to the reporter as it comes
(``instance`` events), the result becomes :class:`HostRun`.
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from moorage.agents.layout import agent_path
from moorage.deploy.archives import Shipped
from moorage.deploy.remote import Connections, as_root
from moorage.reporting import QuietReporter, Reporter

HOST_PYTHON = "/usr/bin/python3"
MISSING = 125  # the zipapp is not on the host (yet)


@dataclass(frozen=True)
class InstanceResult:
    instance: str
    ok: bool
    changed: bool
    release: int | None
    message: str
    reverted: bool


@dataclass(frozen=True)
class Progress:
    """One progress line of the agent: ``instance`` reached ``step`` (started, healthy, failed, ...) ``seconds`` after its switch began."""

    instance: str
    step: str
    seconds: float | None


@dataclass
class HostRun:
    """What one agent run on one host did (``failure``: the run itself failed, e.g. the host is unreachable)."""

    host: str
    document: dict[str, Any] = field(default_factory=dict)  # the result line
    failure: str | None = None
    unreachable: bool = False
    progress: list[Progress] = field(default_factory=list)  # in the order the agent printed it

    @property
    def ok(self) -> bool:
        return self.failure is None and bool(self.document.get("ok"))

    @property
    def instances(self) -> list[InstanceResult]:
        items = self.document.get("instances")
        return [_instance(item) for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    def failure_text(self) -> str:
        if self.failure is not None:
            return self.failure
        if self.document.get("msg"):
            return str(self.document["msg"])
        return "; ".join(result.message for result in self.instances if not result.ok) or "failed without a message"


def switch_args(host: str, service: str, release: int, instances: Sequence[str], *, max_parallel: int, revert: bool) -> list[str]:
    no_revert = [] if revert else ["--no-revert"]
    return ["instance", "--host", host, "switch", service, str(release), *instances, "--max-parallel", str(max_parallel), *no_revert]


def remove_args(host: str, service: str, instances: Sequence[str], lbs: Sequence[str]) -> list[str]:
    return ["instance", "--host", host, "remove", service, *instances, *(item for lb in lbs for item in ("--lb", lb))]


def purge_args(host: str, service: str, lbs: Sequence[str]) -> list[str]:
    return ["purge", "--host", host, service, *(item for lb in lbs for item in ("--lb", lb))]


def status_args(host: str, service: str) -> list[str]:
    return ["instance", "--host", host, "status", service]


class HostAgents:
    """The deploy agent ``agent`` on the hosts, over the command's SSH connections."""

    def __init__(self, connections: Connections, agent: Shipped) -> None:
        self.connections = connections
        self.agent = agent

    def line(self, args: Sequence[str]) -> str:
        remote = agent_path(self.agent.digest)
        return f"test -f {shlex.quote(remote)} || exit {MISSING}; {as_root([HOST_PYTHON, '-I', remote, *args])}"

    def run(
        self, calls: Mapping[str, Sequence[str]], reporter: Reporter | None = None, stdin: Mapping[str, bytes] | None = None
    ) -> dict[str, HostRun]:
        """``calls``: host -> the agent's arguments (``stdin``: host -> what it reads); every host at once."""
        runs: dict[str, HostRun] = {}
        shown = reporter or QuietReporter()
        threads = [
            threading.Thread(
                target=lambda host=host, args=args: runs.__setitem__(host, self._one(host, args, shown, (stdin or {}).get(host)))
            )
            for host, args in calls.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return runs

    def _one(self, host: str, args: Sequence[str], reporter: Reporter, stdin: bytes | None) -> HostRun:
        run = HostRun(host)

        def on_line(line: str) -> None:
            try:
                event = json.loads(line)
            except ValueError:
                return
            if not isinstance(event, dict):
                return
            if event.get("event") == "progress":
                seconds = event.get("seconds")
                run.progress.append(
                    Progress(
                        str(event.get("instance", "")),
                        str(event.get("step", "")),
                        float(seconds) if isinstance(seconds, (int, float)) else None,
                    )
                )
                reporter.instance_step(host, str(event.get("instance", "")), str(event.get("step", "")), _detail(event))
            elif event.get("event") == "result":
                run.document = event

        done = self.connections.run(host, self.line(args), on_line, stdin=stdin)
        if done.returncode == MISSING:
            installed = self.connections.upload(host, self.agent.path, agent_path(self.agent.digest))
            if installed.returncode != 0:
                run.failure, run.unreachable = (
                    f"host {host}: could not install the deploy agent: {installed.reason()}",
                    installed.unreachable,
                )
                return run
            done = self.connections.run(host, self.line(args), on_line, stdin=stdin)
        if done.unreachable:
            run.failure, run.unreachable = f"host {host} is unreachable: {done.reason()}", True
        elif not run.document:
            run.failure = f"host {host}: the deploy agent did not answer (exit {done.returncode}): {done.reason()}"
        return run


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
