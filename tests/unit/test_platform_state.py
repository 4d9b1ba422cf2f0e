"""What a host's record of its last converge catches, and what the controller records from a converge.

The host side (moorage.agents.platform_state) runs here on real files, and through the real
module ``moorage.platform.platform_state`` under ansible-playbook (Debian's python3, as on the
hosts). The units part needs the lab's systemd: tests/e2e/test_platform.py stops a service there.
The controller side reads a converge's events: the event shapes below are ansible-runner's, as a
converge of the lab gave them (tests/e2e/test_platform.py records from the real ones).
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from ansible_local import run_tasks

from moorage.agents.platform_state import Watch, check, record
from moorage.platform_state import WatchRecorder, inputs_digest

INPUTS = "digest-of-the-inputs"


@pytest.fixture
def converged(tmp_path: Path) -> dict[str, Path]:
    """Files a converge wrote: a config (content counts), a file it only created, a directory."""
    config, created, directory = tmp_path / "consul.json", tmp_path / "ingress.conf", tmp_path / "conf.d"
    config.write_text('{"server": true}\n')
    created.write_text("# empty until the watcher renders\n")
    directory.mkdir(mode=0o755)
    return {"config": config, "created": created, "directory": directory, "stamp": tmp_path / "state" / "state.json"}


def watch_of(files: dict[str, Path]) -> Watch:
    return Watch(files={str(files["config"]): True, str(files["created"]): False, str(files["directory"]): False}, units=())


def test_a_host_that_holds_its_record_holds_it_and_the_record_is_0600(converged: dict[str, Path]) -> None:
    assert record(INPUTS, watch_of(converged), converged["stamp"]) is True
    assert stat.S_IMODE(converged["stamp"].stat().st_mode) == 0o600
    assert check(INPUTS, converged["stamp"]).holds
    assert record(INPUTS, watch_of(converged), converged["stamp"]) is False  # recorded already


@pytest.mark.parametrize(
    ("drift", "named"),
    [
        (lambda files: files["config"].write_text('{"server": false}\n'), "consul.json changed"),
        (lambda files: files["config"].chmod(0o666), "consul.json changed (file 666"),
        (lambda files: files["config"].unlink(), "consul.json changed (absent)"),
        (lambda files: files["created"].chmod(0o600), "ingress.conf changed (file 600"),
        (lambda files: files["directory"].rmdir(), "conf.d changed (absent)"),
    ],
    ids=["content", "mode", "removed", "created-file-mode", "directory-removed"],
)
def test_a_host_that_drifted_does_not_hold_its_record_and_says_which_file(converged: dict[str, Path], drift: Any, named: str) -> None:
    record(INPUTS, watch_of(converged), converged["stamp"])
    drift(converged)
    verdict = check(INPUTS, converged["stamp"])
    assert not verdict.holds
    assert named in verdict.reason


def test_the_content_of_a_file_the_converge_only_created_is_someone_elses(converged: dict[str, Path]) -> None:
    record(INPUTS, watch_of(converged), converged["stamp"])
    converged["created"].write_text("server { listen 80; }\n")  # the ingress watcher rendered routes
    assert check(INPUTS, converged["stamp"]).holds


def test_other_inputs_or_no_record_mean_converge(converged: dict[str, Path]) -> None:
    verdict = check(INPUTS, converged["stamp"])
    assert not verdict.holds and verdict.reason == "no record of a converge"
    record(INPUTS, watch_of(converged), converged["stamp"])
    verdict = check("other-inputs", converged["stamp"])
    assert not verdict.holds and "inventory changed" in verdict.reason


def test_the_module_records_and_compares_under_ansible_playbook(converged: dict[str, Path], tmp_path: Path) -> None:
    stamp = str(converged["stamp"])
    files = [{"path": str(converged["config"])}, {"path": str(converged["created"]), "content": False}]
    recorded, held = run_tasks(
        [
            {"moorage.platform.platform_state": {"inputs": INPUTS, "stamp": stamp, "record": {"files": files, "units": []}}},
            {"moorage.platform.platform_state": {"inputs": INPUTS, "stamp": stamp}},
        ],
        tmp_path,
    )
    assert recorded["changed"] is True and held == {**held, "changed": False, "holds": True, "reason": ""}
    converged["config"].write_text("edited by hand\n")
    (drifted,) = run_tasks([{"moorage.platform.platform_state": {"inputs": INPUTS, "stamp": stamp}}], tmp_path)
    assert drifted["holds"] is False and str(converged["config"]) in drifted["reason"]


# --- The controller: the inputs, and what a converge's events say it managed -------------------


def test_the_inputs_digest_follows_the_inventory_and_its_variables_not_its_neighbours(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all: {hosts: {lab-1: {}}}\n")
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    variables = tmp_path / "group_vars" / "all" / "site.yml"
    variables.write_text("nginx_ingress_listen: ['80']\n")
    (tmp_path / "machines").mkdir()
    first = inputs_digest(inventory)
    (tmp_path / "machines" / "lab-1.log").write_text("a machine's own file\n")
    assert inputs_digest(inventory) == first
    variables.write_text("nginx_ingress_listen: ['8080']\n")
    assert inputs_digest(inventory) != first
    variables.write_text("nginx_ingress_listen: ['80']\n")
    assert inputs_digest(inventory) == first
    inventory.write_text("all: {hosts: {lab-1: {}, lab-2: {}}}\n")
    assert inputs_digest(inventory) != first


def ok(host: str, action: str, res: dict[str, Any]) -> dict[str, Any]:
    return {"event": "runner_on_ok", "event_data": {"host": host, "task_action": action, "res": res}}


def args(**module_args: Any) -> dict[str, Any]:
    return {"module_args": module_args}


def test_the_recorder_takes_files_and_units_from_the_converge_s_own_results() -> None:
    recorder = WatchRecorder()
    nginx_conf, routes, routes_dir = "/etc/nginx/nginx.conf", "/etc/nginx/moorage/ingress.conf", "/etc/nginx/moorage"
    units = [{"name": name, "invocation": {"module_args": {"name": name, "state": "started"}}} for name in ("prometheus", "alertmanager")]
    events = [
        # an unchanged template reports the file module's arguments (with state)
        ok("lab-1", "ansible.builtin.template", {"dest": nginx_conf, "invocation": args(path=nginx_conf, force=False, state="file")}),
        # copy with force: false on a file that exists: the copy's own arguments, no state
        ok("lab-1", "ansible.builtin.copy", {"dest": routes, "invocation": args(dest=routes, force=False)}),
        ok("lab-1", "ansible.builtin.file", {"path": routes_dir, "invocation": args(path=routes_dir, state="directory")}),
        ok("lab-1", "ansible.builtin.lineinfile", {"invocation": args(path="/etc/default/prometheus", state="present")}),
        ok("lab-1", "ansible.builtin.systemd_service", {"results": units}),
        # done on the controller for this host: not this host's file
        ok("lab-1", "ansible.builtin.copy", {"dest": "/site/moorage.vault.yml", "_ansible_delegated_vars": {"ansible_host": "localhost"}}),
        ok("lab-2", "ansible.builtin.stat", {"invocation": args(path="/usr/local/lib/moorage/ingress/.package-1")}),
        ok("lab-2", "ansible.builtin.assert", {"msg": "All assertions passed"}),
        {"event": "runner_on_skipped", "event_data": {"host": "lab-2", "task_action": "ansible.builtin.copy", "res": {}}},
    ]
    for event in events:
        recorder.handle(event)
    assert recorder.records() == {
        "lab-1": {
            "files": [
                {"path": "/etc/default/prometheus", "content": True},
                {"path": "/etc/nginx/moorage", "content": False},
                {"path": "/etc/nginx/moorage/ingress.conf", "content": False},
                {"path": "/etc/nginx/nginx.conf", "content": True},
            ],
            "units": ["alertmanager", "prometheus"],
        },
        "lab-2": {"files": [{"path": "/usr/local/lib/moorage/ingress/.package-1", "content": True}], "units": []},
    }
