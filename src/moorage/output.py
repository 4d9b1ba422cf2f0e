"""How commands speak: rich text for people, JSON or YAML for machines (``-o/--output json|yaml``)."""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

import yaml
from rich.console import Console

OutputFormat = Literal["text", "json", "yaml"]
StructuredFormat = Literal["json", "yaml"]

# Human-facing output goes to stdout; progress and diagnostics to stderr.
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


# With --output json every line on stdout is one JSON object (JSON Lines). A short command prints
# one line; long work prints its progress events and ends with an ``{"event": "result", ...}`` line.
# With --output yaml the same documents are YAML documents, each starting with ``---`` (a stream
# that yaml.safe_load_all reads), like ``kubectl get -o yaml`` for several objects.


class _Choice:
    """The structured format of this process's documents (json unless ``--output yaml``)."""

    structured: StructuredFormat = "json"


_choice = _Choice()


def is_structured(output_format: OutputFormat) -> bool:
    """Whether the command speaks to a machine (json or yaml) rather than to a person."""
    return output_format != "text"


def use_format(output_format: OutputFormat) -> None:
    """The format of every document this process emits; the ``--output`` option sets it once."""
    if output_format != "text":
        _choice.structured = output_format


def emit_document(document: Any) -> None:
    """One document on stdout: a line of JSON, or a YAML document."""
    if _choice.structured == "yaml":
        plain = json.loads(json.dumps(document, default=str))  # the same values JSON shows (datetimes, paths as text)
        sys.stdout.write("---\n" + yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=1000))
    else:
        sys.stdout.write(json.dumps(document, default=str) + "\n")
    sys.stdout.flush()


def emit_event(event: dict[str, Any]) -> None:
    """One progress event of long work."""
    emit_document(event)


def emit_result(result: dict[str, Any]) -> None:
    """The last line of long work that streamed events."""
    emit_document({"event": "result", **result})
