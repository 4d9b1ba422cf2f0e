"""How commands speak: rich text for people, JSON for machines (``--output json``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import click
from rich.console import Console

OutputFormat = Literal["text", "json"]
F = TypeVar("F", bound=Callable[..., Any])

# Human-facing output goes to stdout; progress and diagnostics to stderr.
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def output_option(command: F) -> F:
    """``--output text|json`` on every command."""
    return click.option(
        "--output",
        "output_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="text for people, json for machines.",
    )(command)


def emit_json(document: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def emit_event(event: dict[str, Any]) -> None:
    """One JSON event per line on stdout (progress of long work, for machines)."""
    sys.stdout.write(json.dumps(event, default=str) + "\n")
    sys.stdout.flush()
