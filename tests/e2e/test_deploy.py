"""`moorage deploy` on the 4-host session lab: one deployed service whose state flows through the tests.

The tests run in file order on one service (``hello``, from examples/hello with a secret added):
v1 -> v2 under load (and a concurrent deploy refused) -> a v3 that never gets healthy, reverted
-> rollback to release 1 -> scale 5 then 2 -> the same version again (no change) -> a canary
dropped, one promoted, one dropped by `rollback --to N`; then the docker runtime under load; bad
input; and last, the secret's value is searched in everything moorage and Ansible wrote. Everything is real: the CLI, Ansible
over SSH, Consul, NGINX, Prometheus, rsyslog, Docker on the lab's docker host.

Traffic goes only to the lab's lb host (from this host, ``Host:`` set to the route's name).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from example_specs import example_spec, sealed_secrets
from http_load import HttpLoad, LoadSummary
from moorage_cli import Run
from platform_cli import Platform
from waiting import eventually

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MOORAGE = str(Path(sys.executable).parent / "moorage")
ROUTE_HOST = "hello.example.test"
DOCKER_ROUTE_HOST = "hello-docker.example.test"
SECRET_NAME = "HELLO_TOKEN"
SECRET_VALUE = f"moorage-e2e-secret-{uuid.uuid4().hex}"  # grepped for everywhere at the end


@dataclass
class Deployment:
    """The module's shared state: the lab, where the runs' artifacts go, the spec files, every CLI run."""

    platform: Platform
    work: Path
    runs_dir: Path  # MOORAGE_KEEP_RUNS: every ansible-runner directory of this module's runs (none in a deploy now)
    spec: Path
    failing_spec: Path
    secrets: Path
    vault_password: Path
    runs: list[Run]

    @property
    def lb(self) -> str:
        return self.platform.lab.group("lb")[0].address

    def moorage(self, *args: str, timeout: float = 900, env: dict[str, str] | None = None) -> Run:
        env = {**os.environ, "MOORAGE_KEEP_RUNS": str(self.runs_dir), **(env or {})}
        completed = subprocess.run([MOORAGE, *args], capture_output=True, text=True, timeout=timeout, env=env)
        run = Run(tuple(args), completed.returncode, completed.stdout, completed.stderr)
        self.runs.append(run)
        return run

    def with_secrets(self, *args: str, env: dict[str, str] | None = None) -> Run:
        return self.moorage(*args, "--secrets", str(self.secrets), "--vault-password-file", str(self.vault_password), env=env)

    def deploy(self, spec: Path, version: str, *extra: str) -> Run:
        return self.with_secrets("deploy", str(spec), "--version", version, "--output", "json", *extra)

    def status(self, service: str = "hello") -> list[dict[str, Any]]:
        run = self.moorage("status", service, "--output", "json")
        assert run.returncode == 0, run.stderr
        return run.result()["instances"]

    def releases(self, service: str = "hello") -> list[dict[str, Any]]:
        run = self.moorage("releases", service, "--output", "json")
        assert run.returncode == 0, run.stderr
        return run.result()["releases"]

    def unknown(self, service: str) -> bool:
        """Whether `moorage status` and `moorage releases` both say ``service`` does not exist (exit 2)."""
        runs = [self.moorage(command, service, "--output", "json") for command in ("status", "releases")]
        return all(run.returncode == 2 and f"{service}: no such service" in run.stdout for run in runs)

    def answers(self, host_header: str = ROUTE_HOST, count: int = 30) -> list[str]:
        return [requests.get(f"http://{self.lb}/", headers={"Host": host_header}, timeout=10).text.strip() for _ in range(count)]

    def load(self, host_header: str = ROUTE_HOST) -> HttpLoad:
        return HttpLoad(self.lb, host_header)

    def unit_pids(self) -> dict[str, tuple[str, int]]:
        """instance id -> (host, MainPID of its unit) for every hello instance in Consul."""
        return {
            row["instance"]: (
                row["host"],
                int(self.platform.lab.run(row["host"], f"systemctl show -p MainPID --value moorage-{row['instance']}.service").stdout),
            )
            for row in self.status()
        }


def spec_text(*, env: str = "{GREETING: hi}") -> str:
    """examples/hello/moorage.yml with a secret, quicker health gates, the artifact by absolute path."""
    return example_spec("hello", {
        "artifact: ./app": f"artifact: {REPO / 'examples/hello/app'}",
        "env: {GREETING: hi}": f"env: {env}\n  secrets: [{SECRET_NAME}]",
        "update: {maxParallel: 1, minHealthy: 3s, healthyDeadline: 60s}": "update: {maxParallel: 1, minHealthy: 2s, healthyDeadline: 20s}",
    })  # fmt: skip


@pytest.fixture(scope="module")
def deployment(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    work = tmp_path_factory.mktemp("deploy")
    (work / "runs").mkdir()
    spec = work / "hello.yml"
    spec.write_text(spec_text())
    failing_spec = work / "hello-failing.yml"
    failing_spec.write_text(spec_text(env='{GREETING: hi, HELLO_FAIL_HEALTH: "1"}'))
    vault_password, secrets = work / "vault-password", work / "secrets.yml"
    sealed_secrets(secrets, vault_password, {SECRET_NAME: SECRET_VALUE})
    assert SECRET_VALUE not in secrets.read_text()
    return Deployment(platform, work, work / "runs", spec, failing_spec, secrets, vault_password, runs=[])


@pytest.fixture(scope="module")
def v1(deployment: Deployment) -> Run:
    run = deployment.deploy(deployment.spec, "1")
    assert run.returncode == 0, f"deploy v1 failed: {run.stderr[-3000:]}"
    return run


# --- v1: routed, resolving, scraped, logged -------------------------------------------------


def test_v1_answers_through_nginx_from_3_instances(deployment: Deployment, v1: Run) -> None:
    answers = deployment.answers(count=30)
    assert all(answer.endswith("version 1") for answer in answers), answers
    assert {re.search(r"from (\S+),", answer).group(1) for answer in answers} == {"hello-1", "hello-2", "hello-3"}  # type: ignore[union-attr]
    rows = deployment.status()
    assert [(row["instance"], row["version"], row["health"]) for row in rows] == [(f"hello-{n}", "1", "passing") for n in (1, 2, 3)]
    assert len({row["host"] for row in rows}) == 3


def test_v1_name_resolves_to_the_instances_on_every_host(deployment: Deployment, v1: Run) -> None:
    addresses = {row["address"] for row in deployment.status()}
    for host in deployment.platform.lab.hosts:
        answer = deployment.platform.lab.run(host.name, "getent ahostsv4 hello.service.consul").stdout
        assert {line.split()[0] for line in answer.splitlines()} == addresses, f"{host.name}: {answer!r}"


def test_v1_prometheus_has_3_targets_up(deployment: Deployment, v1: Run) -> None:
    api = deployment.platform.prometheus_api()

    def three_up() -> list[dict[str, Any]] | None:
        targets = requests.get(f"{api}/targets", params={"state": "active"}, timeout=10).json()["data"]["activeTargets"]
        hello = [target for target in targets if target["labels"].get("job") == "hello"]
        return hello if len(hello) == 3 and all(target["health"] == "up" for target in hello) else None

    targets = eventually(three_up, within=60, every=2, what="3 hello targets up in Prometheus")
    assert {target["labels"]["consul_service_id"] for target in targets} == {"hello-1", "hello-2", "hello-3"}


def test_v1_log_lines_reach_the_logging_host(deployment: Deployment, v1: Run) -> None:
    lab = deployment.platform.lab
    logging_host = lab.group("logging")[0].name
    marker = f"/e2e-log-{uuid.uuid4().hex}"
    requests.get(f"http://{deployment.lb}{marker}", headers={"Host": ROUTE_HOST}, timeout=10)  # a 404 the app logs
    hosts = " ".join(f"/var/log/moorage/{row['host']}/hello.log" for row in deployment.status())
    found = eventually(
        lambda: lab.run(logging_host, f"grep -h -F {marker} {hosts} || true").stdout.strip() or None,
        within=10, what=f"the app's log line for {marker} on {logging_host}",
    )  # fmt: skip
    assert "404" in found


def test_lab_check_sees_what_a_person_would_and_fails_for_a_service_not_there(deployment: Deployment, v1: Run) -> None:
    run = deployment.moorage("lab", "check", str(deployment.spec), "--logs", "--output", "json")
    assert run.returncode == 0, run.stderr
    checks = {check["check"]: check for check in run.result()["checks"]}
    assert set(checks) == {"route", "dns", "metrics", "logs"} and all(check["passed"] for check in checks.values()), checks
    assert checks["route"]["saw"].startswith("200 ") and "version 1" in checks["route"]["saw"]
    assert checks["metrics"]["saw"].startswith("3 of 3 up")
    absent = deployment.work / "absent.yml"
    absent_text = spec_text().replace("name: hello", "name: absent").replace(ROUTE_HOST, "absent.example.test")
    absent.write_text(absent_text.replace("  metrics: {path: /metrics}\n", ""))  # no 60 s wait for a first scrape
    missing = deployment.moorage("lab", "check", str(absent))
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "absent route: 503" in missing.stderr and "absent dns: no address" in missing.stderr, missing.stderr


def test_logs_shows_every_instances_journal_by_host(deployment: Deployment, v1: Run) -> None:
    marker = f"/e2e-logs-{uuid.uuid4().hex}"
    for _ in range(6):  # round robin: every instance logs it
        requests.get(f"http://{deployment.lb}{marker}", headers={"Host": ROUTE_HOST}, timeout=10)
    run = deployment.moorage("logs", "hello", "--since", "-5min")
    assert run.returncode == 0, run.stderr
    hosts_with_marker = {line.split()[0] for line in run.stdout.splitlines() if marker in line}
    assert hosts_with_marker == {row["host"] for row in deployment.status()}
    as_json = deployment.moorage("logs", "hello", "--since", "-5min", "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    documents = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {document["host"] for document in documents if marker in document["line"]} == hosts_with_marker


def test_v1_instances_see_their_secret_in_their_environment(deployment: Deployment, v1: Run) -> None:
    for instance, (host, pid) in deployment.unit_pids().items():
        environ = deployment.platform.lab.run(host, f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout.splitlines()
        assert f"{SECRET_NAME}={SECRET_VALUE}" in environ, f"{instance} on {host}"
        mode = deployment.platform.lab.run(host, f"stat -c '%a %U' /etc/moorage/hello/{instance}.env").stdout.strip()
        assert mode == "600 root"


# --- v2 under load, and a concurrent deploy ---------------------------------------------------


@dataclass(frozen=True)
class LoadedRollout:
    run: Run
    load: LoadSummary
    concurrent: Run  # a second deploy started while the first held the lock


def lock_holder(deployment: Deployment, service: str) -> str | None:
    api = deployment.platform.consul_api("lab-1")
    response = requests.get(
        f"{api}/kv/moorage/services/{service}/lock", headers={"X-Consul-Token": deployment.platform.management_token}, timeout=10
    )
    held = response.status_code == 200 and response.json()[0].get("Session")
    return "held" if held else None


@pytest.fixture(scope="module")
def v2(deployment: Deployment, v1: Run) -> LoadedRollout:
    env = {**os.environ, "MOORAGE_KEEP_RUNS": str(deployment.runs_dir)}
    args = (
        "deploy",
        str(deployment.spec),
        "--version",
        "2",
        "--output",
        "json",
        "--secrets",
        str(deployment.secrets),
        "--vault-password-file",
        str(deployment.vault_password),
    )
    with deployment.load() as load:
        first = subprocess.Popen([MOORAGE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        eventually(lambda: lock_holder(deployment, "hello"), within=60, every=0.2, what="the first deploy holding the lock")
        concurrent = deployment.deploy(deployment.spec, "2-concurrent")
        stdout, stderr = first.communicate(timeout=900)
    run = Run(args, first.returncode, stdout, stderr)
    deployment.runs.append(run)
    return LoadedRollout(run, load.summary, concurrent)


def test_v2_rolls_out_under_load_without_a_failed_request(deployment: Deployment, v2: LoadedRollout) -> None:
    assert v2.run.returncode == 0, v2.run.stderr[-3000:]
    assert v2.run.result()["report"]["switched"] == ["hello-1", "hello-2", "hello-3"]
    assert v2.load.failed == 0, v2.load.describe()
    assert v2.load.sent >= 1000, v2.load.describe()
    assert v2.load.versions["1"] > 0 and v2.load.versions["2"] > 0, v2.load.describe()
    assert all(answer.endswith("version 2") for answer in deployment.answers())


def test_a_concurrent_deploy_gets_exit_3_naming_the_holder(v2: LoadedRollout) -> None:
    assert v2.concurrent.returncode == 3, v2.concurrent.stdout + v2.concurrent.stderr
    error = v2.concurrent.result()["error"]
    assert "deploy of version 2 by " in error and "@" in error, error


# --- v3 never gets healthy --------------------------------------------------------------------


def test_v3_that_never_gets_healthy_stops_at_the_first_batch_and_reverts(deployment: Deployment, v2: LoadedRollout) -> None:
    with deployment.load() as load:
        run = deployment.deploy(deployment.failing_spec, "3")
    assert run.returncode == 1, run.stdout + run.stderr
    result = run.result()
    assert result["report"]["switched"] == [] and result["report"]["reverted"] == ["hello-1"], result
    assert "batch 1/3 failed" in result["message"] and "not healthy for 2s within 20s" in result["message"], result["message"]
    assert "failing on purpose, version 3" in result["message"]  # the check's output
    assert load.summary.failed == 0 and load.summary.sent >= 500, load.summary.describe()
    assert set(load.summary.versions) == {"2"}, load.summary.describe()
    assert [row["version"] for row in deployment.status()] == ["2", "2", "2"]
    assert deployment.releases()[-1]["status"] == "reverted"


# --- rollback, scale, no change, canary ---------------------------------------------------------


def test_rollback_to_the_release_of_v1(deployment: Deployment, v2: LoadedRollout) -> None:
    # Release 1 on a fresh lab; the newest release of version 1 on a kept one (MOORAGE_KEEP_LAB=1).
    v1_release = [release for release in deployment.releases() if release["version"] == "1" and release["status"] == "deployed"][-1][
        "number"
    ]
    run = deployment.with_secrets("rollback", "hello", "--to", str(v1_release), "--output", "json")
    assert run.returncode == 0, run.stderr[-3000:]
    assert all(answer.endswith("version 1") for answer in deployment.answers())
    assert {row["version"] for row in deployment.status()} == {"1"}
    assert deployment.releases()[-1]["note"] == f"rollback to {v1_release}"


def test_scale_to_5_then_2_leaves_the_other_instances_alone(deployment: Deployment, v2: LoadedRollout) -> None:
    before = deployment.unit_pids()
    run = deployment.with_secrets("scale", "hello=5", "--output", "json")
    assert run.returncode == 0, run.stderr[-3000:]
    after_up = deployment.unit_pids()
    assert sorted(after_up) == [f"hello-{n}" for n in range(1, 6)]
    assert {name: after_up[name] for name in before} == before  # same hosts and PIDs: untouched
    ports = {(row["host"], row["port"]) for row in deployment.status()}
    assert len(ports) == 5  # two instances share a host on distinct ports
    run = deployment.with_secrets("scale", "hello=2", "--output", "json")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.result()["report"]["removed"] == ["hello-3", "hello-4", "hello-5"]
    after_down = deployment.unit_pids()
    assert after_down == {name: before[name] for name in ("hello-1", "hello-2")}
    assert {re.search(r"from (\S+),", answer).group(1) for answer in deployment.answers()} == {"hello-1", "hello-2"}  # type: ignore[union-attr]


def test_the_same_version_again_is_no_change(deployment: Deployment, v2: LoadedRollout) -> None:
    run = deployment.deploy(deployment.spec, "1")  # after the rollback: release 1's files and spec, but 3 replicas
    assert run.returncode == 0, run.stderr[-3000:]
    pids = deployment.unit_pids()
    again = deployment.deploy(deployment.spec, "1")
    assert again.returncode == 0, again.stderr[-3000:]
    result = again.result()
    assert result["changed"] is False and result["ansible_changed"] == 0, result
    assert "no change" in result["message"]
    assert deployment.unit_pids() == pids


def test_a_canary_starts_beside_the_old_and_rollback_drops_it(deployment: Deployment, v2: LoadedRollout) -> None:
    before = deployment.unit_pids()
    run = deployment.deploy(deployment.spec, "4", "--canary", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {row["instance"]: row for row in deployment.status()}
    assert sorted(rows) == ["hello-1", "hello-2", "hello-3", "hello-4"]
    assert rows["hello-4"]["version"] == "4" and {rows[f"hello-{n}"]["version"] for n in (1, 2, 3)} == {"1"}
    assert {answer.rsplit(" ", 1)[-1] for answer in deployment.answers(count=40)} == {"1", "4"}
    refused = deployment.deploy(deployment.spec, "5")
    assert refused.returncode == 2 and "is a canary" in refused.result()["error"]
    dropped = deployment.with_secrets("rollback", "hello", "--output", "json")
    assert dropped.returncode == 0, dropped.stderr[-3000:]
    assert deployment.unit_pids() == before
    assert deployment.releases()[-1]["status"] == "reverted"


def test_a_promoted_canary_rolls_the_rest_then_goes(deployment: Deployment, v2: LoadedRollout) -> None:
    run = deployment.deploy(deployment.spec, "5", "--canary", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    with deployment.load() as load:
        promoted = deployment.with_secrets("promote", "hello", "--output", "json")
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    assert promoted.result()["report"]["removed"] == ["hello-4"]
    assert [(row["instance"], row["version"]) for row in deployment.status()] == [(f"hello-{n}", "5") for n in (1, 2, 3)]
    assert load.summary.failed == 0, load.summary.describe()
    assert deployment.releases()[-1]["status"] == "deployed"


def test_rollback_to_a_release_while_a_canary_is_out_drops_the_canary(deployment: Deployment, v2: LoadedRollout) -> None:
    target = [release for release in deployment.releases() if release["status"] == "deployed"][-1]["number"]
    canary = deployment.deploy(deployment.spec, "6", "--canary", "1")
    assert canary.returncode == 0, canary.stderr[-3000:]
    assert sorted(deployment.unit_pids()) == ["hello-1", "hello-2", "hello-3", "hello-4"]
    back = deployment.with_secrets("rollback", "hello", "--to", str(target), "--output", "json")
    assert back.returncode == 0, back.stderr[-3000:]
    assert back.result()["report"]["removed"] == ["hello-4"]
    assert [(row["instance"], row["version"]) for row in deployment.status()] == [(f"hello-{n}", "5") for n in (1, 2, 3)]
    assert sorted(deployment.unit_pids()) == ["hello-1", "hello-2", "hello-3"]
    *_, dropped, rolled_back = deployment.releases()
    assert (dropped["version"], dropped["status"]) == ("6", "reverted"), dropped
    assert (rolled_back["status"], rolled_back["note"]) == ("deployed", f"rollback to {target}"), rolled_back


# --- a start-first service: canary, promote, scale ------------------------------------------------

START_FIRST = "hello-sf"
START_FIRST_HOST = "hello-sf.example.test"


def test_a_start_first_service_promotes_each_instance_beside_its_old_one_then_scales(deployment: Deployment) -> None:
    """``update.order: start-first`` through promote and scale: each new instance starts beside the one it replaces."""
    spec = deployment.work / "hello-sf.yml"
    spec.write_text(
        example_spec("hello", {
            "name: hello": f"name: {START_FIRST}",
            "artifact: ./app": f"artifact: {REPO / 'examples/hello/app'}",
            "replicas: 3": "replicas: 2",
            "  port: 8080\n": "",  # a port of its own from the platform's range, beside hello's
            "hello.example.test": START_FIRST_HOST,
            "update: {maxParallel: 1, minHealthy: 3s, healthyDeadline: 60s}": (
                "update: {maxParallel: 1, minHealthy: 2s, healthyDeadline: 20s, order: start-first}"
            ),
        })
    )  # fmt: skip

    def versions() -> dict[str, str]:
        return {row["instance"]: row["version"] for row in deployment.status(START_FIRST)}

    first = deployment.moorage("deploy", str(spec), "--version", "1", "--output", "json")
    assert first.returncode == 0, first.stderr[-3000:]
    canary = deployment.moorage("deploy", str(spec), "--version", "2", "--canary", "1", "--output", "json")
    assert canary.returncode == 0, canary.stderr[-3000:]
    assert versions() == {f"{START_FIRST}-1": "1", f"{START_FIRST}-2": "1", f"{START_FIRST}-3": "2"}
    try:
        with deployment.load(START_FIRST_HOST) as load:
            promoted = deployment.moorage("promote", START_FIRST, "--output", "json")
        print(f"start-first promote of 2 instances: {load.summary.describe()}")
        assert promoted.returncode == 0, promoted.stderr[-3000:]
        assert load.summary.failed == 0, load.summary.describe()
        # Each instance of release 1 was replaced by one started beside it (its other identity), then the canary went.
        assert versions() == {f"{START_FIRST}-1b": "2", f"{START_FIRST}-2b": "2"}
        assert sorted(promoted.result()["report"]["removed"]) == [f"{START_FIRST}-1", f"{START_FIRST}-2", f"{START_FIRST}-3"]
        events = [(event["instance"], event["step"]) for event in promoted.events() if event.get("event") == "instance"]
        for index in (1, 2):
            beside, old = f"{START_FIRST}-{index}b", f"{START_FIRST}-{index}"
            assert events.index((beside, "routed")) < events.index((old, "drained")), events
        assert {answer.rsplit(" ", 1)[-1] for answer in deployment.answers(START_FIRST_HOST)} == {"2"}

        # scale adds an instance of the current release and leaves the running ones alone.
        before = {row["instance"]: row["port"] for row in deployment.status(START_FIRST)}
        scaled = deployment.moorage("scale", f"{START_FIRST}=3", "--output", "json")
        assert scaled.returncode == 0, scaled.stderr[-3000:]
        after = versions()
        assert len(after) == 3 and set(after.values()) == {"2"}, after
        assert {row["instance"]: row["port"] for row in deployment.status(START_FIRST) if row["instance"] in before} == before
    finally:
        removed = deployment.moorage("remove", START_FIRST, "--yes")
        assert removed.returncode == 0, removed.stderr[-3000:]


# --- the docker runtime -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_spec(deployment: Deployment) -> Path:
    """examples/hello-docker with its image built now (busybox from the lab's apt repository)."""
    directory = deployment.work / "hello-docker"
    directory.mkdir()
    spec = directory / "moorage.yml"
    spec.write_text((REPO / "examples/hello-docker/moorage.yml").read_text())
    subprocess.run(
        [sys.executable, str(REPO / "examples/hello-docker/build_image.py"), "-o", str(directory / "image.tar")],
        check=True,
        capture_output=True,
    )
    return spec


def test_docker_runtime_rolls_out_under_load_without_a_failed_request(deployment: Deployment, docker_spec: Path) -> None:
    first = deployment.moorage("deploy", str(docker_spec), "--version", "1", "--output", "json")
    assert first.returncode == 0, first.stderr[-3000:]
    docker_host = deployment.platform.lab.group("docker_hosts")[-1].name
    assert {row["host"] for row in deployment.status("hello-docker")} == {docker_host}
    containers = deployment.platform.lab.run(docker_host, "docker ps --format '{{.Names}} {{.Image}}'").stdout.split("\n")
    assert {"moorage-hello-docker-1 hello-busybox:1", "moorage-hello-docker-2 hello-busybox:1"} <= set(containers)
    with deployment.load(DOCKER_ROUTE_HOST) as load:
        second = deployment.moorage("deploy", str(docker_spec), "--version", "2", "--output", "json")
    assert second.returncode == 0, second.stderr[-3000:]
    assert load.summary.failed == 0, load.summary.describe()
    assert load.summary.sent >= 1000 and load.summary.versions["1"] > 0 and load.summary.versions["2"] > 0, load.summary.describe()
    assert all(answer.endswith("version 2") for answer in deployment.answers(DOCKER_ROUTE_HOST))


# --- bad input: one line, exit 2, nothing changed ----------------------------------------------


def bad_specs(deployment: Deployment) -> dict[str, tuple[str, str]]:
    """name -> (spec text, what the error line must name): a service of its own, hello-bad."""
    good = spec_text().replace("name: hello\n", "name: hello-bad\n")
    return {
        "missing artifact": (good.replace(str(REPO / "examples/hello/app"), str(deployment.work / "no-such-app")), "spec.artifact"),
        "unknown placement group": (good.replace("group: app", "group: no-such-group"), "no-such-group"),
        "replicas beyond maxPerHost": (good.replace("replicas: 3", "replicas: 9"), "maxPerHost 2"),
        "port already taken": (good.replace("port: 8080", "port: 8500").replace("replicas: 3", "replicas: 1"), "8500"),
    }


@pytest.mark.parametrize("case", ["missing artifact", "unknown placement group", "replicas beyond maxPerHost", "port already taken"])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(deployment: Deployment, v2: LoadedRollout, case: str) -> None:
    text, named = bad_specs(deployment)[case]
    spec = deployment.work / f"bad-{case.replace(' ', '-')}.yml"
    spec.write_text(text)
    status_before = deployment.status()
    run = deployment.with_secrets("deploy", str(spec), "--version", "bad")
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(run.error_lines()) == 1 and named in run.error_lines()[0], run.stderr
    assert "Traceback" not in run.stderr
    assert deployment.unknown("hello-bad")
    assert deployment.status() == status_before


def test_an_unreachable_host_is_one_line_exit_2_and_changes_nothing(deployment: Deployment, v2: LoadedRollout) -> None:
    inventory = deployment.work / "unreachable.yml"
    text = deployment.platform.lab.inventory.read_text()
    # A fifth app host that nothing answers for: loopback port 1.
    text = text.replace(
        "  hosts:\n    lab-1:\n", "  hosts:\n    ghost:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n    lab-1:\n", 1
    )
    text = text.replace("    app:\n      hosts:\n", "    app:\n      hosts:\n        ghost:\n", 1)
    inventory.write_text(text)
    releases_before = deployment.releases()
    # The platform's secrets belong to the lab's inventory file; with another inventory the user names the token.
    without_token = deployment.with_secrets("deploy", str(deployment.spec), "--version", "unreachable", "-i", str(inventory))
    assert without_token.returncode == 2 and "no Consul token" in without_token.error_lines()[0], without_token.stderr
    token = {"CONSUL_HTTP_TOKEN": deployment.platform.management_token}
    run = deployment.with_secrets("deploy", str(deployment.spec), "--version", "unreachable", "-i", str(inventory), env=token)
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(run.error_lines()) == 1 and "host ghost is unreachable" in run.error_lines()[0], run.stderr
    assert deployment.releases() == releases_before


# --- secrets never leak ------------------------------------------------------------------------


def test_the_secret_value_is_in_no_output_log_journal_or_artifact(deployment: Deployment, v2: LoadedRollout) -> None:
    assert len(deployment.runs) >= 10
    for run in deployment.runs:
        assert SECRET_VALUE not in run.stdout + run.stderr, f"moorage {' '.join(run.args)} printed the secret"
    artifacts = subprocess.run(["grep", "-rl", "-F", SECRET_VALUE, str(deployment.runs_dir)], capture_output=True, text=True)
    assert artifacts.returncode == 1, f"kept run directories hold the secret: {artifacts.stdout}"
    lab = deployment.platform.lab
    for host in lab.hosts:
        # Only the instances' own files (definitions, env files) hold the value: root's, 0600, under /etc/moorage/hello.
        holders = lab.run(host.name, f"grep -rlF {SECRET_VALUE} /etc /opt /tmp /var/tmp /root /run 2>/dev/null || true").stdout.split()
        modes = lab.run(host.name, f"stat -c '%a %U %n' {' '.join(holders)}").stdout.splitlines() if holders else []
        assert all(line.startswith("600 root /etc/moorage/hello/") for line in modes), f"{host.name}: {modes}"
        journal = lab.run(host.name, f"journalctl --no-pager -o cat | grep -c -F {SECRET_VALUE} || true").stdout.strip()
        assert journal == "0", f"{host.name}'s journal holds the secret {journal} time(s)"
        processes = lab.run(host.name, "ps -eo args").stdout
        assert SECRET_VALUE not in processes, f"{host.name}: a process's command line holds the secret"
    api = deployment.platform.consul_api(lab.group("consul_servers")[0].name)
    everything = requests.get(
        f"{api}/kv/", params={"recurse": "true"}, headers={"X-Consul-Token": deployment.platform.management_token}, timeout=10
    )
    values = [base64.b64decode(entry["Value"] or "").decode(errors="replace") for entry in everything.json()]
    assert values and not [value for value in values if SECRET_VALUE in value], "a Consul KV value holds the secret"
    logging_host = lab.group("logging")[0].name
    stored = lab.run(logging_host, f"grep -rl -F {SECRET_VALUE} /var/log/moorage || true").stdout.strip()
    assert stored == "", f"the logging host stored the secret in {stored}"


# --- the ops engineers' path: ansible-playbook playbooks/deploy.yml, the same agent code ----------------


def test_the_playbook_deploys_a_service_through_the_same_agent_and_a_second_run_changes_nothing(deployment: Deployment) -> None:
    """hello-ops (examples/hello renamed, its own port and route) deployed by hand with ansible-playbook, no moorage deploy."""
    from moorage import paths
    from moorage.lab.vault import password_file

    spec = deployment.work / "hello-ops.yml"
    spec.write_text(
        (REPO / "examples/hello/moorage.yml")
        .read_text()
        .replace("name: hello\n", "name: hello-ops\n")
        .replace("artifact: ./app", f"artifact: {REPO / 'examples/hello/app'}")
        .replace("port: 8080", "port: 8097")
        .replace("replicas: 3", "replicas: 2")
        .replace("hello.example.test", "hello-ops.example.test")
        .replace("minHealthy: 3s", "minHealthy: 1s")
    )
    rendered = deployment.work / "hello-ops-classic"
    inventory = str(deployment.platform.lab.inventory)
    render = deployment.moorage("render", str(spec), "--target", "classic", "--output-dir", str(rendered), "-i", inventory)
    assert render.returncode == 0, render.stderr
    [variables] = list(rendered.glob("*.yml"))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": paths.collections_search_path(), "ANSIBLE_HOST_KEY_CHECKING": "False"}

    def playbook() -> subprocess.CompletedProcess[str]:
        command = [
            str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(deployment.platform.lab.inventory),
            str(REPO / "playbooks/deploy.yml"), "-e", f"@{variables}", "-e", "moorage_release=1", "-e", "moorage_version=ops-1",
            "--vault-password-file", str(password_file(deployment.platform.lab.name)),
        ]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=REPO, check=False)

    first = playbook()
    assert first.returncode == 0, first.stdout[-4000:]
    answers = deployment.answers("hello-ops.example.test", count=20)
    assert all(answer.endswith("version ops-1") for answer in answers), answers
    second = playbook()
    assert second.returncode == 0, second.stdout[-4000:]
    recap = [line for line in second.stdout.splitlines() if " : ok=" in line]
    assert recap and all("changed=0" in line for line in recap), "\n".join(recap)
    assert deployment.platform.management_token not in first.stdout + second.stdout
