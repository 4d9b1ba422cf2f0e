"""The shared end-to-end lab: four real systemd-nspawn machines, booted once per test session.

Use it by naming the ``lab`` fixture::

    @pytest.mark.e2e
    def test_something(lab):
        lab.inventory                      # Path of the Ansible inventory (hosts.yml)
        lab.hosts                          # [LabHost(name="lab-1", address="10.213.x.11", groups=(...)), ...]
        lab.group("docker_hosts")          # the hosts in one inventory group
        lab.run("lab-2", "systemctl is-active ssh")   # over SSH; raises unless exit 0 (check=False to inspect)

The lab is named ``moorage-test`` (``MOORAGE_TEST_LAB`` names another, so several checkouts can
run their suites side by side) and has 4 hosts (layout in docs/lab.md). The fixture sets
``MOORAGE_LAB`` to that name for the session, so ``moorage`` commands run without ``-i`` use it.
An already running lab of that name is reused (``lab up`` is idempotent); it is torn down at
the end of the session unless ``MOORAGE_KEEP_LAB=1``. Without root, systemd-nspawn or debootstrap
the fixture fails with the reason: an end-to-end test never silently skips.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from platform_cli import Platform, platform_up
from waiting import eventually

from moorage import lab as lab_api
from moorage.errors import MoorageError
from moorage.lab.ssh import run_remote
from moorage.lab.vault import password_file
from moorage.reporting import TextReporter
from moorage.vault import read_site_secrets

SESSION_LAB_NAME = os.environ.get("MOORAGE_TEST_LAB", "moorage-test")
SESSION_LAB_HOSTS = 4


@dataclass(frozen=True)
class LabHost:
    name: str  # inventory hostname, also the machine's hostname: lab-1, lab-2, ...
    address: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Lab:
    name: str
    inventory: Path
    ssh_key: Path
    hosts: list[LabHost]

    def host(self, name: str) -> LabHost:
        return next(host for host in self.hosts if host.name == name)

    def group(self, group: str) -> list[LabHost]:
        return [host for host in self.hosts if group in host.groups]

    def run(self, host: str, command: str, *, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a shell command on ``host`` as root over SSH; with ``check`` a non-zero exit fails the test."""
        result = run_remote(self.ssh_key, self.host(host).address, command, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"{host}: `{command}` exited {result.returncode}: {result.stderr.strip() or result.stdout.strip()}")
        return result


def bring_up(host_count: int) -> Lab:
    """``lab up`` for the lab named by MOORAGE_LAB, through the real code; a setup problem fails the test."""
    try:
        status = lab_api.up(host_count, TextReporter())
    except MoorageError as error:
        pytest.fail(f"the lab could not come up: {error}")
    return Lab(
        name=status.name,
        inventory=Path(status.inventory),
        ssh_key=Path(status.ssh_key),
        hosts=[LabHost(m.hostname, m.address, tuple(m.groups)) for m in status.machines],
    )


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    previous = os.environ.get("MOORAGE_LAB")
    os.environ["MOORAGE_LAB"] = SESSION_LAB_NAME
    try:
        yield bring_up(SESSION_LAB_HOSTS)
        if os.environ.get("MOORAGE_KEEP_LAB") != "1":
            lab_api.down()
    finally:
        if previous is None:
            os.environ.pop("MOORAGE_LAB", None)
        else:
            os.environ["MOORAGE_LAB"] = previous


# --- The converged platform (Consul, Prometheus, logging, NGINX ingress, Docker) on the session lab ---


@pytest.fixture(scope="session")
def platform(lab: Lab) -> Platform:
    """``moorage platform up`` once per session on the session lab (deploy tests reuse it)."""
    run = platform_up(lab.inventory)
    if run.returncode != 0:
        failures = run.result.get("failures")
        pytest.fail(f"moorage platform up failed (exit {run.returncode}): {run.error} {failures} {run.stderr.strip()[-2000:]}")
    return Platform(
        lab=lab,
        converge=run,
        management_token=read_site_secrets(lab.inventory, [password_file(lab.name)])["consul_bootstrap_token"],
    )


# --- Restoring the shared lab after a test that powers machines off or stops platform services ---


@pytest.fixture
def lab_restored(platform: Platform) -> Iterator[Platform]:
    """For a destructive test: afterwards the lab is as the platform left it, without rebuilding anything.

    Every machine powered off is started again (on its own disk), every host's Consul agent and each
    lb's NGINX and ingress watcher run, Consul has a leader and every host is an alive member.
    What a test deployed is the test's own business (it re-runs its deploy to converge).
    """
    yield platform
    restore(platform)


def restore(platform: Platform) -> None:
    lab = platform.lab
    status = lab_api.status()
    stopped = [machine.hostname for machine in status.machines if not machine.running] if status else []
    if stopped:
        try:
            lab_api.start(stopped)
        except MoorageError as error:
            pytest.fail(f"restoring the lab: `moorage lab start {' '.join(stopped)}` failed: {error}")
    for host in lab.hosts:
        lab.run(host.name, "systemctl start consul")
    for host in lab.group("lb"):
        lab.run(host.name, "systemctl start nginx moorage-ingress")
    eventually(platform.consul_settled, within=120, every=1, what="Consul with a leader, every host an alive member, every server healthy")
