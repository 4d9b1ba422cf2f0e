"""A developer's clone that deploys by `git push`, for the end-to-end tests of `moorage remote add`.

The clone holds examples/hello's app and a moorage.yml of its own (a service name, port and route
of the test's); its remote `lab` is a URL that `moorage remote add` printed (the local path, or
the ssh:// URL with the git environment that reaches it). Used by tests/e2e/test_git_push.py and
tests/e2e/test_git_push_ssh.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from example_specs import example_spec

REPO = Path(__file__).resolve().parents[1]
MOORAGE = str(Path(sys.executable).parent / "moorage")
PUSH_TIMEOUT = 1800
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Dev Eloper",
    "GIT_AUTHOR_EMAIL": "dev@example.test",
    "GIT_COMMITTER_NAME": "Dev Eloper",
    "GIT_COMMITTER_EMAIL": "dev@example.test",
}
HEALTHY = 'FAIL_HEALTH = os.environ.get("HELLO_FAIL_HEALTH") == "1"'


def hello_spec(service: str, port: int, route_host: str) -> str:
    """examples/hello/moorage.yml as SERVICE on PORT behind ROUTE_HOST, two instances, quicker health gates."""
    return example_spec("hello", {
        "name: hello": f"name: {service}",
        "port: 8080": f"port: {port}",
        "replicas: 3": "replicas: 2",
        "hello.example.test": route_host,
        "update: {maxParallel: 1, minHealthy: 3s, healthyDeadline: 60s}": "update: {maxParallel: 1, minHealthy: 2s, healthyDeadline: 20s}",
    })  # fmt: skip


def remote_add(service: str, root: Path, *args: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``moorage remote add SERVICE --root ROOT ARGS -o json``: its document (path, urls, ...)."""
    command = [MOORAGE, "remote", "add", service, "--root", str(root), *args, "-o", "json"]
    added = subprocess.run(command, capture_output=True, text=True, timeout=300, env=None if env is None else dict(env))
    assert added.returncode == 0, added.stderr
    document: dict[str, Any] = json.loads(added.stdout)
    return document


@dataclass(frozen=True)
class Push:
    returncode: int
    output: str  # git's stderr: its own lines and the hook's, as "remote: ..."
    commit: str
    short: str


@dataclass
class Clone:
    """The developer's working copy, with the controller's repository added as the remote `lab`."""

    lb: str  # an lb host's address: the route answers there through NGINX
    service: str
    route_host: str
    path: Path
    remote_path: Path  # the bare repository on the controller, whatever the URL that reaches it
    push_env: dict[str, str] = field(default_factory=dict)  # e.g. GIT_SSH_COMMAND for an ssh:// URL

    @classmethod
    def made(cls, lb: str, service: str, port: int, route_host: str, where: Path, remote: dict[str, Any], url: str) -> Clone:
        """A new repository in WHERE with the app and its spec; `lab` is URL (one of ``remote``'s urls)."""
        where.mkdir()
        shutil.copytree(REPO / "examples/hello/app", where / "app")
        (where / "moorage.yml").write_text(hello_spec(service, port, route_host))
        clone = cls(lb, service, route_host, where, Path(remote["path"]))
        clone.git("init", "-q", "--initial-branch=main")
        clone.git("remote", "add", "lab", url)
        return clone

    def env(self) -> dict[str, str]:
        return {**os.environ, **GIT_IDENTITY, **self.push_env}

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", "-C", str(self.path), *args], capture_output=True, text=True, env=self.env())
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout.strip()

    def commit_and_push(self, subject: str) -> Push:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", subject)
        return self.push()

    def push(self) -> Push:
        """``git push lab main``: what the pusher saw and the commit pushed."""
        commit, short = self.git("rev-parse", "HEAD"), self.git("rev-parse", "--short", "HEAD")
        done = subprocess.run(["git", "-C", str(self.path), "push", "lab", "main"],
                              capture_output=True, text=True, env=self.env(), timeout=PUSH_TIMEOUT)  # fmt: skip
        print(done.stderr)  # what the pusher saw (pytest -s)
        return Push(done.returncode, done.stderr, commit, short)

    def break_health_check(self) -> None:
        """The app's /healthz always fails (a bug): a deploy of it must not pass its health gate."""
        app = self.path / "app" / "app.py"
        assert HEALTHY in app.read_text(), "examples/hello/app/app.py changed"
        app.write_text(app.read_text().replace(HEALTHY, "FAIL_HEALTH = True  # a bug: /healthz always fails"))

    def remote_branch(self) -> str:
        done = subprocess.run(["git", f"--git-dir={self.remote_path}", "rev-parse", "refs/heads/main"], capture_output=True, text=True)
        return done.stdout.strip()

    def answers(self, count: int = 20) -> list[str]:
        return [requests.get(f"http://{self.lb}/", headers={"Host": self.route_host}, timeout=10).text.strip() for _ in range(count)]

    def releases(self) -> list[dict[str, object]]:
        done = subprocess.run([MOORAGE, "releases", self.service, "-o", "json"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        releases: list[dict[str, object]] = json.loads(done.stdout.strip().splitlines()[-1])["releases"]
        return releases
