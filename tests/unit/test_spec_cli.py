"""`moorage validate` and `moorage schema` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from moorage.cli import cli

WriteSpec = Callable[..., Path]


def run(*arguments: str) -> Any:
    return CliRunner().invoke(cli, list(arguments))


def test_validate_prints_ok_per_valid_file_and_exits_0(write_spec: WriteSpec, valid_spec_text: str) -> None:
    write_spec(valid_spec_text, "a.yml")
    write_spec(valid_spec_text.replace("name: hello", "name: other"), "b.yml")

    result = run("validate", "a.yml", "b.yml")

    assert result.exit_code == 0
    assert result.stdout == "a.yml: ok\nb.yml: ok\n"
    assert result.stderr == ""


def test_validate_prints_every_problem_on_stderr_and_exits_2(write_spec: WriteSpec, valid_spec_text: str) -> None:
    write_spec(valid_spec_text, "good.yml")
    write_spec(valid_spec_text.replace("replicas: 3", "replica: 3").replace("port: 8080", "port: 0"), "bad.yml")

    result = run("validate", "good.yml", "bad.yml", "missing.yml")

    assert result.exit_code == 2
    assert result.stdout == "good.yml: ok\n"
    assert result.stderr.splitlines() == [
        "bad.yml:9:3: error: spec.replica: unknown field 'replica' (did you mean 'replicas'?)",
        "bad.yml:11:9: error: spec.port: must be greater than or equal to 1, got 0",
        "missing.yml:1:1: error: no such file",
    ]


def test_validate_json_reports_each_file_with_located_errors(write_spec: WriteSpec, valid_spec_text: str) -> None:
    write_spec(valid_spec_text, "good.yml")
    write_spec(valid_spec_text.replace("interval: 2s", "interval: 2"), "bad.yml")

    result = run("validate", "--output", "json", "good.yml", "bad.yml")

    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "ok": False,
        "files": [
            {"file": "good.yml", "ok": True, "errors": []},
            {
                "file": "bad.yml",
                "ok": False,
                "errors": [
                    {
                        "file": "bad.yml",
                        "line": 14,
                        "column": 38,
                        "path": "spec.health.interval",
                        "message": "expected a duration such as '2s', '5m' or '1m30s', got 2",
                    }
                ],
            },
        ],
    }


def test_validate_json_all_valid(write_spec: WriteSpec, valid_spec_text: str) -> None:
    write_spec(valid_spec_text)

    result = run("validate", "moorage.yml", "--output", "json")

    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"ok": True, "files": [{"file": "moorage.yml", "ok": True, "errors": []}]}


def test_validate_without_a_file_is_a_usage_error() -> None:
    assert run("validate").exit_code == 2


def test_the_installed_command_exits_2_with_one_line_per_problem_and_no_traceback(write_spec: WriteSpec, valid_spec_text: str) -> None:
    write_spec(valid_spec_text, "good.yml")
    write_spec(b"kind: \xff\n", "binary.yml")
    write_spec("- a\n- b\n", "list.yml")

    bad = subprocess.run(
        [sys.executable, "-m", "moorage", "validate", "binary.yml", "list.yml", "."],
        capture_output=True,
        text=True,
        check=False,
    )
    good = subprocess.run([sys.executable, "-m", "moorage", "validate", "good.yml"], capture_output=True, text=True, check=False)

    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.splitlines() == [
        "binary.yml:1:7: error: not UTF-8 text (byte 0xff); save the file as UTF-8",
        "list.yml:1:1: error: expected a mapping with apiVersion, kind, metadata and spec, got a list",
        ".:1:1: error: is a directory, expected a spec file",
    ]
    assert (good.returncode, good.stdout, good.stderr) == (0, "good.yml: ok\n", "")


# --- the JSON Schema ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec_schema() -> dict[str, Any]:
    result = run("schema")
    assert result.exit_code == 0
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


def as_data(text: str) -> Any:
    return YAML(typ="safe").load(text)


def objects_in(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        if "properties" in schema:
            yield schema
        for value in schema.values():
            yield from objects_in(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from objects_in(value)


def test_the_schema_is_draft_2020_12_and_itself_valid(spec_schema: dict[str, Any]) -> None:
    assert spec_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(spec_schema)


def test_the_example_spec_validates_against_the_schema(spec_schema: dict[str, Any], valid_spec_text: str) -> None:
    jsonschema.Draft202012Validator(spec_schema).validate(as_data(valid_spec_text))


@pytest.mark.parametrize(
    ("old", "new"),
    [("replicas: 3", "replica: 3"), ("maxPerHost: 1", "maxperhost: 1"), ("kind: Service", "kind: Service\nextra: 1")],
)
def test_the_schema_refuses_a_misspelt_key(spec_schema: dict[str, Any], valid_spec_text: str, old: str, new: str) -> None:
    with pytest.raises(jsonschema.ValidationError, match="Additional properties are not allowed"):
        jsonschema.Draft202012Validator(spec_schema).validate(as_data(valid_spec_text.replace(old, new)))


def test_the_schema_refuses_a_duration_without_unit(spec_schema: dict[str, Any], valid_spec_text: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(spec_schema).validate(as_data(valid_spec_text.replace("2s", "2")))


def test_every_mapping_in_the_schema_refuses_unknown_keys_and_is_described(spec_schema: dict[str, Any]) -> None:
    mappings = list(objects_in(spec_schema))

    assert len(mappings) == 11  # the spec and its ten sub-mappings
    assert all(mapping["additionalProperties"] is False for mapping in mappings)
    assert all(mapping.get("description") for mapping in mappings)


def test_the_schema_uses_yaml_keys_and_shows_defaults_as_written(spec_schema: dict[str, Any]) -> None:
    update = spec_schema["$defs"]["Update"]["properties"]
    health = spec_schema["$defs"]["Health"]["properties"]

    assert set(update) == {"maxParallel", "minHealthy", "healthyDeadline", "autoRevert", "canary", "order"}
    assert (update["minHealthy"]["default"], update["healthyDeadline"]["default"]) == ("10s", "5m")
    assert (health["interval"]["default"], health["timeout"]["default"]) == ("10s", "1s")
    assert "apiVersion" in spec_schema["properties"] and "api_version" not in spec_schema["properties"]
