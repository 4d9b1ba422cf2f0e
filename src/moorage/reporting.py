"""How long work reports itself, one protocol for the lab, the platform and the deploy.

Work reports six kinds of things to a :class:`Reporter`:

- ``step(description)``: a timed step (``with reporter.step("bridge ..."):``), e.g. booting machines;
- ``note(message)``: a remark beside the steps, e.g. a machine started again;
- ``stage(message)``: the next stage of a rollout, e.g. ``batch 2/3: hello-2@lab-3 -> release 4``;
- ``instance_step(host, instance, step, detail)``: an instance's progress as the deploy agent on its
  host reports it, e.g. ``hello-2`` on ``lab-3`` ``drained``;
- ``deploy_step_done(kind, name, status, seconds, message)``: a rollout's step finished (a batch, an
  instance's health gate, the preflight, ...; ``moorage.deploy.steps``), passed, failed or skipped;
- ``ansible_event(event)``: ansible-runner's events while a playbook runs.

Three renderings: :class:`TextReporter` (a status line and lines on stderr, for people),
:class:`JsonLinesReporter` (one JSON object per line on stdout, for machines; the event names
``step``, ``note``, ``deploy_step``, ``deploy_step_done``, ``instance``, ``play``, ``task`` and ``host`` are part of the
CLI's contract) and :class:`QuietReporter` (nothing, for callers with their own output).

Only a task's name, host and status (and a failure's message) are ever shown, never a task's
result, so values of ``no_log`` tasks and secrets in variables do not leak.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from rich.markup import escape
from rich.status import Status

from moorage.output import OutputFormat, emit_event, err_console, is_structured
from moorage.runner import failure_message

HOST_STATUS = {
    "runner_on_ok": "ok",
    "runner_on_skipped": "skipped",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
}


def host_outcome(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """(host, status) of a per-host task result; status is ok, changed, skipped, failed or unreachable."""
    status = HOST_STATUS.get(event.get("event", ""))
    if status is None:
        return None
    data = event.get("event_data", {})
    if status == "ok" and data.get("res", {}).get("changed"):
        status = "changed"
    if status == "failed" and data.get("ignore_errors"):
        status = "ok"
    return str(data.get("host", "?")), status


class Reporter:
    """The protocol, and the rendering that shows nothing. Use as a context manager around the work."""

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """The work is over (stops a live status line)."""

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        yield

    def note(self, message: str) -> None:
        pass

    def stage(self, message: str) -> None:
        pass

    def instance_step(self, host: str, instance: str, step: str, detail: str) -> None:
        pass

    def deploy_step_done(self, kind: str, name: str, status: str, seconds: float, message: str) -> None:
        pass

    def ansible_event(self, event: Mapping[str, Any]) -> None:
        pass


class QuietReporter(Reporter):
    """Reports nothing."""


class JsonLinesReporter(Reporter):
    """One JSON object per line on stdout."""

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        started = time.monotonic()
        emit_event({"event": "step", "step": description, "status": "started"})
        yield
        emit_event({"event": "step", "step": description, "status": "done", "seconds": round(time.monotonic() - started, 2)})

    def note(self, message: str) -> None:
        emit_event({"event": "note", "message": message})

    def stage(self, message: str) -> None:
        emit_event({"event": "deploy_step", "message": message})

    def instance_step(self, host: str, instance: str, step: str, detail: str) -> None:
        emit_event({"event": "instance", "host": host, "instance": instance, "step": step, "detail": detail})

    def deploy_step_done(self, kind: str, name: str, status: str, seconds: float, message: str) -> None:
        line: dict[str, Any] = {"event": "deploy_step_done", "kind": kind, "name": name, "status": status, "seconds": round(seconds, 2)}
        if message:
            line["message"] = message
        emit_event(line)

    def ansible_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind == "playbook_on_play_start":
            emit_event({"event": "play", "play": data.get("play", "")})
        elif kind == "playbook_on_task_start":
            emit_event({"event": "task", "play": data.get("play", ""), "task": data.get("task", "")})
        elif (outcome := host_outcome(event)) is not None:
            host, status = outcome
            line = {"event": "host", "host": host, "task": data.get("task", ""), "status": status}
            if status in ("failed", "unreachable"):
                line["message"] = failure_message(data.get("res", {}))
            emit_event(line)


class TextReporter(Reporter):
    """For people, on stderr: a live status line (the running step, or Ansible's play, task and
    counts per status), a line per finished step, stage, note and failed task."""

    def __init__(self) -> None:
        self._status: Status | None = None
        self._play = ""
        self._task = ""
        self._counts: Counter[str] = Counter()

    def close(self) -> None:
        self._hide_status()

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        started = time.monotonic()
        self._show_status(escape(description) + " ...")
        try:
            yield
        finally:
            self._hide_status()
        err_console.print(f"[green]✓[/] {escape(description)} [dim]({time.monotonic() - started:.1f}s)[/]")

    def note(self, message: str) -> None:
        err_console.print(f"  {message}", markup=False)

    def stage(self, message: str) -> None:
        err_console.print(f"[bold]>[/bold] {escape(message)}")

    def instance_step(self, host: str, instance: str, step: str, detail: str) -> None:
        err_console.print(f"  {instance}@{host} {step}{f': {detail}' if detail else ''}", markup=False, highlight=False)

    def ansible_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind == "playbook_on_play_start":
            self._play = str(data.get("play", ""))
            err_console.print(f"[bold]play[/bold] {escape(self._play)}")
        elif kind == "playbook_on_task_start":
            self._task = str(data.get("task", ""))
        elif (outcome := host_outcome(event)) is not None:
            host, status = outcome
            self._counts[status] += 1
            if status in ("failed", "unreachable"):
                line = f"{host}: {data.get('task', '')}: {failure_message(data.get('res', {}))}"
                err_console.print(f"  [red]{status}[/red] {escape(line)}")
        else:
            return
        counts = "  ".join(f"{name} {self._counts[name]}" for name in ("ok", "changed", "failed", "unreachable"))
        self._show_status(f"{escape(self._play)} › {escape(self._task)}   [dim]{counts}[/dim]")

    def _show_status(self, text: str) -> None:
        if self._status is None:
            self._status = err_console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def _hide_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def reporter_for(output_format: OutputFormat) -> Reporter:
    """``--output text`` -> :class:`TextReporter`, ``json`` -> :class:`JsonLinesReporter`."""
    return JsonLinesReporter() if is_structured(output_format) else TextReporter()
