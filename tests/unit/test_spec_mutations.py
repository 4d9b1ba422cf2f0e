"""Property: any mutation of a valid spec either still validates or gives located one-line errors.

Never a traceback, never another exception, never pydantic's raw wording.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from spec_samples import VALID_SPEC

from moorage.spec.loader import SpecInvalid, load_spec
from moorage.spec.model import ServiceSpec

DIAGNOSTIC_LINE = re.compile(r"^moorage\.yml:(\d+):(\d+): error: \S[^\n]*$")
# Values a spec field might plausibly (or implausibly) hold.
TELLING_TEXT = st.sampled_from(
    [
        "",
        "2s",
        "0s",
        "5m",
        "256Mi",
        "500m",
        "${PORT}",
        "${NOPE}",
        "/",
        "/x y",
        "systemd",
        "docker",
        "SIGTERM",
        "yes",
        "null",
        "~",
        "-1",
        "hello.example.test",
        "Hello",
        "a" * 70,
        "[",
        "{",
        ":",
        "- x",
        "&a",
        "*a",
        "!!int",
        "a\x00b",
        "../" * 2000,
    ]
)
SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12) | TELLING_TEXT
YAML_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8) | TELLING_TEXT, inner, max_size=3),
    max_leaves=6,
)


def parsed_valid_spec() -> Any:
    return YAML(typ="rt").load(VALID_SPEC)


def slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) in the tree, the places a mutation can hit."""
    found: list[tuple[Any, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((node, key))
            found.extend(slots(value))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.append((node, index))
            found.extend(slots(value))
    return found


def misspelt(key: str, draw: Any) -> str:
    how = draw(st.sampled_from(["lower", "drop", "double", "random"]))
    if not key:
        return "k"
    if how == "lower":
        return key.lower() + ("" if key.lower() != key else "x")
    position = draw(st.integers(0, max(0, len(key) - 1)))
    if how == "drop":
        return key[:position] + key[position + 1 :] or "k"
    if how == "double":
        return key[:position] + key[position] * 2 + key[position + 1 :]
    return draw(st.text(min_size=1, max_size=10))


@st.composite
def mutated_trees(draw: Any) -> str:
    document = parsed_valid_spec()
    for _ in range(draw(st.integers(1, 3))):
        places = slots(document)
        container, key = draw(st.sampled_from(places))
        if key not in (container if isinstance(container, dict) else range(len(container))):
            continue  # an earlier mutation removed it
        action = draw(st.sampled_from(["delete", "rename", "replace", "add"]))
        if action == "delete":
            del container[key]
        elif action == "replace":
            container[key] = draw(YAML_VALUES)
        elif action == "add" and isinstance(container, dict):
            container[draw(st.text(max_size=10) | TELLING_TEXT)] = draw(YAML_VALUES)
        elif action == "add":
            container.append(draw(YAML_VALUES))
        elif isinstance(container, dict) and isinstance(key, str):
            new_key = misspelt(key, draw)
            if new_key in container:
                continue
            if isinstance(container, CommentedMap):  # keep the key where it was in the file
                container.insert(list(container).index(key), new_key, container.pop(key))
            else:
                container[new_key] = container.pop(key)
    stream = io.StringIO()
    YAML(typ="rt").dump(document, stream)
    return stream.getvalue()


@st.composite
def mutated_files(draw: Any) -> bytes:
    """A tree mutation, sometimes followed by a mutation of the text's lines (duplicates, junk, bytes)."""
    lines = draw(mutated_trees()).encode("utf-8").splitlines(keepends=True)
    action = draw(st.sampled_from(["none", "none", "duplicate", "delete", "insert", "bytes", "document"]))
    position = draw(st.integers(0, len(lines)))
    if action == "duplicate" and lines:
        line = lines[min(position, len(lines) - 1)]
        lines.insert(position, line)
    elif action == "delete" and lines:
        del lines[min(position, len(lines) - 1)]
    elif action == "insert":
        lines.insert(position, draw(st.text(max_size=20)).encode("utf-8") + b"\n")
    elif action == "bytes":
        lines.insert(position, draw(st.binary(max_size=6)))
    elif action == "document":
        lines.insert(position, b"---\n")
    return b"".join(lines)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("mutations")
    (directory / "app").mkdir()
    return directory / "moorage.yml"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=mutated_files())
def test_a_mutated_spec_validates_or_fails_with_located_lines(spec_file: Path, content: bytes) -> None:
    spec_file.write_bytes(content)
    line_count = content.count(b"\n") + 1
    try:
        service = load_spec(spec_file).model
    except SpecInvalid as invalid:
        lines = str(invalid).splitlines()
        assert lines and len(lines) == len(invalid.diagnostics)
        for line in lines:
            match = DIAGNOSTIC_LINE.match(line.removeprefix(f"{spec_file.parent}/"))
            assert match, line
            assert 1 <= int(match.group(1)) <= line_count and int(match.group(2)) >= 1, line
            assert "Extra inputs" not in line and "Value error," not in line, line
    else:
        assert isinstance(service, ServiceSpec)


def test_the_unmutated_spec_is_valid(spec_file: Path) -> None:
    spec_file.write_text(VALID_SPEC)

    assert load_spec(spec_file).name == "hello"
