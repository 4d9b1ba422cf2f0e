"""The lab is reached as cloud images ship: a user with passwordless sudo, root's SSH login refused.

Every other end-to-end test (platform, deploys, `lab check`, drills) goes through that user and
Ansible's `become`; this file checks the door itself, after the platform converged on it (the
common role writes sshd's config too, and must not let root back in).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from platform_cli import Platform

from moorage.lab.ssh import SSH_OPTIONS

pytestmark = pytest.mark.e2e

MANAGED_SSHD_CONFIG = "/etc/ssh/sshd_config.d/moorage.conf"  # the common role's
MOORAGE = str(Path(shutil.which("moorage") or Path(__file__).parents[2] / ".venv/bin/moorage"))


def ssh_as(platform: Platform, user: str, address: str, *command: str) -> subprocess.CompletedProcess[str]:
    """``ssh USER@ADDRESS COMMAND`` with the lab's own key, in batch mode (no password prompt)."""
    argv = ["ssh", *SSH_OPTIONS, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-i", str(platform.lab.ssh_key)]
    return subprocess.run([*argv, f"{user}@{address}", *command], capture_output=True, text=True, timeout=60, check=False)


def test_root_is_refused_with_the_lab_key_and_the_lab_user_has_passwordless_sudo(platform: Platform) -> None:
    for host in platform.lab.hosts:
        as_root = ssh_as(platform, "root", host.address, "true")
        assert as_root.returncode == 255 and "Permission denied (publickey)." in as_root.stderr, (host.name, as_root.stderr)

        sudo = ssh_as(platform, "moorage", host.address, "sudo", "-n", "true")
        assert sudo.returncode == 0, (host.name, sudo.stderr)

        whoami = ssh_as(platform, "moorage", host.address, "id", "-un")
        assert whoami.stdout.strip() == "moorage", host.name  # without sudo, the login is no root


def test_the_converged_sshd_keeps_root_logins_off(platform: Platform) -> None:
    for host in platform.lab.hosts:
        config = platform.lab.run(host.name, "sshd -T").stdout.lower().splitlines()
        assert {"permitrootlogin no", "allowusers moorage"} <= set(config), host.name
        managed = platform.lab.run(host.name, f"stat -c '%U %a' {MANAGED_SSHD_CONFIG}; cat {MANAGED_SSHD_CONFIG}")
        owner, *content = managed.stdout.splitlines()
        assert owner == "root 644" and "PermitRootLogin no" in content, (host.name, managed.stdout)


def test_lab_ssh_commands_and_its_login_shell_run_as_root(platform: Platform) -> None:
    environment = {**os.environ, "MOORAGE_LAB": platform.lab.name}
    host = platform.lab.hosts[0].name
    command = subprocess.run([MOORAGE, "lab", "ssh", host, "--", "id", "-u"], capture_output=True, text=True, env=environment, timeout=60)
    assert (command.returncode, command.stdout) == (0, "0\n"), command.stderr

    # No command: root's login shell (here it reads its commands from stdin, no terminal).
    login = subprocess.run(
        [MOORAGE, "lab", "ssh", host], input='id -u; echo "$HOME"\n', capture_output=True, text=True, env=environment, timeout=60
    )
    assert (login.returncode, login.stdout.split()) == (0, ["0", "/root"]), login.stderr
