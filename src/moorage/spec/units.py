"""Durations (``2s``, ``1m30s``), resource quantities (``256Mi``, ``500m``) and counts, with their bounds.

Every bound a target sets on these values is here, next to the parsing, so a value the spec
accepts renders to something each target takes: Kubernetes (int32 counts and seconds, int64
quantities), Consul and Docker (Go durations, Docker's smallest limits) and systemd.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

from moorage.spec.shown import shown

# --- counts ---------------------------------------------------------------------------------------

# Kubernetes takes replicas, maxUnavailable, maxSurge and partition as int32.
MAX_COUNT = 2**31 - 1
MAX_PORT = 65535


def _whole_number(value: object) -> object:
    """A whole number as JSON Schema and Kubernetes read one: ``3`` and ``3.0`` are, ``3.5``,
    ``"3"`` and ``true`` are not (the models are strict, so those are refused after this)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# The bounds come before the validator so the JSON Schema shows them as minimum and maximum.
Count = Annotated[int, Field(ge=0, le=MAX_COUNT), BeforeValidator(_whole_number)]
PositiveCount = Annotated[int, Field(ge=1, le=MAX_COUNT), BeforeValidator(_whole_number)]
Port = Annotated[int, Field(ge=1, le=MAX_PORT), BeforeValidator(_whole_number)]

# --- durations ------------------------------------------------------------------------------------

# The same pattern checks the text here and in the JSON Schema (ASCII digits only: Python's \d
# would take any script's digits).
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
_DURATION = re.compile(DURATION_PATTERN)
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_MILLISECONDS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}

# Kubernetes takes probe periods and timeouts, minReadySeconds and progressDeadlineSeconds as int32
# seconds (2147483647 s, 24855.13 days), and progressDeadlineSeconds must exceed minReadySeconds:
# the largest whole number of days below that leaves the room. Go's durations (Consul's checks,
# Docker) end at 106751 days and systemd's later still, so this one bound serves every target.
MAX_DURATION = timedelta(days=24855)
# Durations are kept to the millisecond (what ``format_duration`` writes for Consul and Go).
SMALLEST_DURATION = timedelta(milliseconds=1)


def parse_duration(value: object, minimum: timedelta = timedelta(0)) -> timedelta:
    """``"2s"``, ``"1m30s"``, ``"500ms"`` -> a timedelta within ``[minimum, MAX_DURATION]``.

    Bare numbers, negative and sub-millisecond durations are refused with a ValueError.
    """
    if isinstance(value, timedelta):
        milliseconds = Decimal(value // timedelta(microseconds=1)) / 1000
    elif isinstance(value, str) and _DURATION.fullmatch(value):
        milliseconds = sum(
            (Decimal(number) * _UNIT_MILLISECONDS[unit] for number, unit in _DURATION_PART.findall(value)),
            Decimal(0),
        )
    else:
        raise ValueError(f"expected a duration such as '2s', '5m' or '1m30s', got {shown(value)}")
    if milliseconds > MAX_DURATION // SMALLEST_DURATION:
        raise ValueError(f"must be at most {MAX_DURATION.days}d (Kubernetes counts seconds in 32 bits), got {shown(value)}")
    if milliseconds != milliseconds.to_integral_value():
        raise ValueError(f"must be a whole number of milliseconds, got {shown(value)}")
    duration = timedelta(milliseconds=int(milliseconds))
    if duration < minimum:
        raise ValueError(f"must be at least {format_duration(minimum)}, got {shown(value)}")
    return duration


def _positive_duration(value: object) -> timedelta:
    return parse_duration(value, minimum=SMALLEST_DURATION)


def _grace_period(value: object) -> timedelta:
    # systemd reads TimeoutStopSec=0 as "wait for ever" and Docker's stop timeout is whole seconds.
    return parse_duration(value, minimum=timedelta(seconds=1))


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


_DURATION_AS_TEXT = PlainSerializer(format_duration, return_type=str)
_DURATION_SCHEMA = WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN})
Duration = Annotated[timedelta, BeforeValidator(parse_duration), _DURATION_AS_TEXT, _DURATION_SCHEMA]
PositiveDuration = Annotated[timedelta, BeforeValidator(_positive_duration), _DURATION_AS_TEXT, _DURATION_SCHEMA]
GracePeriod = Annotated[timedelta, BeforeValidator(_grace_period), _DURATION_AS_TEXT, _DURATION_SCHEMA]

# --- resource quantities --------------------------------------------------------------------------

MEMORY_PATTERN = r"^([0-9]+(\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$"
_MEMORY = re.compile(MEMORY_PATTERN)
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
# Docker refuses a smaller memory limit (6 MiB); Kubernetes quantities and Docker's limits are int64.
MIN_MEMORY_BYTES = 6 * 2**20
MAX_MEMORY_BYTES = 2**63 - 1

CPU_PATTERN = r"^([0-9]+(\.[0-9]+)?)(m)?$"
_CPU = re.compile(CPU_PATTERN)
# Docker's --cpus starts at 0.01. No host has 1000 cores (Docker refuses more than the host has),
# and below that systemd's CPUQuota= percentage is written exactly.
MIN_CPU_MILLICORES = 10
MAX_CPU_MILLICORES = 1000 * 1000


def memory_bytes(quantity: str) -> int:
    """``"256Mi"`` -> 268435456; a fraction of a byte is rounded up, as Kubernetes does."""
    return math.ceil(_memory_amount(quantity))


def cpu_millicores(quantity: str) -> int:
    """``"500m"`` -> 500, ``"2"`` -> 2000; a fraction of a millicore is rounded up, as Kubernetes does."""
    return math.ceil(_cpu_amount(quantity))


def _memory_amount(quantity: str) -> Decimal:
    """Bytes, exactly (bounds are checked on this, before a huge number becomes an int)."""
    match = _MEMORY.fullmatch(quantity)
    if not match:
        raise ValueError(f"expected a memory quantity such as '256Mi' or '1Gi', got {shown(quantity)}")
    return Decimal(match.group(1)) * _MEMORY_FACTOR[match.group(3)]


def _cpu_amount(quantity: str) -> Decimal:
    """Millicores, exactly."""
    match = _CPU.fullmatch(quantity)
    if not match:
        raise ValueError(f"expected a CPU quantity such as '500m' or '2', got {shown(quantity)}")
    number = Decimal(match.group(1))
    return number if match.group(3) else number * 1000


def _as_quantity_text(value: object) -> object:
    """YAML reads ``cpu: 2`` or ``memory: 1.5e9`` as a number; a quantity is text, written without an exponent."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f") if math.isfinite(value) else value
    return str(value)


def _checked_memory(value: object) -> str:
    text = _as_quantity_text(value)
    if not isinstance(text, str):
        raise ValueError(f"expected a memory quantity such as '256Mi' or '1Gi', got {shown(value)}")
    size = _memory_amount(text)
    if size < MIN_MEMORY_BYTES:
        raise ValueError(f"must be at least 6Mi (Docker's smallest memory limit), got {shown(value)}")
    if size > MAX_MEMORY_BYTES:
        raise ValueError(f"must be at most {MAX_MEMORY_BYTES} bytes (Kubernetes and Docker count in 64 bits), got {shown(value)}")
    return text


def _checked_cpu(value: object) -> str:
    text = _as_quantity_text(value)
    if not isinstance(text, str):
        raise ValueError(f"expected a CPU quantity such as '500m' or '2', got {shown(value)}")
    millicores = _cpu_amount(text)
    if millicores < MIN_CPU_MILLICORES:
        raise ValueError(f"must be at least 10m (Docker's smallest CPU limit, 0.01 cores), got {shown(value)}")
    if millicores > MAX_CPU_MILLICORES:
        raise ValueError(f"must be at most {MAX_CPU_MILLICORES // 1000} (cores), got {shown(value)}")
    return text


# A number is a quantity too (Kubernetes takes `cpu: 2`); the schema bounds numbers, the loader also text.
MemoryQuantity = Annotated[
    str,
    BeforeValidator(_checked_memory),
    WithJsonSchema({"type": ["string", "number"], "pattern": MEMORY_PATTERN, "minimum": MIN_MEMORY_BYTES, "maximum": MAX_MEMORY_BYTES}),
]
CpuQuantity = Annotated[
    str,
    BeforeValidator(_checked_cpu),
    WithJsonSchema(
        {"type": ["string", "number"], "pattern": CPU_PATTERN, "minimum": MIN_CPU_MILLICORES / 1000, "maximum": MAX_CPU_MILLICORES / 1000}
    ),
]
