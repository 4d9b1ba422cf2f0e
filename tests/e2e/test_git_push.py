"""`git push` deploys, on the 4-host session lab: a developer's clone pushes to `moorage remote add`'s repository.

A git repository in a temporary directory holds examples/hello's app and a moorage.yml of its
own (service ``pushed``, port 8491, route ``pushed.example.test``). Everything is real: git runs
the pre-receive hook `moorage remote add` wrote, the hook runs the real `moorage deploy` (Ansible
over SSH, Consul, NGINX on the lab's lb host). The remote is reached by its local path: this
machine runs no sshd, so the ssh:// URL `remote add` prints is not pushed to here.

The tests run in file order: a good commit is pushed and answers; then a commit whose app fails
its health check is pushed under load and rejected while the first keeps answering.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from example_specs import example_spec
from http_load import HttpLoad
from platform_cli import Platform

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MOORAGE = str(Path(sys.executable).parent / "moorage")
SERVICE = "pushed"
ROUTE_HOST = "pushed.example.test"
PUSH_TIMEOUT = 1800
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Dev Eloper",
    "GIT_AUTHOR_EMAIL": "dev@example.test",
    "GIT_COMMITTER_NAME": "Dev Eloper",
    "GIT_COMMITTER_EMAIL": "dev@example.test",
}


def spec_text() -> str:
    """examples/hello/moorage.yml as service `pushed` on port 8491, two instances, quicker health gates."""
    return example_spec("hello", {
        "name: hello": f"name: {SERVICE}",
        "port: 8080": "port: 8491",
        "replicas: 3": "replicas: 2",
        "hello.example.test": ROUTE_HOST,
        "update: {maxParallel: 1, minHealthy: 3s, healthyDeadline: 60s}": "update: {maxParallel: 1, minHealthy: 2s, healthyDeadline: 20s}",
    })  # fmt: skip


@dataclass(frozen=True)
class Push:
    returncode: int
    output: str  # git's stderr: its own lines and the hook's, as "remote: ..."
    commit: str
    short: str


@dataclass
class Clone:
    """The developer's working copy, with the controller's repository added as the remote `lab`."""

    platform: Platform
    path: Path
    remote_path: Path

    @property
    def lb(self) -> str:
        return self.platform.lab.group("lb")[0].address

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", "-C", str(self.path), *args], capture_output=True, text=True, env={**os.environ, **GIT_IDENTITY})
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout.strip()

    def commit_and_push(self, subject: str) -> Push:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", subject)
        commit, short = self.git("rev-parse", "HEAD"), self.git("rev-parse", "--short", "HEAD")
        done = subprocess.run(["git", "-C", str(self.path), "push", "lab", "main"],
                              capture_output=True, text=True, env={**os.environ, **GIT_IDENTITY}, timeout=PUSH_TIMEOUT)  # fmt: skip
        print(done.stderr)  # what the pusher saw (pytest -s)
        return Push(done.returncode, done.stderr, commit, short)

    def remote_branch(self) -> str:
        done = subprocess.run(["git", f"--git-dir={self.remote_path}", "rev-parse", "refs/heads/main"], capture_output=True, text=True)
        return done.stdout.strip()

    def answers(self, count: int = 20) -> list[str]:
        return [requests.get(f"http://{self.lb}/", headers={"Host": ROUTE_HOST}, timeout=10).text.strip() for _ in range(count)]

    def releases(self) -> list[dict[str, object]]:
        done = subprocess.run([MOORAGE, "releases", SERVICE, "-o", "json"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        releases: list[dict[str, object]] = json.loads(done.stdout.strip().splitlines()[-1])["releases"]
        return releases


@pytest.fixture(scope="module")
def clone(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Clone:
    work = tmp_path_factory.mktemp("git-push")
    added = subprocess.run(
        [MOORAGE, "remote", "add", SERVICE, "--root", str(work / "remotes"), "-i", str(platform.lab.inventory), "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    remote = json.loads(added.stdout)
    local_url, ssh_url = remote["urls"]
    assert local_url.endswith(f"/{SERVICE}.git") and ssh_url.startswith("ssh://") and ssh_url.endswith(f"/{SERVICE}.git")
    path = work / "app-repo"
    path.mkdir()
    shutil.copytree(REPO / "examples/hello/app", path / "app")
    (path / "moorage.yml").write_text(spec_text())
    made = Clone(platform, path, Path(local_url))
    made.git("init", "-q", "--initial-branch=main")
    made.git("remote", "add", "lab", local_url)
    return made


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
    app = clone.path / "app" / "app.py"
    healthy = 'FAIL_HEALTH = os.environ.get("HELLO_FAIL_HEALTH") == "1"'
    assert healthy in app.read_text(), "examples/hello/app/app.py changed"
    app.write_text(app.read_text().replace(healthy, "FAIL_HEALTH = True  # a bug: /healthz always fails"))
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
