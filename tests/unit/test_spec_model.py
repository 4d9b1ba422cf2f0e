"""The spec model: defaults as docs/concepts.md states them, durations, quantities and placeholders."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from moorage.spec.loader import SpecInvalid, load_spec
from moorage.spec.units import cpu_millicores, format_duration, memory_bytes, parse_duration, whole_seconds

MINIMAL_SPEC = """\
apiVersion: moorage/v1
kind: Service
metadata: {name: tiny}
spec:
  artifact: ./app
  command: [./run]
"""


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecInvalid) as raised:
        load_spec(path)
    return str(raised.value).splitlines()


def test_the_design_example_loads_with_every_field(write_spec: Callable[..., Path], valid_spec_text: str) -> None:
    service = load_spec(write_spec(valid_spec_text)).model

    body = service.spec
    assert service.name == "hello"
    assert body.command == ["python3", "app.py", "--port", "${PORT}"]
    assert (body.replicas, body.placement.group, body.placement.max_per_host, body.port) == (3, "app", 1, 8080)
    assert body.env == {"GREETING": "hi"} and body.secrets == ["API_TOKEN"]
    assert body.health is not None and body.health.kind == "http" and body.health.http == "/healthz"
    assert body.health.interval == timedelta(seconds=2) and body.health.deregister_after == timedelta(minutes=5)
    assert [(route.host, route.path) for route in body.routes] == [("hello.example.test", "/")]
    assert body.metrics is not None and body.metrics.path == "/metrics"
    assert (body.resources.memory, body.resources.cpu) == ("256Mi", "500m")
    assert [(volume.name, volume.path) for volume in body.volumes] == [("data", "/var/lib/hello")]
    assert body.update.healthy_deadline == timedelta(seconds=60) and body.update.min_healthy == timedelta(seconds=5)
    assert (body.stop.signal, body.stop.grace_period) == ("SIGTERM", timedelta(seconds=30))


def test_defaults_follow_kubernetes_probes_and_nomad_updates_with_auto_revert_on(
    write_spec: Callable[..., Path],
) -> None:
    service = load_spec(write_spec(MINIMAL_SPEC + "  port: 8080\n  health: {tcp: true}\n")).model

    body = service.spec
    assert body.health is not None
    assert (body.health.interval, body.health.timeout) == (timedelta(seconds=10), timedelta(seconds=1))
    assert body.health.deregister_after == timedelta(minutes=5)
    update = body.update
    assert (update.max_parallel, update.min_healthy, update.healthy_deadline) == (
        1,
        timedelta(seconds=10),
        timedelta(minutes=5),
    )
    assert update.auto_revert is True and update.canary == 0
    assert (body.runtime, body.replicas, body.placement.group, body.placement.max_per_host) == ("systemd", 1, "app", 1)
    assert (body.stop.signal, body.stop.grace_period) == ("SIGTERM", timedelta(seconds=30))
    assert body.routes == [] and body.volumes == [] and body.metrics is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2s", 2), ("5m", 300), ("1m30s", 90), ("500ms", 0.5), ("1.5h", 5400), ("1d", 86400)],
)
def test_durations_read_like_go_and_kubernetes(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["2", "2 s", "s", "5min", "-1s", ""])
def test_a_duration_without_a_unit_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


def test_durations_print_in_their_shortest_exact_form() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (90, 300, 7200, 0.5, 1)] == ["90s", "5m", "2h", "500ms", "1s"]
    assert whole_seconds(timedelta(milliseconds=1500)) == 2 and whole_seconds(timedelta(milliseconds=100)) == 1


def test_quantities_read_like_kubernetes() -> None:
    assert memory_bytes("256Mi") == 256 * 2**20 and memory_bytes("1G") == 10**9 and memory_bytes("512") == 512
    assert cpu_millicores("500m") == 500 and cpu_millicores("2") == 2000 and cpu_millicores("0.25") == 250


def test_a_bare_number_for_cpu_is_cores(write_spec: Callable[..., Path]) -> None:
    service = load_spec(write_spec(MINIMAL_SPEC + "  resources: {cpu: 2, memory: 1Gi}\n")).model

    assert service.spec.resources.cpu == "2" and cpu_millicores(service.spec.resources.cpu) == 2000


def test_env_values_yaml_reads_as_numbers_or_booleans_stay_text(write_spec: Callable[..., Path]) -> None:
    service = load_spec(write_spec(MINIMAL_SPEC + "  env: {DEBUG: 1, VERBOSE: true, RATIO: 0.5}\n")).model

    assert service.spec.env == {"DEBUG": "1", "VERBOSE": "true", "RATIO": "0.5"}


def test_placeholders_may_name_builtins_env_and_secrets(write_spec: Callable[..., Path]) -> None:
    text = MINIMAL_SPEC.replace(
        "command: [./run]",
        'command: [./run, "${PORT}", "${MOORAGE_VERSION}", "${GREETING}", "${TOKEN}"]',
    )
    service = load_spec(write_spec(text + "  env: {GREETING: hi, URL: 'http://localhost:${PORT}/'}\n  secrets: [TOKEN]\n")).model

    assert service.spec.command == ["./run", "${PORT}", "${MOORAGE_VERSION}", "${GREETING}", "${TOKEN}"]


def test_an_unknown_placeholder_is_an_error_at_its_item(write_spec: Callable[..., Path], valid_spec_text: str) -> None:
    text = valid_spec_text.replace('"${PORT}"]', '"${NOPE}"]')

    assert problems(write_spec(text)) == [
        "moorage.yml:8:44: error: spec.command[3]: unknown placeholder ${NOPE} (known: API_TOKEN, GREETING, "
        "MOORAGE_INSTANCE, MOORAGE_RELEASE, MOORAGE_SERVICE, MOORAGE_VERSION, PORT)"
    ]


def test_an_unknown_placeholder_in_env_and_in_the_health_command(write_spec: Callable[..., Path]) -> None:
    text = MINIMAL_SPEC + "  env: {URL: 'http://${HOST}/'}\n  health: {command: [check, '${PROT}']}\n"

    assert [line.split(" (known")[0] for line in problems(write_spec(text))] == [
        "moorage.yml:7:14: error: spec.env.URL: unknown placeholder ${HOST}",
        "moorage.yml:8:29: error: spec.health.command[1]: unknown placeholder ${PROT}",
    ]


def test_rules_across_fields_point_at_the_field_to_blame(write_spec: Callable[..., Path], valid_spec_text: str) -> None:
    text = valid_spec_text.replace("maxPerHost: 1", "maxPerHost: 2").replace("canary: 0", "canary: 4")

    assert problems(write_spec(text)) == [
        "moorage.yml:10:39: error: spec.placement.maxPerHost: must be 1 for a service with volumes (each instance owns its host's volume)",
        "moorage.yml:21:92: error: spec.update.canary: canary 4 is more than replicas 3",
    ]


def test_health_takes_exactly_one_kind_of_check(write_spec: Callable[..., Path], valid_spec_text: str) -> None:
    text = valid_spec_text.replace("{http: /healthz,", "{http: /healthz, tcp: true,")

    assert problems(write_spec(text)) == ["moorage.yml:14:11: error: spec.health: set exactly one of http, tcp or command (got http, tcp)"]


def test_a_docker_service_needs_an_image_and_no_artifact(write_spec: Callable[..., Path], valid_spec_text: str) -> None:
    text = valid_spec_text.replace("runtime: systemd", "runtime: docker")

    assert problems(write_spec(text)) == [
        "moorage.yml:6:3: error: spec: runtime docker needs 'image'",
        "moorage.yml:7:13: error: spec.artifact: only for runtime systemd (use image or imageArchive)",
    ]
