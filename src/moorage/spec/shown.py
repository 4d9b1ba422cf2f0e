"""A value from the spec as an error message quotes it: short, on one line, in YAML's words."""

from __future__ import annotations

import datetime
from typing import Any


def shown(value: Any) -> str:
    """``None`` -> ``nothing (null)``, ``True`` -> ``true``, a long text or number shortened."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        text = str(value)
        return text if len(text) <= 30 else f"{text[:20]}... ({len(text)} digits)"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else f"{value[:40]!r}... ({len(value)} characters)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, datetime.date):
        return f"the date {value.isoformat()}"
    return f"a {type(value).__name__} value"
