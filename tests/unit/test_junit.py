"""`moorage deploy --junit FILE`: the rollout's steps as a JUnit report, read back with junitparser as a CI server would.

The writer on typed step records; then the real CLI, run without a terminal (stdin closed), against a
real Consul dev agent: a deploy that stops before its rollout (a bad spec, a host that refuses SSH)
still writes a report with one failed case naming the reason, and exits with its stable status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from consul_dev import ConsulDev
from junitparser import Failure, JUnitXml, Skipped, TestSuite
from release_samples import HELLO_SPEC, sample_release

from moorage.deploy.agent import HostRun, Progress
from moorage.deploy.remote import Connections
from moorage.deploy.rollout import DeployContext, record_gates
from moorage.deploy.steps import StepLog, StepResult, command_failed
from moorage.errors import EXIT_BAD_INPUT, BadInput
from moorage.inventory import Inventory
from moorage.junit import write_junit
from moorage.reporting import JsonLinesReporter, QuietReporter

MOORAGE = str(Path(sys.executable).parent / "moorage")

ROLLOUT = [
    StepResult("preflight", "preflight: release 5 on lab-1, lab-2", "passed", 0.8, "hello"),
    StepResult("ship", "ship: release 5 to lab-1, lab-2", "passed", 1.2, "hello"),
    StepResult("gate", "health gate: hello-1@lab-1 release 5 (healthy for 2s)", "passed", 2.1, "hello"),
    StepResult("batch", "batch 1/3: hello-1@lab-1 -> release 5", "passed", 3.5, "hello"),
    StepResult(
        "gate",
        "health gate: hello-2@lab-2 release 5 (healthy for 2s)",
        "failed",
        20.0,
        "hello",
        "hello-2 on lab-2 failed release 5: not healthy within 20s: GET /healthz: 500 | last log lines: \x1b[31mboom\x1b[0m",
    ),
    StepResult("batch", "batch 2/3: hello-2@lab-2 -> release 5", "failed", 21.0, "hello", "lab-2: hello-2 on lab-2 failed release 5"),
    StepResult("batch", "batch 3/3: hello-3@lab-1 -> release 5", "skipped", 0.0, "hello", "not started: batch 2/3 failed"),
    StepResult("revert", "auto-revert: hello-1 -> release 4", "passed", 4.0, "hello"),
]


def read_suite(path: Path) -> TestSuite:
    report = JUnitXml.fromfile(str(path))
    suites = list(report)
    assert len(suites) == 1, suites
    return suites[0]


def test_a_failed_rollout_reads_back_as_cases_per_batch_and_gate(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "deploy.xml"
    when = datetime(2026, 12, 3, 14, 0, 0, tzinfo=UTC)
    write_junit(path, "moorage deploy hello", ROLLOUT, properties={"release": "5", "exit_code": "1"}, timestamp=when)
    suite = read_suite(path)
    assert suite.name == "moorage deploy hello"
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (8, 2, 0, 1)
    assert suite.timestamp == "2026-12-03T14:00:00"
    assert {prop.name: prop.value for prop in suite.properties()} == {"release": "5", "exit_code": "1"}
    cases = {case.name: case for case in suite}
    assert list(cases) == [result.name for result in ROLLOUT]
    batch1 = cases["batch 1/3: hello-1@lab-1 -> release 5"]
    assert batch1.is_passed and batch1.classname == "moorage.deploy.hello.batch" and batch1.time == pytest.approx(3.5)
    gate = cases["health gate: hello-2@lab-2 release 5 (healthy for 2s)"]
    (failure,) = gate.result
    assert isinstance(failure, Failure) and failure.type == "gate"
    assert failure.message.startswith("hello-2 on lab-2 failed release 5: not healthy within 20s")
    assert "\x1b" not in failure.message and "boom" in failure.message  # a terminal's escape codes are not XML
    (skipped,) = cases["batch 3/3: hello-3@lab-1 -> release 5"].result
    assert isinstance(skipped, Skipped) and skipped.message == "not started: batch 2/3 failed"
    assert cases["auto-revert: hello-1 -> release 4"].is_passed


def test_a_rewrite_replaces_the_report_whole(tmp_path: Path) -> None:
    path = tmp_path / "deploy.xml"
    write_junit(path, "moorage deploy hello", ROLLOUT)
    write_junit(path, "moorage deploy hello", ROLLOUT[:1])
    assert read_suite(path).tests == 1
    assert sorted(item.name for item in tmp_path.iterdir()) == ["deploy.xml"]  # no temporary file left


def test_a_command_that_failed_before_any_step_is_one_failed_case(tmp_path: Path) -> None:
    path = tmp_path / "deploy.xml"
    write_junit(path, "moorage deploy app.yml", [command_failed("moorage deploy app.yml", BadInput("host lab-9 is unreachable"))])
    (case,) = list(read_suite(path))
    assert case.classname == "moorage.deploy.deploy" and case.name == "moorage deploy app.yml"
    (failure,) = case.result
    assert failure.type == "BadInput" and failure.message == "host lab-9 is unreachable"


def test_each_finished_step_is_a_json_event(capsys: pytest.CaptureFixture[str]) -> None:
    log = StepLog(JsonLinesReporter())
    with log.timed("ship", "ship: release 5 to lab-1", "hello"):
        pass
    with pytest.raises(BadInput), log.timed("preflight", "preflight: release 6 on lab-1", "hello"):
        raise BadInput("lab-1: port 8080 is taken")
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(event["event"], event["kind"], event["status"]) for event in events] == [
        ("deploy_step_done", "ship", "passed"),
        ("deploy_step_done", "preflight", "failed"),
    ]
    assert events[1]["message"] == "lab-1: port 8080 is taken" and "message" not in events[0]
    assert [result.error_type for result in log.results] == ["", "BadInput"]


# --- the CLI, without a terminal ----------------------------------------------------------------


def deploy(agent: ConsulDev, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CONSUL_HTTP_ADDR": agent.http_addr,
        "CONSUL_HTTP_TOKEN": agent.management_token or "",
        "MOORAGE_STATE_DIR": str(tmp_path / "state"),
    }
    env.pop("MOORAGE_LAB", None)
    return subprocess.run(
        [MOORAGE, "deploy", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120, start_new_session=True
    )


def test_a_bad_spec_exits_2_and_its_report_names_the_problem(agent: ConsulDev, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[app]\napp1 ansible_host=127.0.0.1\n")
    spec = tmp_path / "app.yml"
    spec.write_text(HELLO_SPEC.read_text().replace("replicas: 3", "replicas: three"))
    report = tmp_path / "out" / "deploy.xml"
    run = deploy(agent, tmp_path, str(spec), "-i", str(inventory), "--junit", str(report))
    assert run.returncode == EXIT_BAD_INPUT, run.stderr
    (case,) = list(read_suite(report))
    (failure,) = case.result
    assert isinstance(failure, Failure) and failure.type == "SpecInvalid"
    assert failure.message.startswith(f"{spec}:") and "spec.replicas" in failure.message, failure.message
    assert {prop.name: prop.value for prop in read_suite(report).properties()}["exit_code"] == "2"


def test_a_host_that_refuses_ssh_fails_the_preflight_case_exit_2(agent: ConsulDev, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[app]\napp1 ansible_host=127.0.0.1 ansible_port=1 ansible_user=nobody\n")
    spec = tmp_path / "hello.yml"
    spec.write_text(
        HELLO_SPEC.read_text().replace("artifact: ./app", f"artifact: {HELLO_SPEC.parent / 'app'}").replace("replicas: 3", "replicas: 1")
    )
    report = tmp_path / "deploy.xml"
    run = deploy(agent, tmp_path, str(spec), "-i", str(inventory), "--version", "1", "--junit", str(report), "--output", "json")
    assert run.returncode == EXIT_BAD_INPUT, run.stdout + run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["error"].startswith("host app1 is unreachable")
    suite = read_suite(report)
    assert suite.name == "moorage deploy hello"
    (case,) = list(suite)
    assert case.classname == "moorage.deploy.hello.preflight" and case.name == "preflight: release 1 on app1"
    (failure,) = case.result
    assert failure.type == "BadInput" and failure.message.startswith("host app1 is unreachable")


def test_a_gate_runs_from_the_instances_start_to_its_failure_not_to_the_agents_revert(tmp_path: Path) -> None:
    release = sample_release("2", number=5)
    inventory = Inventory(tmp_path / "hosts.ini", {}, {})
    context = DeployContext(inventory, QuietReporter(), Connections(inventory), "token")
    first = release.plan.instances[0]
    failed = "hello-1 on app1 failed release 5: hello-1: not healthy for 3s within 60s (last check: 500)"
    run = HostRun(
        first.host,
        document={"ok": False, "instances": [{"instance": first.id, "ok": False, "changed": True, "release": 5, "message": failed}]},
        progress=[
            Progress(first.id, "stopped", 0.4),
            Progress(first.id, "started", 0.7),
            Progress(first.id, "failed", 60.7),
            Progress(first.id, "reverting", None),
            Progress(first.id, "started", 0.5),  # the previous release, started again by the agent
            Progress(first.id, "healthy", 3.5),
        ],
    )
    record_gates(context, release, [first], {first.host: run})
    (gate,) = context.steps.results
    assert gate.kind == "gate" and gate.status == "failed" and gate.message == failed
    assert gate.name == f"health gate: {first.id}@{first.host} release 5 (healthy for 3s)"
    assert gate.seconds == pytest.approx(60.0)
