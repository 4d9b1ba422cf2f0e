"""Read a spec file into a ``ServiceSpec``, or fail with every problem located in the file.

Each problem is one line, ``FILE:LINE:COL: error: PATH: WHY`` (1-based, pointing at the
offending value, at the key for an unknown key, and at the enclosing mapping for a missing
field), so editors and CI logs can jump to it. Relative paths in the spec (``artifact``,
``imageArchive``) are relative to the spec file: use ``artifact_path`` / ``image_archive_path``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarbool import ScalarBoolean

from moorage.errors import BadInput
from moorage.spec import bounded_yaml
from moorage.spec.messages import explain, format_path
from moorage.spec.model import Location, ServiceSpec, semantic_errors

SPEC_KEYS = "apiVersion, kind, metadata and spec"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in a spec file; sorts by position."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return _one_line(f"{self.file}:{self.line}:{self.column}: error: {where}{self.message}")

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "path": self.path, "message": self.message}


# Control characters and line separators quoted from the file, each shown as its escape (\n, \x1b, \u2028).
_ESCAPED_CONTROLS = {code: chr(code).encode("unicode_escape").decode() for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}


def _one_line(text: str) -> str:
    """One problem, one line, and nothing from the file that a terminal would act on."""
    return text.translate(_ESCAPED_CONTROLS)


class SpecInvalid(BadInput):
    """The spec file has problems; ``str()`` is one line per problem, in file order."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(set(diagnostics))
        super().__init__("\n".join(str(diagnostic) for diagnostic in self.diagnostics))

    def report_lines(self) -> list[str]:
        return [str(diagnostic) for diagnostic in self.diagnostics]

    def as_json(self) -> dict[str, object]:
        return {**super().as_json(), "errors": [diagnostic.as_json() for diagnostic in self.diagnostics]}


@dataclass(frozen=True)
class SpecFile:
    """A spec as read from its file, once: the validated model, the file, its text, and the files
    it names resolved next to it (absolute paths on this machine)."""

    model: ServiceSpec
    file: Path
    text: str
    artifact: Path | None  # spec.artifact (runtime systemd)
    image_archive: Path | None  # spec.imageArchive (runtime docker)

    @property
    def name(self) -> str:
        return self.model.name


def load_spec(path: Path) -> SpecFile:
    """Read and validate the spec at ``path``; raise ``SpecInvalid`` listing every problem."""
    file = str(path)
    if path.is_dir():
        raise SpecInvalid([Diagnostic(file, 1, 1, "", "is a directory, expected a spec file")])
    try:
        with path.open("rb") as stream:  # no more than a spec may hold (a path may be /dev/zero)
            content = stream.read(bounded_yaml.MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecInvalid([Diagnostic(file, 1, 1, "", "no such file")]) from None
    except OSError as error:
        raise SpecInvalid([Diagnostic(file, 1, 1, "", f"cannot read: {error.strerror or error}")]) from None
    too_large = bounded_yaml.size_problem(len(content))
    if too_large is not None:
        raise SpecInvalid([Diagnostic(file, too_large.line, too_large.column, "", too_large.message)])
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        before = content[: error.start]
        line = before.count(b"\n") + 1
        column = len(before.rsplit(b"\n", 1)[-1].decode("utf-8")) + 1
        byte = content[error.start]
        raise SpecInvalid([Diagnostic(file, line, column, "", f"not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8")]) from None
    return load_spec_text(text, path)


def load_spec_text(text: str, path: Path) -> SpecFile:
    """Validate spec ``text`` as if read from ``path`` (relative paths in it resolve next to ``path``)."""
    file = str(path)
    try:
        document = bounded_yaml.parse(text)
    except bounded_yaml.YamlProblem as problem:
        raise SpecInvalid([Diagnostic(file, problem.line, problem.column, "", problem.message)]) from None
    if document is None or document.data is None:
        raise SpecInvalid([Diagnostic(file, 1, 1, "", f"empty file, expected a mapping with {SPEC_KEYS}")])
    duplicates = list(_duplicate_keys(document.node, file))
    data = document.data
    if not isinstance(data, CommentedMap):
        line, column = document.node.start_mark.line + 1, document.node.start_mark.column + 1
        raise SpecInvalid([Diagnostic(file, line, column, "", f"expected a mapping with {SPEC_KEYS}, got {_kind_of(data)}")])
    try:
        service = ServiceSpec.model_validate(_plain(data))
    except ValidationError as error:
        raise SpecInvalid(duplicates + [_from_pydantic(detail, data, file) for detail in error.errors()]) from None
    problems = semantic_errors(service) + _missing_files(service, path)
    diagnostics = duplicates + [
        Diagnostic(file, *_position(data, location), format_path(location), message) for location, message in problems
    ]
    if diagnostics:
        raise SpecInvalid(diagnostics)
    return SpecFile(service, path, text, artifact_path(service, path), image_archive_path(service, path))


def artifact_path(service: ServiceSpec, spec_file: Path) -> Path | None:
    """The absolute path of ``spec.artifact`` (relative to the spec file), or None."""
    return _beside(spec_file, service.spec.artifact)


def image_archive_path(service: ServiceSpec, spec_file: Path) -> Path | None:
    """The absolute path of ``spec.imageArchive`` (relative to the spec file), or None."""
    return _beside(spec_file, service.spec.image_archive)


def _beside(spec_file: Path, relative: str | None) -> Path | None:
    if relative is None:
        return None
    return Path(os.path.abspath(spec_file.parent / relative))


def _missing_files(service: ServiceSpec, spec_file: Path) -> list[tuple[Location, str]]:
    body = service.spec
    checks = [
        (("spec", "artifact"), body.artifact, artifact_path(service, spec_file), "systemd"),
        (("spec", "imageArchive"), body.image_archive, image_archive_path(service, spec_file), "docker"),
    ]
    problems: list[tuple[Location, str]] = []
    for location, written, resolved, runtime in checks:
        if resolved is None or body.runtime != runtime:
            continue
        try:
            found = resolved.exists()
        except (OSError, ValueError) as error:  # a name too long, a NUL byte
            problems.append((location, f"{written!r} is no usable path: {error}"))
            continue
        if not found:
            problems.append((location, f"{written} not found (looked for {resolved})"))
    return problems


def _duplicate_keys(root: Node, file: str) -> Iterator[Diagnostic]:
    """Every key defined twice in one mapping, at the second definition."""
    seen_nodes: set[int] = set()  # aliases may repeat (or contain) a node: visit each once

    def walk(node: Node, location: Location) -> Iterator[Diagnostic]:
        if id(node) in seen_nodes:
            return
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            first_lines: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    continue
                identity = (str(key_node.tag), key_node.value)
                key_location = (*location, key_node.value)
                if identity in first_lines:
                    mark = key_node.start_mark
                    message = f"duplicate key {key_node.value!r} (first defined on line {first_lines[identity]})"
                    yield Diagnostic(file, mark.line + 1, mark.column + 1, format_path(key_location), message)
                else:
                    first_lines[identity] = key_node.start_mark.line + 1
                yield from walk(value_node, key_location)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                yield from walk(item, (*location, index))

    yield from walk(root, ())


def _plain(value: Any) -> Any:
    """ruamel's values as plain Python (str, int, float, bool, None, dict, list) for the model."""
    if isinstance(value, dict):
        return {_plain_key(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, (bool, ScalarBoolean)):  # ruamel reads an anchored `true` as a ScalarBoolean (an int)
        return bool(value)
    for plain_type in (str, int, float):
        if isinstance(value, plain_type):
            return plain_type(value)
    return value


def _plain_key(key: Any) -> str | int:
    if isinstance(key, (bool, ScalarBoolean)):
        return str(bool(key))
    if not isinstance(key, (str, int)):
        return str(key)
    return str(key) if isinstance(key, str) else int(key)


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _position(document: CommentedMap, location: Location, *, at_key: bool = False) -> tuple[int, int]:
    """1-based line and column of the node at ``location``: its value, or its key with ``at_key``.

    Where the location leaves the file (a missing field, a key only merged in), the deepest
    enclosing node that exists is used.
    """
    node: Any = document
    line, column = document.lc.line, document.lc.col
    for depth, segment in enumerate(location):
        last = depth == len(location) - 1
        try:
            if isinstance(node, CommentedMap) and segment in node:
                # An empty value (`metadata:`) has no node of its own: its key stands for it.
                use_key = (last and at_key) or node[segment] is None
                line, column = node.lc.key(segment) if use_key else node.lc.value(segment)
            elif isinstance(node, CommentedSeq) and isinstance(segment, int) and 0 <= segment < len(node):
                line, column = node.lc.item(segment)
            else:
                break
        except KeyError:  # a key merged in with `<<` has no position of its own
            break
        node = node[segment]
    return line + 1, column + 1


def _from_pydantic(detail: ErrorDetails, document: CommentedMap, file: str) -> Diagnostic:
    explanation = explain(detail)
    line, column = _position(document, explanation.point_at, at_key=explanation.at_key)
    return Diagnostic(file, line, column, format_path(explanation.path), explanation.message)
