"""What each step of a rollout did, as typed records: the JUnit report and the JSON events read these.

A command that changes instances records one :class:`StepResult` per step as it finishes:

- ``preflight``: the release checked on every host of its group (ports, secrets, routes, runtime);
- ``ship``: its files and definitions put next to what runs;
- ``batch``: one batch of ``update.maxParallel`` instances switched (``skipped`` after a failed one);
- ``gate``: one instance's health gate in a batch (healthy for ``update.minHealthy`` within the deadline);
- ``revert``: the touched instances put back to the previous release (``update.autoRevert``);
- ``remove``: instances no longer planned drained and removed;
- ``check``: a deploy of what already runs, checked on Consul and the hosts;
- ``deploy``: the command itself, when it failed before any step (a bad spec, Consul unreachable, locked).

The records go to :class:`StepLog` (kept by the command's ``DeployContext``), which hands each to the
reporter as it comes (``deploy_step_done`` events with ``--output json``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from moorage.errors import MoorageError
from moorage.reporting import Reporter

StepKind = Literal["preflight", "ship", "batch", "gate", "revert", "remove", "check", "deploy"]
StepStatus = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class StepResult:
    """One finished step: what, of which service, how it ended, how long it took, and why it failed (or was skipped)."""

    kind: StepKind
    name: str  # e.g. "batch 1/3: hello-1@lab-1 -> release 5"
    status: StepStatus
    seconds: float
    service: str | None = None  # None: the command failed before it knew the service
    message: str = ""  # one line: why it failed or was skipped
    detail: str = ""  # more lines, e.g. the instance's last log lines or every problem of a spec
    error_type: str = ""  # the error's class for a failed step that raised (BadInput, Locked, ...)

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "service": self.service,
            "message": self.message,
        }


@dataclass
class _Running:
    """A step under way (``StepLog.timed``): its message when it ended without raising but still failed."""

    failure: str | None = None
    detail: str = ""


@dataclass
class StepLog:
    """The steps of one command, in the order they finished."""

    reporter: Reporter = field(default_factory=Reporter)
    results: list[StepResult] = field(default_factory=list)

    def add(self, result: StepResult) -> None:
        self.results.append(result)
        self.reporter.deploy_step_done(result.kind, result.name, result.status, result.seconds, result.message)

    @property
    def failed(self) -> bool:
        return any(result.failed for result in self.results)

    @contextmanager
    def timed(self, kind: StepKind, name: str, service: str) -> Iterator[_Running]:
        """Time the block; a MoorageError raised in it is recorded as the step's failure (and raised on),
        as is a ``failure`` the block sets on what it yields."""
        started = time.monotonic()
        running = _Running()
        try:
            yield running
        except MoorageError as error:
            self.add(
                StepResult(
                    kind, name, "failed", time.monotonic() - started, service, _first_line(str(error)), str(error), type(error).__name__
                )
            )
            raise
        status: StepStatus = "passed" if running.failure is None else "failed"
        self.add(StepResult(kind, name, status, time.monotonic() - started, service, _first_line(running.failure or ""), running.detail))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def command_failed(name: str, error: MoorageError) -> StepResult:
    """The one failed step of a command that stopped before any step of its own failed (a bad spec, Consul away, locked)."""
    detail = "\n".join(error.report_lines())
    return StepResult("deploy", name, "failed", 0.0, None, _first_line(str(error)), detail, type(error).__name__)
