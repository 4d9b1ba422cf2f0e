"""-o/--output text|json|yaml on every command (kubectl's habit): yaml is the same documents as json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from moorage.cli import cli

REPO = Path(__file__).resolve().parents[2]
MOORAGE = str(Path(sys.executable).parent / "moorage")
HELLO = str(REPO / "examples/hello/moorage.yml")


def moorage(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOORAGE, *arguments], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)


def every_command(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += every_command(command, f"{prefix}{name} ")
        else:
            found.append((f"{prefix}{name}", command))
    return found


# `lab ssh` prints what the remote command prints; `schema` prints the JSON Schema, always JSON;
# `remote receive` is git's pre-receive hook (hidden): it prints what git relays to the pusher.
WITHOUT_FORMAT = {"lab ssh", "schema", "remote receive"}
COMMANDS = [(name, command) for name, command in every_command(cli) if name not in WITHOUT_FORMAT]


def test_only_the_commands_that_print_something_else_have_no_format() -> None:
    names = {name for name, _command in every_command(cli)}
    assert names >= WITHOUT_FORMAT and len(COMMANDS) == len(names) - len(WITHOUT_FORMAT)


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _command in COMMANDS])
def test_every_command_takes_dash_o_with_text_json_and_yaml(name: str, command: click.Command) -> None:
    option = next((param for param in command.params if isinstance(param, click.Option) and "--output" in param.opts), None)
    assert option is not None, f"moorage {name} has no --output"
    assert "-o" in option.opts
    assert isinstance(option.type, click.Choice) and list(option.type.choices) == ["text", "json", "yaml"]


@pytest.mark.parametrize("spec", [HELLO, "/no/such/spec.yml"])
def test_yaml_says_what_json_says(spec: str) -> None:
    as_json, as_yaml = moorage("validate", spec, "-o", "json"), moorage("validate", spec, "--output", "yaml")
    assert as_json.returncode == as_yaml.returncode
    assert list(yaml.safe_load_all(as_yaml.stdout)) == [json.loads(line) for line in as_json.stdout.splitlines()]


def test_a_bad_option_with_yaml_asked_for_is_a_yaml_error_document() -> None:
    run = moorage("deploy", HELLO, "-o", "yaml", "-i", "/no/such/inventory")
    assert run.returncode == 2
    [document] = list(yaml.safe_load_all(run.stdout))
    assert document["ok"] is False and "/no/such/inventory" in document["error"]


def test_render_writes_files_with_output_dir_and_dash_o_is_the_format() -> None:
    run = moorage("render", HELLO, "--target", "kubernetes", "-o", "yaml")
    documents = list(yaml.safe_load_all(run.stdout))
    assert run.returncode == 0 and documents, run.stderr
    refused = moorage("render", HELLO, "--target", "kubernetes", "-o", "out/")
    assert refused.returncode == 2 and "'out/' is not one of 'text', 'json', 'yaml'" in refused.stderr
