"""`git push` over SSH deploys: a developer's clone pushes to the ssh:// URL `moorage remote add` printed.

A real OpenSSH server (Debian's sshd, tests/openssh_server.py) runs on this controller for the
module, on 127.0.0.1 and a free port, with its own host key and authorized key; the developer's
git reaches it with GIT_SSH_COMMAND naming the developer's key and a known_hosts file holding the
server's host key (checked, not skipped). `moorage remote add SERVICE --ssh-host USER@127.0.0.1:PORT`
prints the URL pushed to. The hook then runs in a fresh sshd session, as it does for a real
developer: none of the test's MOORAGE_LAB or ANSIBLE_VAULT_PASSWORD_FILE, sshd's own PATH. What its
deploy needs comes from the remote's recorded settings (the inventory; for a lab its password is
found from the inventory's path; for a real site the recorded vault password file).

Service ``sshpushed`` (port 8497, route ``sshpushed.example.test``, 2 instances) on the session
lab. The tests run in file order: a good commit is pushed over SSH and answers through NGINX; a
commit whose app fails its health check is rejected and the first keeps answering; the bad commit
reverted is pushed to the remote re-added for a copy of the lab's inventory (another site, its
vault password recorded) and answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from git_push_clone import Clone, Push, remote_add
from openssh_server import SshServer, openssh_server
from platform_cli import Platform

from moorage.lab.vault import password_file

pytestmark = pytest.mark.e2e

SERVICE = "sshpushed"
PORT = 8497
ROUTE_HOST = "sshpushed.example.test"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with openssh_server(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="module")
def clone(platform: Platform, sshd: SshServer, tmp_path_factory: pytest.TempPathFactory) -> Clone:
    work = tmp_path_factory.mktemp("git-push-ssh")
    remote = remote_add(SERVICE, work / "remotes", "-i", str(platform.lab.inventory), "--ssh-host", sshd.address)
    ssh_url = remote["urls"][1]
    assert ssh_url == f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{remote['path']}"
    lb = platform.lab.group("lb")[0].address
    made = Clone.made(lb, SERVICE, PORT, ROUTE_HOST, work / "app-repo", remote, ssh_url)
    made.push_env = {"GIT_SSH_COMMAND": sshd.ssh_command}
    return made


@pytest.fixture(scope="module")
def first_push(clone: Clone) -> Push:
    return clone.commit_and_push("First release over SSH")


def test_the_session_a_push_runs_in_has_none_of_the_developer_s_environment(platform: Platform, sshd: SshServer) -> None:
    assert os.environ.get("MOORAGE_LAB") == platform.lab.name  # this test's process has it...
    session = sshd.run("env")
    assert session.returncode == 0, session.stderr
    names = {line.split("=", 1)[0] for line in session.stdout.splitlines()}
    assert "SSH_CONNECTION" in names and not names & {"MOORAGE_LAB", "MOORAGE_STATE_DIR", "ANSIBLE_VAULT_PASSWORD_FILE", "VIRTUAL_ENV"}


def test_a_push_over_ssh_deploys_the_commit_and_it_answers_through_nginx(clone: Clone, first_push: Push) -> None:
    assert first_push.returncode == 0, first_push.output[-4000:]
    assert f"remote: moorage: deploying {SERVICE} version {first_push.short} ('First release over SSH') from main" in first_push.output
    assert f"remote: > batch 1/2: {SERVICE}-" in first_push.output  # the rollout's progress, over SSH to the pusher
    assert f"remote: moorage: {SERVICE} version {first_push.short} deployed" in first_push.output
    assert "* [new branch]      main -> main" in first_push.output
    assert clone.remote_branch() == first_push.commit
    answers = clone.answers()
    assert all(answer.endswith(f"version {first_push.short}") for answer in answers), answers
    newest = clone.releases()[-1]
    assert (newest["version"], newest["commit"], newest["status"]) == (first_push.short, first_push.commit, "deployed")


def test_a_push_over_ssh_that_fails_its_health_check_is_rejected_and_the_previous_version_keeps_answering(
    clone: Clone, first_push: Push
) -> None:
    assert first_push.returncode == 0, first_push.output[-4000:]
    clone.break_health_check()
    broken = clone.commit_and_push("Break the health check")
    assert broken.returncode != 0, broken.output[-4000:]
    assert "[remote rejected] main -> main (pre-receive hook declined)" in broken.output
    assert "remote: " in broken.output and "not healthy for 2s within 20s" in broken.output, broken.output[-4000:]
    assert f"the deploy of {SERVICE} version {broken.short} failed" in broken.output
    assert clone.remote_branch() == first_push.commit
    assert all(answer.endswith(f"version {first_push.short}") for answer in clone.answers())


def test_a_real_site_s_remote_records_its_vault_password_and_a_push_over_ssh_opens_the_site_s_secrets(
    platform: Platform, sshd: SshServer, clone: Clone, first_push: Push, tmp_path: Path
) -> None:
    """Another site: a copy of the lab's inventory directory, its secrets opened by a password file of the operator's."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy2(platform.lab.inventory, site / "hosts.yml")
    shutil.copytree(platform.lab.inventory.parent / "group_vars", site / "group_vars")
    password = tmp_path / "site-vault-password"
    shutil.copy2(password_file(platform.lab.name), password)
    operator = {**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(password)}  # as the operator's shell has it
    remote_add(SERVICE, clone.remote_path.parent, "-i", str(site), "--ssh-host", sshd.address, env=operator)
    recorded = subprocess.run(["git", f"--git-dir={clone.remote_path}", "config", "moorage.vaultPasswordFile"],
                              capture_output=True, text=True)  # fmt: skip
    assert recorded.stdout.strip() == str(password)
    clone.git("revert", "--no-edit", "HEAD")  # the developer undoes the bad commit
    fixed = clone.push()
    assert fixed.returncode == 0, fixed.output[-4000:]
    assert f"remote: moorage: {SERVICE} version {fixed.short} deployed" in fixed.output
    assert clone.remote_branch() == fixed.commit
    assert all(answer.endswith(f"version {fixed.short}") for answer in clone.answers())
