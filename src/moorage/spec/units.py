"""Durations (``2s``, ``5m``, ``1m30s``) and resource quantities (``256Mi``, ``500m``)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_FULL = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"


def parse_duration(value: object) -> timedelta:
    """Turn ``"2s"``, ``"1m30s"`` or ``"500ms"`` into a timedelta; bare numbers are refused."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not _DURATION_FULL.match(value.strip()):
        raise ValueError(f"expected a duration such as '2s', '5m' or '1m30s', got {value!r}")
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(value.strip()))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact form: ``90s`` -> ``"90s"``, 0.5 s -> ``"500ms"``."""
    millis = round(value.total_seconds() * 1000)
    if millis % 1000:
        return f"{millis}ms"
    seconds = millis // 1000
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def whole_seconds(value: timedelta) -> int:
    """Rounded up to whole seconds, at least 1 (what k8s probe fields take)."""
    return max(1, int(-(-value.total_seconds() // 1)))


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]

_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEMORY_FACTOR = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
MEMORY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"
_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m)?$")
CPU_PATTERN = r"^[0-9]+(\.[0-9]+)?m?$"


def memory_bytes(quantity: str) -> int:
    match = _MEMORY.match(quantity)
    if not match:
        raise ValueError(f"expected a memory quantity such as '256Mi' or '1Gi', got {quantity!r}")
    return int(float(match.group(1)) * _MEMORY_FACTOR[match.group(2)])


def cpu_millicores(quantity: str) -> int:
    match = _CPU.match(quantity)
    if not match:
        raise ValueError(f"expected a CPU quantity such as '500m' or '2', got {quantity!r}")
    number = float(match.group(1))
    return int(number if match.group(2) else number * 1000)


def _as_quantity_text(value: object) -> object:
    # YAML reads `cpu: 2` as an int; a quantity is text.
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _checked_memory(value: object) -> str:
    text = _as_quantity_text(value)
    if not isinstance(text, str):
        raise ValueError(f"expected a memory quantity such as '256Mi', got {value!r}")
    if memory_bytes(text) <= 0:
        raise ValueError("memory must be greater than zero")
    return text


def _checked_cpu(value: object) -> str:
    text = _as_quantity_text(value)
    if not isinstance(text, str):
        raise ValueError(f"expected a CPU quantity such as '500m', got {value!r}")
    if cpu_millicores(text) <= 0:
        raise ValueError("cpu must be greater than zero")
    return text


MemoryQuantity = Annotated[
    str,
    BeforeValidator(_checked_memory),
    WithJsonSchema({"type": "string", "pattern": MEMORY_PATTERN}),
]
CpuQuantity = Annotated[
    str,
    BeforeValidator(_checked_cpu),
    WithJsonSchema({"type": ["string", "number"], "pattern": CPU_PATTERN}),
]
