"""Numbers at the edges: every count, duration and quantity stays within what the targets accept.

Past a bound: one located line and exit 2. At the bound: the spec validates and renders to values
the targets take — Kubernetes manifests whose integers fit int32 (kubernetes-validate's schemas do
not check that), and a systemd unit, rendered from the service role's real template, that
systemd-analyze verifies without ignoring a setting. Docker cannot run here (no daemon on this
host); its limits (6Mi memory, 0.01 CPUs, whole-second stop timeout) are checked as numbers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import kubernetes_validate
import pytest
from click.testing import CliRunner

from moorage.cli import cli
from moorage.spec.loader import SpecFile, SpecInvalid, load_spec
from moorage.targets import kubernetes
from moorage.targets.classic import service_variables

WriteSpec = Callable[..., Path]
REPO = Path(__file__).resolve().parents[2]
INT32_MAX = 2**31 - 1
GO_DURATION_MAX_SECONDS = (2**63 - 1) / 1e9  # time.Duration is int64 nanoseconds
LONGEST = "must be at most 24855d (Kubernetes counts seconds in 32 bits)"
MOST_MEMORY = "must be at most 9223372036854775807 bytes (Kubernetes and Docker count in 64 bits)"

SPEC = """\
apiVersion: moorage/v1
kind: Service
metadata: {name: edge}
spec:
  artifact: ./app
  command: [/bin/true]
  replicas: REPLICAS
  placement: {maxPerHost: MAX_PER_HOST}
  port: PORT
  health: {http: /healthz, interval: INTERVAL, timeout: TIMEOUT, deregisterAfter: DEREGISTER}
  resources: {memory: MEMORY, cpu: CPU}
  update: {maxParallel: MAX_PARALLEL, minHealthy: MIN_HEALTHY, healthyDeadline: DEADLINE, canary: CANARY}
  stop: {gracePeriod: GRACE}
"""
LARGEST = {
    "REPLICAS": "2147483647",
    "MAX_PER_HOST": "2147483647",
    "PORT": "65535",
    "INTERVAL": "24855d",
    "TIMEOUT": "24855d",
    "DEREGISTER": "24855d",
    "MEMORY": "9223372036854775807",
    "CPU": "1000",
    "MAX_PARALLEL": "2147483647",
    "MIN_HEALTHY": "24854d",
    "DEADLINE": "24855d",
    "CANARY": "2147483647",
    "GRACE": "24855d",
}
SMALLEST = {
    "REPLICAS": "0",
    "MAX_PER_HOST": "1",
    "PORT": "1",
    "INTERVAL": "1ms",
    "TIMEOUT": "1ms",
    "DEREGISTER": "1ms",
    "MEMORY": "6Mi",
    "CPU": "10m",
    "MAX_PARALLEL": "1",
    "MIN_HEALTHY": "0s",
    "DEADLINE": "1ms",
    "CANARY": "0",
    "GRACE": "1s",
}


def spec_text(values: dict[str, str]) -> str:
    text = SPEC
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecInvalid) as raised:
        load_spec(path)
    return raised.value.report_lines()


def test_the_numbers_the_review_found_are_refused_at_their_place_with_exit_2(write_spec: WriteSpec, valid_spec_text: str) -> None:
    write_spec(valid_spec_text.replace("interval: 2s", "interval: 999999999999999999h"), "hours.yml")
    write_spec(valid_spec_text.replace("interval: 2s", "interval: 100000000d"), "days.yml")
    write_spec(valid_spec_text.replace("replicas: 3", "replicas: 99999999999999999999999999999"), "replicas.yml")

    result = CliRunner().invoke(cli, ["validate", "hours.yml", "days.yml", "replicas.yml"])

    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"hours.yml:14:38: error: spec.health.interval: {LONGEST}, got '999999999999999999h'",
        f"days.yml:14:38: error: spec.health.interval: {LONGEST}, got '100000000d'",
        "replicas.yml:9:13: error: spec.replicas: must be less than or equal to 2147483647, got 99999999999999999999999999999",
    ]


@pytest.mark.parametrize(
    ("placeholder", "value", "message"),
    [
        ("REPLICAS", "2147483648", "spec.replicas: must be less than or equal to 2147483647, got 2147483648"),
        ("REPLICAS", "-1", "spec.replicas: must be greater than or equal to 0, got -1"),
        ("MAX_PER_HOST", "2147483648", "spec.placement.maxPerHost: must be less than or equal to 2147483647, got 2147483648"),
        ("PORT", "65536", "spec.port: must be less than or equal to 65535, got 65536"),
        ("MAX_PARALLEL", "2147483648", "spec.update.maxParallel: must be less than or equal to 2147483647, got 2147483648"),
        ("CANARY", "2147483648", "spec.update.canary: must be less than or equal to 2147483647, got 2147483648"),
        ("INTERVAL", "24855d1ms", f"spec.health.interval: {LONGEST}, got '24855d1ms'"),
        ("INTERVAL", "0s", "spec.health.interval: must be at least 1ms, got '0s'"),
        ("INTERVAL", "0.5ms", "spec.health.interval: must be a whole number of milliseconds, got '0.5ms'"),
        ("TIMEOUT", "0s", "spec.health.timeout: must be at least 1ms, got '0s'"),
        ("DEREGISTER", "0s", "spec.health.deregisterAfter: must be at least 1ms, got '0s'"),
        ("DEADLINE", "596521h", f"spec.update.healthyDeadline: {LONGEST}, got '596521h'"),
        ("GRACE", "999ms", "spec.stop.gracePeriod: must be at least 1s, got '999ms'"),
        ("GRACE", "9" * 5000 + "s", f"spec.stop.gracePeriod: {LONGEST}, got '" + "9" * 40 + "'... (5001 characters)"),
        ("MEMORY", "9223372036854775808", f"spec.resources.memory: {MOST_MEMORY}, got 9223372036854775808"),
        ("MEMORY", "8388608Ti", f"spec.resources.memory: {MOST_MEMORY}, got '8388608Ti'"),
        ("MEMORY", "6291455", "spec.resources.memory: must be at least 6Mi (Docker's smallest memory limit), got 6291455"),
        ("MEMORY", "1e400", "spec.resources.memory: expected a memory quantity such as '256Mi' or '1Gi', got inf"),
        ("CPU", "1000001m", "spec.resources.cpu: must be at most 1000 (cores), got '1000001m'"),
        ("CPU", "9m", "spec.resources.cpu: must be at least 10m (Docker's smallest CPU limit, 0.01 cores), got '9m'"),
        ("CPU", "0.009", "spec.resources.cpu: must be at least 10m (Docker's smallest CPU limit, 0.01 cores), got 0.009"),
    ],
)  # fmt: skip
def test_past_a_bound_is_one_located_line(write_spec: WriteSpec, placeholder: str, value: str, message: str) -> None:
    text = spec_text({**SMALLEST, "REPLICAS": "1", "DEADLINE": "1m", placeholder: value})
    line = next(number for number, text_line in enumerate(text.splitlines(), 1) if value in text_line)

    found = problems(write_spec(text))

    assert len(found) == 1, found
    assert re.fullmatch(rf"moorage\.yml:{line}:\d+: error: " + re.escape(message), found[0]), found[0]


def int_values(tree: Any, path: str = "") -> Iterator[tuple[str, int]]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from int_values(value, f"{path}.{key}")
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from int_values(value, f"{path}[{index}]")
    elif isinstance(tree, int) and not isinstance(tree, bool):
        yield path, tree


@pytest.mark.parametrize("values", [LARGEST, SMALLEST], ids=["largest", "smallest"])
def test_kubernetes_takes_the_manifests_of_the_edges(write_spec: WriteSpec, values: dict[str, str]) -> None:
    service = load_spec(write_spec(spec_text(values))).model

    manifests = kubernetes.render(service, "1")

    for manifest in manifests:
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)
        outside = [(path, number) for path, number in int_values(manifest) if not 0 <= number <= INT32_MAX]
        assert outside == [], f"{manifest['kind']}: not an int32"


def systemd_unit(spec: SpecFile) -> str:
    template = (REPO / "roles/service/templates/instance.service.j2").read_text()
    return jinja2.Template(template, keep_trailing_newline=True).render(
        ansible_managed="test",
        service_name=spec.name,
        service_instance={"id": f"{spec.name}-1"},
        service_release=1,
        service_version="1",
        service_release_dir="/",
        service_env_dir="/etc",
        service_spec=service_variables(spec),
    )


@pytest.mark.parametrize("values", [LARGEST, SMALLEST], ids=["largest", "smallest"])
def test_systemd_consul_and_docker_take_the_variables_of_the_edges(write_spec: WriteSpec, tmp_path: Path, values: dict[str, str]) -> None:
    spec = load_spec(write_spec(spec_text(values)))
    variables = service_variables(spec)
    unit = tmp_path / "edge-1.service"
    unit.write_text(systemd_unit(spec))

    verified = subprocess.run(
        [shutil.which("systemd-analyze") or "systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )

    settings = [line for line in unit.read_text().splitlines() if line.startswith(("TimeoutStopSec=", "MemoryMax=", "CPUQuota="))]
    assert len(settings) == 3
    assert "ignoring" not in verified.stderr and "Invalid" not in verified.stderr, (settings, verified.stderr)
    durations = [variables["health"][f"{key}_seconds"] for key in ("interval", "timeout", "deregister_after")]
    durations += [variables["update"][f"{key}_seconds"] for key in ("min_healthy", "healthy_deadline")]
    assert all(0 <= seconds <= GO_DURATION_MAX_SECONDS for seconds in durations)  # Consul's checks and the health gate
    assert variables["resources"]["memory_max"] >= 6 * 2**20 and variables["resources"]["cpus"] >= 0.01  # Docker's smallest
    assert int(variables["stop"]["grace_period_seconds"]) >= 1  # Docker's stop timeout, whole seconds
