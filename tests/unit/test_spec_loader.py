"""Every kind of bad spec file gets one located line per problem: FILE:LINE:COL: error: PATH: WHY."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from moorage.errors import EXIT_BAD_INPUT, BadInput
from moorage.spec.loader import Diagnostic, SpecInvalid, artifact_path, image_archive_path, load_spec

WriteSpec = Callable[..., Path]


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecInvalid) as raised:
        load_spec(path)
    return str(raised.value).splitlines()


def test_spec_invalid_is_bad_input_with_exit_status_2(write_spec: WriteSpec, valid_spec_text: str) -> None:
    with pytest.raises(SpecInvalid) as raised:
        load_spec(write_spec(valid_spec_text.replace("replicas: 3", "replicas: many")))

    assert isinstance(raised.value, BadInput) and raised.value.exit_code == EXIT_BAD_INPUT
    assert raised.value.diagnostics == [Diagnostic("moorage.yml", 9, 13, "spec.replicas", "expected a whole number, got 'many'")]


# --- wrong values: the position of the value ---------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "interval: 2s",
            "interval: soon",
            "14:38: error: spec.health.interval: expected a duration such as '2s', '5m' or '1m30s', got 'soon'",
        ),
        (
            "runtime: systemd",
            "runtime: sytemd",
            "6:12: error: spec.runtime: must be 'systemd' or 'docker', got 'sytemd' (did you mean 'systemd'?)",
        ),
        (
            "name: hello",
            "name: Hello_World",
            "4:9: error: metadata.name: must be lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, got 'Hello_World'",
        ),
        (
            "memory: 256Mi",
            "memory: lots",
            "18:23: error: spec.resources.memory: expected a memory quantity such as '256Mi' or '1Gi', got 'lots'",
        ),
        ("cpu: 500m", "cpu: fast", "18:35: error: spec.resources.cpu: expected a CPU quantity such as '500m' or '2', got 'fast'"),
        ("port: 8080", "port: 80800", "11:9: error: spec.port: must be less than or equal to 65535, got 80800"),
        (
            "path: /var/lib/hello",
            "path: var/lib/hello",
            "20:26: error: spec.volumes[0].path: must be an absolute path (starting with /), got 'var/lib/hello'",
        ),
        (
            "host: hello.example.test",
            "host: Hello World",
            "16:14: error: spec.routes[0].host: must be a lowercase host name such as hello.example.test, got 'Hello World'",
        ),
        ('"--port", "${PORT}"', '"--port", 8080', "8:44: error: spec.command[3]: expected a string, got 8080 (quote it to use it as text)"),
        ("placement: {group: app, maxPerHost: 1}", "placement: [app]", "10:14: error: spec.placement: expected a mapping, got a list"),
        ("secrets: [API_TOKEN]", "secrets: API_TOKEN", "13:12: error: spec.secrets: expected a list, got 'API_TOKEN'"),
        ("autoRevert: true", "autoRevert: maybe", "21:78: error: spec.update.autoRevert: expected true or false, got 'maybe'"),
        (
            "signal: SIGTERM",
            "signal: TERM",
            "22:18: error: spec.stop.signal: must be 'SIGTERM', 'SIGINT', 'SIGQUIT', "
            "'SIGHUP', 'SIGUSR1', 'SIGUSR2' or 'SIGKILL', got 'TERM' (did you mean 'SIGTERM'?)",
        ),
        (
            "apiVersion: moorage/v1",
            "apiVersion: moorage/v2",
            "1:13: error: apiVersion: must be 'moorage/v1', got 'moorage/v2' (did you mean 'moorage/v1'?)",
        ),
    ],
)
def test_a_wrong_value_is_reported_at_the_value(write_spec: WriteSpec, valid_spec_text: str, old: str, new: str, expected: str) -> None:
    assert old in valid_spec_text
    assert problems(write_spec(valid_spec_text.replace(old, new))) == [f"moorage.yml:{expected}"]


def test_an_env_name_that_is_no_variable_name_is_reported_at_the_key(write_spec: WriteSpec, valid_spec_text: str) -> None:
    text = valid_spec_text.replace("env: {GREETING: hi}", "env: {GREETING: hi, bad-name: x}")

    assert problems(write_spec(text)) == [
        "moorage.yml:12:23: error: spec.env.bad-name: invalid key: must be a variable name: letters, digits and "
        "'_', not starting with a digit"
    ]


def test_an_empty_value_is_reported_at_its_key(write_spec: WriteSpec) -> None:
    text = "apiVersion: moorage/v1\nkind: Service\nmetadata:\nspec:\n  artifact: ./app\n  command: [run]\n"

    assert problems(write_spec(text)) == ["moorage.yml:3:1: error: metadata: expected a mapping, got nothing (null)"]


# --- unknown keys: the position of the key, with a suggestion -------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("replicas: 3", "replica: 3", "9:3: error: spec.replica: unknown field 'replica' (did you mean 'replicas'?)"),
        (
            "maxPerHost: 1",
            "maxperhost: 1",
            "10:27: error: spec.placement.maxperhost: unknown field 'maxperhost' (did you mean 'maxPerHost'?)",
        ),
        ("interval: 2s", "intervall: 2s", "14:28: error: spec.health.intervall: unknown field 'intervall' (did you mean 'interval'?)"),
        (
            "{host: hello.example.test, path: /}",
            "{host: hello.example.test, pth: /}",
            "16:34: error: spec.routes[0].pth: unknown field 'pth' (did you mean 'path'?)",
        ),
    ],
)
def test_a_misspelt_key_gets_did_you_mean(write_spec: WriteSpec, valid_spec_text: str, old: str, new: str, expected: str) -> None:
    found = problems(write_spec(valid_spec_text.replace(old, new)))

    assert found[0] == f"moorage.yml:{expected}"


def test_a_misspelt_top_level_key_is_also_a_missing_field(write_spec: WriteSpec, valid_spec_text: str) -> None:
    assert problems(write_spec(valid_spec_text.replace("metadata:", "metdata:"))) == [
        "moorage.yml:1:1: error: metadata: required field is missing",
        "moorage.yml:3:1: error: metdata: unknown field 'metdata' (did you mean 'metadata'?)",
    ]


def test_an_unknown_key_nothing_like_a_field_lists_what_is_allowed(write_spec: WriteSpec, valid_spec_text: str) -> None:
    text = valid_spec_text.replace("stop: {signal: SIGTERM,", "stop: {zzz: 1, signal: SIGTERM,")

    assert problems(write_spec(text)) == [
        "moorage.yml:22:10: error: spec.stop.zzz: unknown field 'zzz' (allowed here: signal, gracePeriod)"
    ]


# --- missing fields: the position of the enclosing mapping ---------------------------------------


def test_a_missing_required_field_points_at_its_mapping(write_spec: WriteSpec, valid_spec_text: str) -> None:
    text = valid_spec_text.replace("  name: hello\n", "  labels: {team: web}\n")

    assert problems(write_spec(text)) == ["moorage.yml:4:3: error: metadata.name: required field is missing"]


def test_a_missing_top_level_field_points_at_the_start(write_spec: WriteSpec) -> None:
    assert problems(write_spec("apiVersion: moorage/v1\nkind: Service\nmetadata: {name: x1}\n")) == [
        "moorage.yml:1:1: error: spec: required field is missing"
    ]


def test_a_systemd_service_without_a_command_is_blamed_on_spec(write_spec: WriteSpec, valid_spec_text: str) -> None:
    text = valid_spec_text.replace('  command: ["python3", "app.py", "--port", "${PORT}"]\n', "")

    assert problems(write_spec(text)) == ["moorage.yml:6:3: error: spec: runtime systemd needs 'command'"]


# --- files next to the spec -------------------------------------------------------------------------


def test_a_missing_artifact_names_the_field_and_where_it_was_looked_for(
    write_spec: WriteSpec, valid_spec_text: str, spec_dir: Path
) -> None:
    text = valid_spec_text.replace("artifact: ./app", "artifact: ./build/app.tar.gz")

    assert problems(write_spec(text)) == [
        f"moorage.yml:7:13: error: spec.artifact: ./build/app.tar.gz not found (looked for {spec_dir.resolve()}/build/app.tar.gz)"
    ]


def test_a_missing_image_archive_is_an_error_at_its_field(write_spec: WriteSpec) -> None:
    text = (
        "apiVersion: moorage/v1\nkind: Service\nmetadata: {name: web}\nspec:\n"
        "  runtime: docker\n  image: web:1.0\n  imageArchive: web.tar\n"
    )

    assert problems(write_spec(text))[0].startswith("moorage.yml:7:17: error: spec.imageArchive: web.tar not found (looked for ")


@pytest.mark.parametrize(
    ("artifact", "why"),
    [('"a\\0b"', "spec.artifact: a\\x00b not found"), ("a" * 300, "is no usable path: [Errno 36] File name too long")],
)
def test_an_artifact_path_the_system_cannot_use(write_spec: WriteSpec, valid_spec_text: str, artifact: str, why: str) -> None:
    found = problems(write_spec(valid_spec_text.replace("./app", artifact)))

    assert len(found) == 1 and found[0].startswith("moorage.yml:7:13: error: spec.artifact: ") and why in found[0]


def test_artifact_paths_are_relative_to_the_spec_file_not_the_working_directory(
    spec_dir: Path, valid_spec_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_dir = spec_dir / "services" / "hello"
    (service_dir / "app").mkdir(parents=True)
    spec_file = service_dir / "moorage.yml"
    spec_file.write_text(valid_spec_text)
    monkeypatch.chdir(spec_dir / "app")  # a directory with no ./app inside

    service = load_spec(Path("../services/hello/moorage.yml")).model

    assert artifact_path(service, Path("../services/hello/moorage.yml")) == (service_dir / "app").resolve()
    assert image_archive_path(service, spec_file) is None


def test_an_image_archive_path_resolves_next_to_the_spec(write_spec: WriteSpec, spec_dir: Path) -> None:
    (spec_dir / "web.tar").write_bytes(b"not really a tarball, but a file")
    text = (
        "apiVersion: moorage/v1\nkind: Service\nmetadata: {name: web}\nspec:\n"
        "  runtime: docker\n  image: web:1.0\n  imageArchive: web.tar\n"
    )
    spec_file = write_spec(text)

    assert image_archive_path(load_spec(spec_file).model, spec_file) == (spec_dir / "web.tar").resolve()


# --- files that are no spec at all ----------------------------------------------------------------


def test_not_yaml(write_spec: WriteSpec) -> None:
    assert problems(write_spec("apiVersion: moorage/v1\nspec: [unclosed\n")) == [
        "moorage.yml:3:1: error: not valid YAML: while parsing a flow sequence; expected ',' or ']', but got '<stream end>'"
    ]


def test_not_yaml_mapping_values_in_one_line(write_spec: WriteSpec) -> None:
    assert problems(write_spec("kind: Service: x\n")) == ["moorage.yml:1:14: error: not valid YAML: mapping values are not allowed here"]


def test_a_control_character(write_spec: WriteSpec) -> None:
    found = problems(write_spec("apiVersion: moorage/v1\nkind: Ser\x07vice\n"))

    assert found == ["moorage.yml:2:10: error: not valid YAML: special characters are not allowed"]


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n", "---\n"])
def test_an_empty_file(write_spec: WriteSpec, content: str) -> None:
    assert problems(write_spec(content)) == [
        "moorage.yml:1:1: error: empty file, expected a mapping with apiVersion, kind, metadata and spec"
    ]


def test_a_list_instead_of_a_mapping(write_spec: WriteSpec) -> None:
    assert problems(write_spec("# a list\n- apiVersion: moorage/v1\n- kind: Service\n")) == [
        "moorage.yml:2:1: error: expected a mapping with apiVersion, kind, metadata and spec, got a list"
    ]


def test_a_plain_string_instead_of_a_mapping(write_spec: WriteSpec) -> None:
    assert problems(write_spec("hello\n")) == [
        "moorage.yml:1:1: error: expected a mapping with apiVersion, kind, metadata and spec, got a string"
    ]


def test_a_duplicate_key_is_reported_with_the_other_problems(write_spec: WriteSpec, valid_spec_text: str) -> None:
    text = valid_spec_text.replace("  replicas: 3\n", "  replicas: 3\n  replicas: 4\n").replace("port: 8080", "port: http")

    assert problems(write_spec(text)) == [
        "moorage.yml:10:3: error: spec.replicas: duplicate key 'replicas' (first defined on line 9)",
        "moorage.yml:12:9: error: spec.port: expected a whole number, got 'http'",
    ]


def test_a_duplicate_key_in_a_flow_mapping_of_a_list_item(write_spec: WriteSpec, valid_spec_text: str) -> None:
    text = valid_spec_text.replace("{host: hello.example.test, path: /}", "{host: a.test, host: b.test}")

    assert problems(write_spec(text)) == ["moorage.yml:16:22: error: spec.routes[0].host: duplicate key 'host' (first defined on line 16)"]


def test_a_second_document(write_spec: WriteSpec, valid_spec_text: str) -> None:
    assert problems(write_spec(valid_spec_text + "---\n" + valid_spec_text)) == [
        "moorage.yml:23:1: error: a second YAML document; a spec file holds exactly one"
    ]


def test_a_file_that_is_not_utf8(write_spec: WriteSpec) -> None:
    content = "apiVersion: moorage/v1\nkind: Service\nmetadata: {name: café}\n".encode("latin-1")

    assert problems(write_spec(content)) == ["moorage.yml:3:21: error: not UTF-8 text (byte 0xe9); save the file as UTF-8"]


def test_a_missing_file(spec_dir: Path) -> None:
    assert problems(Path("nope.yml")) == ["nope.yml:1:1: error: no such file"]


def test_a_directory(spec_dir: Path) -> None:
    assert problems(Path("app")) == ["app:1:1: error: is a directory, expected a spec file"]


def test_a_yaml_tag_that_cannot_be_built_is_named_where_it_is(write_spec: WriteSpec) -> None:
    found = problems(write_spec("apiVersion: moorage/v1\nkind: !!int Service\n"))

    assert found == ["moorage.yml:2:7: error: cannot read 'Service' as !!int"]


# --- many problems at once -------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_in_file_order(write_spec: WriteSpec, valid_spec_text: str) -> None:
    text = (
        valid_spec_text.replace("stop: {signal: SIGTERM, gracePeriod: 30s}", "stop: {signal: SIGTERM, grace: 30s}")
        .replace("replicas: 3", "replica: 3")
        .replace("interval: 2s", "interval: 2")
        .replace("kind: Service", "kind: Deployment")
        .replace("path: /var/lib/hello", "path: relative")
    )

    assert problems(write_spec(text)) == [
        "moorage.yml:2:7: error: kind: must be 'Service', got 'Deployment'",
        "moorage.yml:9:3: error: spec.replica: unknown field 'replica' (did you mean 'replicas'?)",
        "moorage.yml:14:38: error: spec.health.interval: expected a duration such as '2s', '5m' or '1m30s', got 2",
        "moorage.yml:20:26: error: spec.volumes[0].path: must be an absolute path (starting with /), got 'relative'",
        "moorage.yml:22:27: error: spec.stop.grace: unknown field 'grace' (did you mean 'gracePeriod'?)",
    ]
