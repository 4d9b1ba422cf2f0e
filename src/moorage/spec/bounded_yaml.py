"""YAML text -> values that know their positions, refusing what no spec needs before it costs much.

A spec file is small. Hostile or broken YAML must not cost seconds or crash the reader: a file
over ``MAX_SPEC_BYTES``, nesting deeper than ``MAX_DEPTH`` (Python's recursion would give out) or
holding more than ``MAX_VALUES`` values, counted with its aliases expanded (a "billion laughs"
file), is refused at a line and column as soon as that is known, before its values are built.
Every problem is a ``YamlProblem``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer, ComposerError, MaxDepthExceededError
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scanner import RoundTripScanner

MAX_SPEC_BYTES = 64 * 1024  # the largest real spec is a few KiB
MAX_DEPTH = 32  # a spec nests 5 deep (spec.health.command[0]); recursion stays far from Python's limit
MAX_VALUES = 5000  # keys, values and list items, aliases expanded; a large real spec has a few hundred
_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"
_TOO_MANY = f"more than {MAX_VALUES} keys, values and list items (YAML aliases expanded); a spec holds far fewer"


class YamlProblem(Exception):
    """Why the text is no spec, and where (1-based)."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.line, self.column, self.message = line, column, message


@dataclass(frozen=True)
class Document:
    node: Node  # the composed tree: every key and value with its position, duplicates included
    data: Any  # ruamel's round-trip values: mappings and lists that know their positions (.lc)


def size_problem(size: int) -> YamlProblem | None:
    if size <= MAX_SPEC_BYTES:
        return None
    return YamlProblem(1, 1, f"larger than {MAX_SPEC_BYTES // 1024} KiB, the most a spec file may hold")


def parse(text: str) -> Document | None:
    """The single document in ``text`` (None when there is none)."""
    problem = size_problem(len(text.encode("utf-8", "surrogatepass")))
    if problem is not None:
        raise problem
    yaml = YAML(typ="rt")
    yaml.max_depth = MAX_DEPTH
    yaml.Scanner = _FlowDepthBoundScanner
    yaml.Composer = _CountingComposer
    yaml.Constructor = _LocatingConstructor
    # Duplicates are found (all of them, with their paths) on the composed tree; then the first value wins.
    yaml.allow_duplicate_keys = True
    try:
        node = yaml.compose(text)
        if node is None:
            return None
        _check_expanded_size(node)
        return Document(node, yaml.constructor.construct_document(node))
    except ReaderError as error:
        line, column = _line_column(text, error.position)
        raise YamlProblem(line, column, f"not valid YAML: {error.reason}") from None
    except MaxDepthExceededError as error:
        line, column = _mark_position(error)
        raise YamlProblem(line, column, _TOO_DEEP) from None
    except ComposerError as error:
        if error.context == "expected a single document in the stream":
            line, column = _mark_position(error)
            raise YamlProblem(line, column, "a second YAML document; a spec file holds exactly one") from None
        raise _yaml_problem(error) from None
    except MarkedYAMLError as error:
        raise _yaml_problem(error) from None
    except (YAMLError, ValueError, TypeError, OverflowError) as error:  # not raised at a node: no position known
        raise YamlProblem(1, 1, f"not valid YAML: {error}") from None


class _FlowDepthBoundScanner(RoundTripScanner):
    """Refuses a ``[`` or ``{`` nested deeper than MAX_DEPTH as it reads it.

    The composer refuses any deeper node (``YAML.max_depth``), but only once the scanner has handed
    it over; before that, ruamel's scanner looks ahead over every open flow collection, at a cost
    quadratic in their number (1000 ``[`` cost half a second).
    """

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: str) -> None:
        if len(self.flow_context) >= MAX_DEPTH:
            mark = self.reader.get_mark()
            raise YamlProblem(mark.line + 1, mark.column + 1, _TOO_DEEP)
        super().fetch_flow_collection_start(TokenClass, to_push)


class _CountingComposer(Composer):
    """Stops composing after MAX_VALUES nodes (an alias counts one here), before the rest is even read."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.nodes_composed = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.nodes_composed += 1
        if self.nodes_composed > MAX_VALUES:
            mark = self.parser.peek_event().start_mark
            raise YamlProblem(mark.line + 1, mark.column + 1, _TOO_MANY)
        return super().compose_node(parent, index)


class _LocatingConstructor(RoundTripConstructor):
    """Says which value could not be built (``!!int abc``, a number of 5000 digits), and where."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as error:
            mark = node.start_mark
            raise YamlProblem(mark.line + 1, mark.column + 1, _unreadable(node, error)) from None


def _unreadable(node: Node, error: Exception) -> str:
    tag = str(node.tag).rsplit(":", 1)[-1]
    written = repr(node.value) if isinstance(node, ScalarNode) else "this value"
    if len(written) > 40:
        written = f"{written[:30]}... ({len(node.value)} characters)"
    # Python refuses to turn more than 4300 digits into a number.
    why = " (too many digits)" if "Exceeds the limit" in str(error) else ""
    return f"cannot read {written} as !!{tag}{why}"


def _check_expanded_size(root: Node) -> None:
    """Refuse a tree whose aliases expand to more than MAX_VALUES values, at the innermost node
    that crosses the limit; counted on the composed tree, where an alias is the node it names."""
    sizes: dict[int, int] = {}
    entered: set[int] = set()  # the nodes on the current path (an alias may name an enclosing node)
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_counted = stack.pop()
        if children_counted:
            entered.discard(id(node))
            size = 1 + sum(sizes.get(id(child), 1) for child in _children(node))
            if size > MAX_VALUES:
                mark = node.start_mark
                raise YamlProblem(mark.line + 1, mark.column + 1, _TOO_MANY)
            sizes[id(node)] = size
        elif id(node) not in sizes and id(node) not in entered:
            entered.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value
    elif isinstance(node, SequenceNode):
        yield from node.value
    elif not isinstance(node, ScalarNode):  # pragma: no cover - ruamel composes only these three
        raise TypeError(f"unexpected YAML node {node!r}")


def _yaml_problem(error: MarkedYAMLError) -> YamlProblem:
    line, column = _mark_position(error)
    why = "; ".join(part for part in (error.context, error.problem) if part)
    return YamlProblem(line, column, f"not valid YAML: {why or error}")


def _mark_position(error: MarkedYAMLError) -> tuple[int, int]:
    mark = error.problem_mark or error.context_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _line_column(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, len(before.rsplit("\n", 1)[-1]) + 1
