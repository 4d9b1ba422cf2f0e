"""Property: whatever spec file it is given, `moorage validate` exits 0, or 2 with located one-line
errors — never a traceback — and spends little CPU on it.

The files are generated: valid specs with every field of the model drawn from its valid range,
then made hostile — a field (any field of the spec) given a wrong type, a huge or tiny number,
odd unicode, a long text, a deep nesting, a large list or an alias bomb; keys removed, misspelt or
added; the text cut, padded past the size limit or spiked with stray bytes. Most examples run the
CLI in-process through click's runner; a few run the installed command as a real process.

Speed is CPU time, not wall-clock time (this 2-core machine is shared and noisy): in-process, the
CPU the validation took; for a process, its CPU beyond what validating a small valid spec costs
(mostly importing moorage). The budget, 1 s, is generous: the worst cases measured take 0.2-0.4 s.

A spec the loader accepts is also valid against the JSON Schema (`moorage schema`): the schema never
refuses what the loader takes (the loader may refuse more: bounds inside a text, rules across fields).
"""

from __future__ import annotations

import io
import json
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from ruamel.yaml import YAML
from spec_samples import VALID_SPEC

from moorage.cli import cli
from moorage.spec.model import SIGNALS, ServiceSpec
from moorage.spec.schema import spec_json_schema

CPU_BUDGET = 1.0
DIAGNOSTIC = re.compile(r"^(?P<file>[^\n]*):(?P<line>\d+):(?P<column>\d+): error: \S[^\n]*$")
RAW_PYDANTIC_WORDING = ("Input should", "Value error,", "Extra inputs", "validation error", "Traceback")


def yaml_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path of the spec (``("spec", "health", "interval")``), read from the model."""
    for name, field in model.model_fields.items():
        path = (*prefix, field.alias or name)
        yield path
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                yield from yaml_paths(candidate, path)


FIELD_PATHS = list(yaml_paths(ServiceSpec))

# --- valid specs ----------------------------------------------------------------------------------

ENV_NAMES = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,12}\Z")
DNS_LABELS = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
HOSTS = st.lists(DNS_LABELS, min_size=1, max_size=4).map(".".join)
PLAIN_TEXT = st.text(max_size=20).filter(lambda text: "${" not in text)
MAX_MILLISECONDS = 24855 * 86_400_000


@st.composite
def durations(draw: Any, least: int = 0, most: int = MAX_MILLISECONDS) -> tuple[int, str]:
    """A duration in milliseconds, and one of the ways to write it (500ms, 1.5s, 2m, 1m30s, 3h, 1d)."""
    millis = draw(st.integers(least, most))
    forms = [f"{millis}ms", f"{Decimal(millis) / 1000}s"]
    forms += [f"{millis // size}{unit}" for unit, size in (("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)) if millis % size == 0]
    if millis >= 60_000 and millis % 1000 == 0:
        forms.append(f"{millis // 60_000}m{millis // 1000 % 60}s")
    return millis, draw(st.sampled_from(forms))


@st.composite
def health_checks(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["http", "tcp", "command"]))
    check: dict[str, Any] = {"http": "/" + draw(st.from_regex(r"\A[a-z/]{0,10}\Z")), "tcp": True, "command": [draw(PLAIN_TEXT)]}
    interval_ms, interval = draw(durations(least=1))
    _, timeout = draw(durations(least=1, most=interval_ms))
    _, deregister = draw(durations(least=1))
    return {kind: check[kind], "interval": interval, "timeout": timeout, "deregisterAfter": deregister}


@st.composite
def valid_specs(draw: Any) -> dict[str, Any]:
    runtime = draw(st.sampled_from(["systemd", "docker"]))
    replicas = draw(st.integers(0, 5))
    env = draw(st.dictionaries(ENV_NAMES, PLAIN_TEXT | st.integers() | st.booleans(), max_size=3))
    secrets = draw(st.lists(ENV_NAMES.filter(lambda name: name not in env), max_size=2, unique=True))
    volumes = draw(st.lists(DNS_LABELS, max_size=2, unique=True))
    min_healthy_ms, min_healthy = draw(durations(most=MAX_MILLISECONDS - 1))
    _, healthy_deadline = draw(durations(least=min_healthy_ms + 1))
    body: dict[str, Any] = {
        "runtime": runtime,
        "command": draw(st.lists(PLAIN_TEXT, min_size=1, max_size=3)),
        "replicas": replicas,
        "placement": {"group": draw(st.text(min_size=1, max_size=10)), "maxPerHost": 1 if volumes else draw(st.integers(1, 2**31 - 1))},
        "port": draw(st.integers(1, 65535)),
        "env": env,
        "secrets": secrets,
        "health": draw(health_checks()),
        "routes": [{"host": host, "path": "/"} for host in draw(st.lists(HOSTS, max_size=2, unique=True))],
        "metrics": {"path": "/metrics"},
        "resources": {
            "memory": draw(st.sampled_from(["6Mi", "256Mi", "1.5Gi", 6291456, 2**63 - 1, 1.5e9])),
            "cpu": draw(st.sampled_from(["10m", "500m", "2", 2, 0.25, 1000, "999.999"])),
        },
        "volumes": [{"name": name, "path": f"/var/lib/{name}"} for name in volumes],
        "update": {
            "maxParallel": draw(st.integers(1, 2**31 - 1)),
            "minHealthy": min_healthy,
            "healthyDeadline": healthy_deadline,
            "autoRevert": draw(st.booleans()),
            "canary": draw(st.integers(0, replicas)),
        },
        "stop": {"signal": draw(st.sampled_from(SIGNALS)), "gracePeriod": draw(durations(least=1000))[1]},
    }
    if runtime == "systemd":
        body["artifact"] = "./app"
    else:
        body |= {"image": "hello:1.0", "imageArchive": "./image.tar"}
    metadata = {
        "name": draw(DNS_LABELS.filter(lambda name: len(name) >= 2)),
        "labels": draw(st.dictionaries(PLAIN_TEXT, PLAIN_TEXT, max_size=2)),
    }
    return {"apiVersion": "moorage/v1", "kind": "Service", "metadata": metadata, "spec": body}


# --- hostile values -------------------------------------------------------------------------------

HUGE_NUMBERS = st.sampled_from([2**31, 2**63, 10**30, -(10**30), -1, 0, 1e308, -1e-308, float("inf"), float("nan"), 3.5, 1e3])
ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "0s",
        "24855d",
        "24856d",
        "9" * 60 + "h",
        "0.5ms",
        "1e3",
        "٣s",
        "256Mi ",
        "0x10",
        "yes",
        "~",
        "null",
        "${NOPE}",
        "\u2028",
        "a\x00b",
    ]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) | HUGE_NUMBERS | ODD_TEXT


def nested(depth: int, leaf: Any) -> Any:
    for level in range(depth):
        leaf = [leaf] if level % 2 else {"k": leaf}
    return leaf


def alias_bomb(fan_out: int, levels: int) -> Any:
    """Shared lists: dumped as anchors and aliases, fan_out**levels values once expanded."""
    value: Any = "lol"
    for _ in range(levels):
        value = [value] * fan_out
    return value


# The shapes that cost: depth around the limit, alias bombs, lists around the value limit, long text.
HEAVY_VALUES = st.one_of(
    st.builds(nested, st.sampled_from([5, 30, 31, 32, 33, 60]), SCALARS),
    st.builds(alias_bomb, st.sampled_from([3, 10]), st.sampled_from([3, 5, 9])),  # 27 ... 10**9 values
    st.builds(lambda size, item: [item] * size, st.sampled_from([1000, 4990, 5001, 8000]), SCALARS),
    st.builds(lambda size, letter: letter * size, st.sampled_from([10_000, 30_000, 70_000]), st.sampled_from(["a", "é", "\u2028", "✓"])),
)
HOSTILE_VALUES = st.one_of(
    SCALARS,
    st.recursive(
        SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12
    ),
    HEAVY_VALUES,
    st.binary(max_size=20),
)


def place(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set ``path`` in the document, creating mappings on the way (a scalar on the way is replaced)."""
    container = document
    for key in path[:-1]:
        if not isinstance(container.get(key), dict):
            container[key] = {}
        container = container[key]
    container[path[-1]] = value


def remove(document: dict[str, Any], path: tuple[str, ...]) -> None:
    container: Any = document
    for key in path[:-1]:
        container = container.get(key) if isinstance(container, dict) else None
    if isinstance(container, dict):
        container.pop(path[-1], None)


@st.composite
def hostile_documents(draw: Any) -> dict[str, Any]:
    document = draw(valid_specs())
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(FIELD_PATHS))
        action = draw(st.sampled_from(["replace", "replace", "remove", "misspell", "add"]))
        if action == "replace":
            place(document, path, draw(HOSTILE_VALUES))
        elif action == "remove":
            remove(document, path)
        elif action == "misspell":
            remove(document, path)
            place(document, (*path[:-1], draw(st.sampled_from([path[-1].lower() + "s", path[-1][:-1], path[-1].upper()]))), 1)
        else:
            place(document, (*path[:-1], draw(st.text(min_size=1, max_size=12))), draw(HOSTILE_VALUES))
    return document


@st.composite
def heavy_documents(draw: Any) -> dict[str, Any]:
    """A valid spec with one field (or a new key) holding one of the shapes that cost."""
    document = draw(valid_specs())
    path = draw(st.sampled_from(FIELD_PATHS))
    if draw(st.booleans()):
        path = (*path[:-1], "extra")
    place(document, path, draw(HEAVY_VALUES))
    return document


def yaml_text(document: Any, flow: bool) -> str:
    yaml = YAML(typ="rt")
    yaml.default_flow_style = flow
    yaml.width = 4096
    stream = io.StringIO()
    yaml.dump(document, stream)
    return stream.getvalue()


@st.composite
def hostile_files(draw: Any) -> bytes:
    document = draw(st.one_of(valid_specs(), hostile_documents(), heavy_documents()))
    content = yaml_text(document, flow=draw(st.booleans())).encode("utf-8")
    lines = content.splitlines(keepends=True)
    where = draw(st.integers(0, len(lines)))
    damage = draw(st.sampled_from(["none", "none", "none", "cut", "bytes", "document", "tab", "pad", "merge", "deep"]))
    if damage == "cut":
        content = content[: draw(st.integers(0, len(content)))]
    elif damage == "bytes":
        content = b"".join([*lines[:where], draw(st.binary(min_size=1, max_size=8)), *lines[where:]])
    elif damage == "document":
        content = b"".join([*lines[:where], b"---\n", *lines[where:]])
    elif damage == "tab":
        content = content.replace(b"  ", b"\t", 1)
    elif damage == "pad":
        content += b"#" * draw(st.integers(30_000, 70_000)) + b"\n"
    elif damage == "deep":  # deeper than the YAML dumper would go, in flow or block style
        depth = draw(st.sampled_from([300, 3000]))
        block = b"".join(b" " * level + b"-\n" for level in range(1, 300))
        content += b"deep: " + (b"[" * depth + b"]" * depth + b"\n" if draw(st.booleans()) else b"\n" + block)
    elif damage == "merge":
        content = b"x-defaults: &defaults {maxParallel: 2, canary: 0}\n" + content.replace(b"update:", b"update:\n    <<: *defaults", 1)
    return content


# --- the checks -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hostile")
    (directory / "app").mkdir()
    (directory / "image.tar").write_bytes(b"")
    return directory


@pytest.fixture(scope="module")
def schema() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(spec_json_schema())


class CpuRunaway(Exception):
    """Validation ran far past its CPU budget and was stopped (an unbounded input would never end)."""


@contextmanager
def stopped_after_cpu(seconds: float) -> Iterator[None]:
    """Interrupt the code inside once the process has spent ``seconds`` of CPU in it (SIGPROF)."""

    def runaway(signal_number: int, frame: object) -> None:
        raise CpuRunaway(f"stopped after {seconds:g}s of CPU")

    previous = signal.signal(signal.SIGPROF, runaway)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def check_outcome(file: str, content: bytes, exit_code: int, stdout: str, stderr: str, schema: jsonschema.Draft202012Validator) -> None:
    assert exit_code in (0, 2), (exit_code, stderr[-2000:])
    assert "Traceback" not in stdout + stderr
    if exit_code == 0:
        assert (stdout, stderr) == (f"{file}: ok\n", "")
        data = YAML(typ="safe").load(content.decode("utf-8"))  # the values an editor would check
        assert schema.is_valid(json.loads(json.dumps(data))), "the loader accepted what the schema refuses"
        return
    lines = stderr.splitlines()
    assert stdout == "" and lines
    line_count = content.count(b"\n") + 1
    for line in lines:
        match = DIAGNOSTIC.match(line)
        assert match and match["file"] == file, line
        assert 1 <= int(match["line"]) <= line_count and int(match["column"]) >= 1, line
        assert not any(words in line for words in RAW_PYDANTIC_WORDING), line


# The two the review found, whatever else is drawn: 3000 nested lists, and nine levels of ten aliases.
DEEP_FILE = (VALID_SPEC + "deep: " + "[" * 3000 + "]" * 3000 + "\n").encode()
BILLION_LAUGHS_FILE = (yaml_text({"lol": alias_bomb(10, 9)}, flow=False) + VALID_SPEC).encode()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(content=hostile_files())
@example(content=DEEP_FILE)
@example(content=BILLION_LAUGHS_FILE)
def test_validate_in_process_exits_0_or_2_with_located_lines_within_the_cpu_budget(
    work_dir: Path, schema: jsonschema.Draft202012Validator, content: bytes
) -> None:
    spec = work_dir / "moorage.yml"
    spec.write_bytes(content)

    started = time.process_time()
    with stopped_after_cpu(5 * CPU_BUDGET):  # a runaway fails the test instead of hanging it
        result = CliRunner().invoke(cli, ["validate", str(spec)])
    used = time.process_time() - started

    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    check_outcome(str(spec), content, result.exit_code, result.stdout, result.stderr, schema)
    assert used < CPU_BUDGET, f"{used:.2f}s of CPU"


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def validate_process(directory: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    before = child_cpu()
    result = subprocess.run(
        [sys.executable, "-m", "moorage", "validate", "moorage.yml"], cwd=directory, capture_output=True, text=True, timeout=300
    )
    return result, child_cpu() - before


@pytest.fixture(scope="module")
def startup_cpu(work_dir: Path) -> float:
    """What a process spends validating a small valid spec: the baseline the budget comes on top of."""
    directory = work_dir / "baseline"
    (directory / "app").mkdir(parents=True)
    (directory / "moorage.yml").write_text(
        "apiVersion: moorage/v1\nkind: Service\nmetadata: {name: base}\nspec: {artifact: ./app, command: [run]}\n"
    )
    result, used = validate_process(directory)
    assert result.returncode == 0, result.stderr
    return used


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(content=hostile_files())
def test_the_installed_command_exits_0_or_2_with_located_lines_within_the_cpu_budget(
    work_dir: Path, schema: jsonschema.Draft202012Validator, startup_cpu: float, content: bytes
) -> None:
    (work_dir / "moorage.yml").write_bytes(content)

    result, used = validate_process(work_dir)

    check_outcome("moorage.yml", content, result.returncode, result.stdout, result.stderr, schema)
    assert used < startup_cpu + CPU_BUDGET, f"{used:.2f}s of CPU, {startup_cpu:.2f}s for a small valid spec"
