"""`git push` deploys, on the 4-host session lab: a developer's clone pushes to `moorage remote add`'s repository.

A git repository in a temporary directory holds examples/hello's app and a moorage.yml of its
own (service ``pushed``, port 8491, route ``pushed.example.test``). Everything is real: git runs
the pre-receive hook `moorage remote add` wrote, the hook runs the real `moorage deploy` (Ansible
over SSH, Consul, NGINX on the lab's lb host). The remote is reached by its local path; the
ssh:// URL `remote add` prints is pushed to through a real sshd in tests/e2e/test_git_push_ssh.py.

The tests run in file order: a good commit is pushed and answers; then a commit whose app fails
its health check is pushed under load and rejected while the first keeps answering.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from git_push_clone import Clone, Push, remote_add
from http_load import HttpLoad
from platform_cli import Platform

pytestmark = pytest.mark.e2e

SERVICE = "pushed"
PORT = 8491
ROUTE_HOST = "pushed.example.test"


@pytest.fixture(scope="module")
def clone(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Clone:
    work = tmp_path_factory.mktemp("git-push")
    remote = remote_add(SERVICE, work / "remotes", "-i", str(platform.lab.inventory))
    local_url, ssh_url = remote["urls"]
    assert local_url.endswith(f"/{SERVICE}.git") and ssh_url.startswith("ssh://") and ssh_url.endswith(f"/{SERVICE}.git")
    assert Path(local_url) == Path(remote["path"])
    lb = platform.lab.group("lb")[0].address
    return Clone.made(lb, SERVICE, PORT, ROUTE_HOST, work / "app-repo", remote, local_url)


@pytest.fixture(scope="module")
def first_push(clone: Clone) -> Push:
    return clone.commit_and_push("First release of pushed")


def test_a_push_deploys_the_commit_and_it_answers_through_nginx(clone: Clone, first_push: Push) -> None:
    assert first_push.returncode == 0, first_push.output[-4000:]
    assert f"remote: moorage: deploying {SERVICE} version {first_push.short} ('First release of pushed') from main" in first_push.output
    assert f"remote: > batch 1/2: {SERVICE}-" in first_push.output  # the rollout's progress, streamed to the pusher
    assert f"remote: moorage: {SERVICE} version {first_push.short} deployed" in first_push.output
    assert clone.remote_branch() == first_push.commit
    answers = clone.answers()
    assert all(answer.endswith(f"version {first_push.short}") for answer in answers), answers


def test_releases_show_the_pushed_commit_and_its_subject(clone: Clone, first_push: Push) -> None:
    newest = clone.releases()[-1]
    assert (newest["version"], newest["commit"], newest["note"], newest["status"]) == (
        first_push.short, first_push.commit, "First release of pushed", "deployed",
    )  # fmt: skip


def test_a_push_whose_app_fails_its_health_check_is_rejected_and_the_previous_version_keeps_answering(
    clone: Clone, first_push: Push
) -> None:
    assert first_push.returncode == 0, first_push.output[-4000:]
    clone.break_health_check()
    with HttpLoad(clone.lb, ROUTE_HOST) as load:
        broken = clone.commit_and_push("Break the health check")
    assert broken.returncode != 0, broken.output[-4000:]
    assert "[remote rejected] main -> main (pre-receive hook declined)" in broken.output
    assert "not healthy for 2s within 20s" in broken.output, broken.output[-4000:]
    assert f"failing on purpose, version {broken.short}" in broken.output  # the health check's own answer
    assert f"the deploy of {SERVICE} version {broken.short} failed" in broken.output
    assert load.summary.failed == 0 and load.summary.sent >= 200, load.summary.describe()
    assert set(load.summary.versions) == {first_push.short}, load.summary.describe()
    assert clone.remote_branch() == first_push.commit
    assert all(answer.endswith(f"version {first_push.short}") for answer in clone.answers())
    newest = clone.releases()[-1]
    assert (newest["version"], newest["commit"], newest["status"]) == (broken.short, broken.commit, "reverted")
    assert str(newest["note"]).startswith("Break the health check")
