"""One reporting protocol for the lab, the platform and the deploy: JSON Lines, text, or nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moorage.reporting import JsonLinesReporter, QuietReporter, TextReporter, reporter_for

ANSIBLE_EVENTS: list[dict[str, Any]] = [
    {"event": "playbook_on_play_start", "event_data": {"play": "Deploy"}},
    {"event": "playbook_on_task_start", "event_data": {"play": "Deploy", "task": "Start"}},
    {"event": "runner_on_ok", "event_data": {"host": "lab-1", "task": "Start", "res": {"changed": True, "env": "SECRET=1"}}},
    {"event": "runner_on_failed", "event_data": {"host": "lab-2", "task": "Start", "res": {"msg": "port taken", "stdout": "SECRET=1"}}},
    {"event": "runner_on_failed", "event_data": {"host": "lab-3", "task": "Probe", "ignore_errors": True, "res": {"msg": "no"}}},
    {"event": "verbose", "stdout": "noise"},
]


def report_everything(reporter: Any) -> None:
    with reporter:
        with reporter.step("bridge br0"):
            reporter.note("raised fs.inotify.max_user_instances")
        reporter.stage("batch 1/3: hello-1@lab-1 -> release 4")
        for event in ANSIBLE_EVENTS:
            reporter.ansible_event(event)


def test_json_lines_are_the_cli_events(capsys: pytest.CaptureFixture[str]) -> None:
    report_everything(JsonLinesReporter())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == {"event": "step", "step": "bridge br0", "status": "started"}
    assert lines[1] == {"event": "note", "message": "raised fs.inotify.max_user_instances"}
    assert lines[2]["event"] == "step" and lines[2]["status"] == "done" and lines[2]["seconds"] >= 0
    assert lines[3:] == [
        {"event": "deploy_step", "message": "batch 1/3: hello-1@lab-1 -> release 4"},
        {"event": "play", "play": "Deploy"},
        {"event": "task", "play": "Deploy", "task": "Start"},
        {"event": "host", "host": "lab-1", "task": "Start", "status": "changed"},
        {"event": "host", "host": "lab-2", "task": "Start", "status": "failed", "message": "port taken"},
        {"event": "host", "host": "lab-3", "task": "Probe", "status": "ok"},
    ]


def test_text_goes_to_stderr_with_failures_and_never_a_result(capsys: pytest.CaptureFixture[str]) -> None:
    report_everything(TextReporter())
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "✓ bridge br0" in captured.err and "  raised fs.inotify.max_user_instances" in captured.err
    assert "> batch 1/3: hello-1@lab-1 -> release 4" in captured.err
    assert "play Deploy" in captured.err and "failed lab-2: Start: port taken" in captured.err
    assert "SECRET" not in captured.err


def test_a_failed_step_gets_no_tick(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = TextReporter()
    with pytest.raises(RuntimeError), reporter, reporter.step("machines booted"):
        raise RuntimeError("boom")
    assert "✓" not in capsys.readouterr().err


def test_quiet_says_nothing_and_the_format_picks_the_rendering(capsys: pytest.CaptureFixture[str]) -> None:
    report_everything(QuietReporter())
    assert capsys.readouterr() == ("", "")
    assert isinstance(reporter_for("json"), JsonLinesReporter) and isinstance(reporter_for("text"), TextReporter)
