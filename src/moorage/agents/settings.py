"""An agent's settings: a JSON file read into a frozen dataclass, strictly.

Every field of the dataclass has a default, and the default's type is the type the file must
give: a tuple field takes a list of strings, a float field takes an int too. Unknown keys and
wrong types are one-line errors (the agent exits 2).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    SettingsT = TypeVar("SettingsT", bound=DataclassInstance)
else:
    SettingsT = TypeVar("SettingsT")


class SettingsError(Exception):
    """The agent's own settings are unusable (exit status 2)."""


def load_settings(kind: type[SettingsT], path: Path | None) -> SettingsT:
    """``kind`` from the JSON object in ``path`` (None: the defaults)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise SettingsError(f"{path}: {err}") from err
        if not isinstance(values, dict):
            raise SettingsError(f"{path}: expected a JSON object")
    defaults = kind()
    known = {field.name for field in dataclasses.fields(defaults)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    for name, value in values.items():
        values[name] = _checked(path, name, value, type(getattr(defaults, name)))
    return dataclasses.replace(defaults, **values)


def _checked(path: Path | None, name: str, value: object, expected: type) -> object:
    if expected is tuple:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise SettingsError(f"{path}: {name}: expected a list of strings")
        return tuple(value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
        raise SettingsError(f"{path}: {name}: expected {expected.__name__}")
    return value
