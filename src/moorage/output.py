"""How commands speak: rich text for people, JSON for machines (``--output json``)."""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

from rich.console import Console

OutputFormat = Literal["text", "json"]

# Human-facing output goes to stdout; progress and diagnostics to stderr.
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


# With --output json every line on stdout is one JSON object (JSON Lines). A short command prints
# one line; long work prints its progress events and ends with an ``{"event": "result", ...}`` line.


def emit_json(document: Any) -> None:
    """One JSON document, on one line of stdout."""
    sys.stdout.write(json.dumps(document, default=str) + "\n")
    sys.stdout.flush()


def emit_event(event: dict[str, Any]) -> None:
    """One progress event of long work."""
    emit_json(event)


def emit_result(result: dict[str, Any]) -> None:
    """The last line of long work that streamed events."""
    emit_json({"event": "result", **result})
