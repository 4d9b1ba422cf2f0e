"""A release left ``deploying`` by a command that died: shown as interrupted, recorded so by the next lock holder.

Against a real Consul dev agent (ACLs on). The dead command is played by writing a ``deploying``
record with nobody holding the lock, which is what a killed deploy leaves once its lock session
has expired (tests/e2e/test_faults.py kills a real one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import consul
import pytest
from consul_dev import ConsulDev
from release_samples import HOSTS, sample_release

from moorage.deploy.lock import DeployLock
from moorage.deploy.operations import open_session
from moorage.deploy.releases import ReleaseStore
from moorage.reporting import Reporter

MOORAGE = str(Path(sys.executable).parent / "moorage")


@pytest.fixture
def consul_env(agent: ConsulDev, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"CONSUL_HTTP_ADDR": agent.http_addr, "CONSUL_HTTP_TOKEN": agent.management_token or "", "MOORAGE_STATE_DIR": str(tmp_path)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.ini"
    path.write_text("[app]\n" + "".join(f"{host.name} ansible_host={host.address}\n" for host in HOSTS))
    return path


class Notes(Reporter):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def releases_shown(service: str, inventory: Path, env: dict[str, str]) -> list[dict[str, str]]:
    run = subprocess.run(
        [MOORAGE, "releases", service, "-i", str(inventory), "--output", "json"],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)["releases"]


def test_a_release_left_deploying_shows_as_interrupted_and_the_next_lock_holder_records_it(
    client: consul.Consul, consul_env: dict[str, str], inventory: Path
) -> None:
    store = ReleaseStore(client, "killed")
    store.create(sample_release(version="1"), "deployed")
    left = store.create(sample_release(version="2"), "deploying")

    # Nobody holds the lock: `moorage releases` shows it interrupted, and writes nothing.
    shown = releases_shown("killed", inventory, consul_env)
    assert [(r["number"], r["status"]) for r in shown] == [(1, "deployed"), (left.number, "interrupted")]
    assert shown[-1]["note"].startswith(f"left deploying by {left.by}, whose command stopped before finishing")
    assert store.get(left.number).status == "deploying"

    # While a command holds the lock, its release is deploying, as it says.
    with DeployLock(client, "killed", version="3", action="deploy"):
        assert releases_shown("killed", inventory, consul_env)[-1]["status"] == "deploying"

    # The next command that takes the lock records it, and says so.
    notes = Notes()
    session = open_session(inventory, reporter=notes)
    with session.locked(session.store("killed"), "3", "deploy"):
        assert store.get(left.number).status == "interrupted"
    assert store.get(left.number).note == shown[-1]["note"]
    assert notes.notes == [
        f"killed: release {left.number} (version 2) was left deploying by {left.by}, "
        "whose command stopped before finishing: recorded as interrupted"
    ]
    assert store.current() is not None and store.current().version == "1"  # still the newest deployed


def test_releases_of_other_statuses_are_shown_as_recorded(client: consul.Consul, consul_env: dict[str, str], inventory: Path) -> None:
    store = ReleaseStore(client, "calm")
    reverted = store.create(sample_release(version="1"), "deploying")
    store.mark(reverted, "reverted", note="health check never passed")
    shown = releases_shown("calm", inventory, consul_env)
    assert [(r["status"], r["note"]) for r in shown] == [("reverted", "health check never passed")]
