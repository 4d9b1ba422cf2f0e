"""How long lab work reports itself: a spinner and a tick per step for people, JSON events for machines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from moorage.output import emit_event, err_console


class TextProgress:
    """Rich spinner while a step runs, then one line with its duration (on stderr)."""

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        started = time.monotonic()
        with err_console.status(description + " ..."):
            yield
        err_console.print(f"[green]✓[/] {description} [dim]({time.monotonic() - started:.1f}s)[/]")

    def note(self, message: str) -> None:
        err_console.print(f"  {message}", markup=False)


class JsonProgress:
    """One JSON event per line on stdout: ``step`` started/finished with its duration, and notes."""

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        started = time.monotonic()
        emit_event({"event": "step", "step": description, "status": "started"})
        yield
        emit_event({"event": "step", "step": description, "status": "done", "seconds": round(time.monotonic() - started, 2)})

    def note(self, message: str) -> None:
        emit_event({"event": "note", "message": message})


class QuietProgress:
    """Reports nothing (for callers with their own output)."""

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        yield

    def note(self, message: str) -> None:
        pass


Progress = TextProgress | JsonProgress | QuietProgress
