"""Reporters for :func:`moorage.runner.run_playbook`: live progress for people, JSON lines for machines.

Both only ever show a task's name, host and status (and a failure's message), never a task's
result, so values of ``no_log`` tasks and secrets in variables do not leak.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from rich.markup import escape
from rich.status import Status

from moorage.output import emit_event, err_console
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
    return data.get("host", "?"), status


class JsonEventReporter:
    """One JSON object per line on stdout: play, task, host result."""

    def event(self, event: Mapping[str, Any]) -> None:
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


class LiveProgressReporter:
    """A status line on stderr (current play and task, counts per status) and one line per failure.

    Use as a context manager around the run.
    """

    def __init__(self) -> None:
        self._status: Status = err_console.status("starting Ansible")
        self._play = ""
        self._task = ""
        self._counts: Counter[str] = Counter()

    def __enter__(self) -> LiveProgressReporter:
        self._status.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._status.stop()

    def event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind == "playbook_on_play_start":
            self._play = data.get("play", "")
            err_console.print(f"[bold]play[/bold] {escape(self._play)}")
        elif kind == "playbook_on_task_start":
            self._task = data.get("task", "")
        elif (outcome := host_outcome(event)) is not None:
            host, status = outcome
            self._counts[status] += 1
            if status in ("failed", "unreachable"):
                line = f"{host}: {data.get('task', '')}: {failure_message(data.get('res', {}))}"
                err_console.print(f"  [red]{status}[/red] {escape(line)}")
        else:
            return
        counts = "  ".join(f"{name} {self._counts[name]}" for name in ("ok", "changed", "failed", "unreachable"))
        self._status.update(f"{escape(self._play)} › {escape(self._task)}   [dim]{counts}[/dim]")
