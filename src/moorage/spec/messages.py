"""Pydantic's validation errors as messages a person can act on, with "did you mean" hints."""

from __future__ import annotations

import datetime
import difflib
import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from moorage.spec.model import (
    ABSOLUTE_PATH,
    DNS_LABEL,
    ENV_NAME,
    URL_PATH,
    Location,
    ServiceSpec,
)
from moorage.spec.shown import shown

# What each pattern of the model means, in words.
PATTERN_MEANINGS = {
    DNS_LABEL: "must be lowercase letters, digits and '-', starting and ending with a letter or digit",
    ENV_NAME: "must be a variable name: letters, digits and '_', not starting with a digit",
    ABSOLUTE_PATH: "must be an absolute path (starting with /)",
    URL_PATH: "must be a URL path starting with / and without spaces",
}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Explanation:
    path: Location  # the field the message is about
    point_at: Location  # the node to show: the field itself, or its enclosing mapping when it is missing
    at_key: bool  # point at the key rather than its value (unknown keys, bad map keys)
    message: str


def format_path(location: Location) -> str:
    """``("spec", "routes", 0, "host")`` -> ``spec.routes[0].host``."""
    text = ""
    for segment in location:
        if isinstance(segment, int):
            text += f"[{segment}]"
        elif _IDENTIFIER.match(segment):
            text += f".{segment}" if text else segment
        else:
            text += f"[{segment!r}]"
    return text


def explain(detail: ErrorDetails) -> Explanation:
    location: Location = tuple(detail["loc"])
    error_type = detail["type"]
    if location and location[-1] == "[key]":
        location = location[:-1]
        return Explanation(location, location, True, f"invalid key: {_describe_problem(detail, location, show_value=False)}")
    if error_type == "missing":
        return Explanation(location, location[:-1], False, "required field is missing")
    if error_type == "extra_forbidden":
        return Explanation(location, location, True, _unknown_field(location))
    return Explanation(location, location, False, _describe_problem(detail, location))


def _unknown_field(location: Location) -> str:
    key = str(location[-1])
    allowed = allowed_keys(location[:-1])
    message = f"unknown field {key!r}"
    suggestion = _closest(key, allowed)
    if suggestion:
        return f"{message} (did you mean '{suggestion}'?)"
    return f"{message} (allowed here: {', '.join(allowed)})" if allowed else message


def _describe_problem(detail: ErrorDetails, location: Location, *, show_value: bool = True) -> str:
    error_type = detail["type"]
    value = detail["input"]
    context = detail.get("ctx", {})
    got = f", got {shown(value)}" if show_value else ""
    if error_type == "string_type":
        hint = " (quote it to use it as text)" if isinstance(value, (bool, int, float, datetime.date)) else ""
        return f"expected a string{got}{hint}"
    if error_type in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number{got}"
    if error_type in ("bool_type", "bool_parsing"):
        return f"expected true or false{got}"
    if error_type == "list_type":
        return f"expected a list{got}"
    if error_type in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping{got}"
    if error_type == "literal_error":
        suggestion = _closest(str(value), [str(choice) for choice in _literal_choices(location)])
        hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
        return f"must be {context['expected']}{got}{hint}"
    if error_type == "string_pattern_mismatch" and context.get("pattern") in PATTERN_MEANINGS:
        return PATTERN_MEANINGS[context["pattern"]] + got
    if error_type in ("value_error", "assertion_error"):
        return str(context.get("error", detail["msg"]))
    if error_type == "recursion_loop":
        return "refers to itself (a YAML alias inside its own anchor)"
    return _reworded(detail["msg"]) + got


def _reworded(pydantic_message: str) -> str:
    """``Input should be greater than or equal to 1`` -> ``must be greater than or equal to 1``."""
    for subject in ("Input should", "String should", "List should", "Dictionary should", "Value should"):
        if pydantic_message.startswith(subject):
            pydantic_message = "must" + pydantic_message[len(subject) :]
    return pydantic_message.replace(" after validation", "")


def _closest(word: str, choices: list[str]) -> str | None:
    """The choice a misspelt ``word`` most likely meant (case does not matter: maxperhost -> maxPerHost)."""
    by_lower = {choice.lower(): choice for choice in choices}
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[matches[0]] if matches else None


def allowed_keys(location: Location) -> list[str]:
    """The YAML keys the model accepts in the mapping at ``location`` (empty if not a model)."""
    model = _unwrapped(_annotation_at(location))
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [field.alias or name for name, field in model.model_fields.items()]
    return []


def _literal_choices(location: Location) -> tuple[Any, ...]:
    annotation = _unwrapped(_annotation_at(location))
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def _annotation_at(location: Location) -> Any:
    """The type the model declares at ``location`` (None when the location is not in the model)."""
    annotation: Any = ServiceSpec
    for segment in location:
        annotation = _unwrapped(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = {field.alias or name: field for name, field in annotation.model_fields.items()}
            if segment not in fields:
                return None
            annotation = fields[segment].annotation
        elif get_origin(annotation) is list and isinstance(segment, int):
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            return None
    return annotation


def _unwrapped(annotation: Any) -> Any:
    """``Annotated[X, ...]`` -> X and ``X | None`` -> X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [member for member in get_args(annotation) if member is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation
