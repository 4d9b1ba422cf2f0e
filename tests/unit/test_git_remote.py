"""`moorage remote add | list | remove` and the pre-receive hook, with real git pushing to real bare repositories.

The CLI and the hook are the real ones (`moorage remote add` writes the hook, git runs it, it runs
`moorage remote receive`). Only the deploy the hook starts is a stub here: after `remote add`, the
tests point the recorded executable (`git config moorage.executable`) at a shell script that
records its arguments and the spec it was given, prints progress lines and exits with the status
the test chose. A real deploy needs a lab; tests/e2e/test_git_push.py pushes to the real thing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MOORAGE = str(Path(sys.executable).parent / "moorage")
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.test",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.test",
}

STUB = """#!/bin/sh
# Stands in for `moorage deploy` (the only stand-in; the hook itself is real).
here=$(dirname "$0")
printf '%s\\n' "$@" > "$here/deploy-args"
cp "$2" "$here/deployed-spec"
echo "stub deploy: step 1 of 2"
echo "stub deploy: step 2 of 2" >&2
while [ -e "$here/hold" ]; do sleep 0.1; done
echo "stub deploy: done"
touch "$here/finished"
exit "$(cat "$here/exit-code")"
"""


@dataclass
class Setup:
    tmp: Path
    root: Path  # --root of the remotes
    inventory: Path
    stub_dir: Path
    clone: Path  # the developer's working copy

    @property
    def bare(self) -> Path:
        return self.root / "pushed.git"

    def moorage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([MOORAGE, *args], capture_output=True, text=True, env=self.env(), check=False)

    def env(self) -> dict[str, str]:
        return {**os.environ, **GIT_IDENTITY, "MOORAGE_STATE_DIR": str(self.tmp / "state")}

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["git", "-C", str(self.clone), *args], capture_output=True, text=True, env=self.env(), check=False)
        if check:
            assert done.returncode == 0, f"git {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def add_remote(self, *extra: str) -> subprocess.CompletedProcess[str]:
        done = self.moorage("remote", "add", "pushed", "--root", str(self.root), "-i", str(self.inventory), *extra)
        assert done.returncode == 0, done.stderr
        return done

    def use_stub(self, exit_code: int = 0) -> None:
        stub = self.stub_dir / "moorage"
        stub.write_text(STUB)
        stub.chmod(0o755)
        (self.stub_dir / "exit-code").write_text(f"{exit_code}\n")
        subprocess.run(["git", f"--git-dir={self.bare}", "config", "moorage.executable", str(stub)], check=True)

    def commit(self, subject: str, *, name: str = "pushed") -> str:
        spec = (REPO / "examples/hello/moorage.yml").read_text().replace("name: hello", f"name: {name}")
        (self.clone / "moorage.yml").write_text(spec)
        (self.clone / "app" / "release.txt").write_text(subject + "\n")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", subject, "-m", "A body line that is not the subject.")
        return self.git("rev-parse", "HEAD").stdout.strip()

    def deployed_args(self) -> list[str]:
        return (self.stub_dir / "deploy-args").read_text().splitlines()

    def remote_ref(self, branch: str = "main") -> str | None:
        done = subprocess.run(["git", f"--git-dir={self.bare}", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                              capture_output=True, text=True, check=False)  # fmt: skip
        return done.stdout.strip() or None


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all: {hosts: {}}\n")
    clone = tmp_path / "app-repo"
    clone.mkdir()
    shutil.copytree(REPO / "examples/hello/app", clone / "app")
    made = Setup(tmp_path, tmp_path / "remotes", inventory, tmp_path / "stub", clone)
    made.stub_dir.mkdir()
    made.git("init", "-q", "--initial-branch=main")
    return made


def config(bare: Path, key: str) -> str:
    return subprocess.run(["git", f"--git-dir={bare}", "config", f"moorage.{key}"], capture_output=True, text=True).stdout.strip()


def test_add_makes_a_bare_repository_with_its_hook_and_prints_the_urls(setup: Setup) -> None:
    done = setup.add_remote()
    bare = setup.bare
    assert (bare / "HEAD").read_text().strip() == "ref: refs/heads/main"
    hook = bare / "hooks" / "pre-receive"
    assert os.access(hook, os.X_OK) and f"exec {MOORAGE} remote receive" in hook.read_text()
    assert config(bare, "inventory") == str(setup.inventory) and config(bare, "branch") == "main"
    assert config(bare, "spec") == "moorage.yml" and config(bare, "executable") == MOORAGE
    assert f"git remote add lab {bare}\n" in done.stdout
    assert "git remote add lab ssh://" in done.stdout and f"{bare}\n" in done.stdout.split("ssh://", 1)[1]
    listed = setup.moorage("remote", "list", "--root", str(setup.root), "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert '"service": "pushed"' in listed.stdout and str(bare) in listed.stdout


def test_add_again_keeps_the_history_and_rewrites_the_hook(setup: Setup) -> None:
    setup.add_remote()
    setup.use_stub()
    sha = setup.commit("first")
    setup.git("push", "-q", str(setup.bare), "main")
    (setup.bare / "hooks" / "pre-receive").write_text("#!/bin/sh\nexit 1\n")
    setup.add_remote("--branch", "release", "--spec", "deploy/moorage.yml")
    assert setup.remote_ref("main") == sha
    assert f"exec {MOORAGE} remote receive" in (setup.bare / "hooks" / "pre-receive").read_text()
    assert config(setup.bare, "branch") == "release" and config(setup.bare, "spec") == "deploy/moorage.yml"


def test_a_push_of_the_deploy_branch_deploys_its_commit_with_short_id_and_subject(setup: Setup) -> None:
    setup.add_remote()
    setup.use_stub(exit_code=0)
    sha = setup.commit("Say hello louder")
    push = setup.git("push", str(setup.bare), "main")
    short = setup.git("rev-parse", "--short", sha).stdout.strip()
    args = setup.deployed_args()
    assert args[0] == "deploy" and args[1].endswith("/moorage.yml")
    assert args[args.index("--version") + 1] == short
    assert args[args.index("--note") + 1] == "Say hello louder"
    assert args[args.index("--commit") + 1] == sha
    assert args[args.index("-i") + 1] == str(setup.inventory)
    assert "name: pushed" in (setup.stub_dir / "deployed-spec").read_text()
    # what the deploy printed reached the pusher, stdout and stderr, as git's "remote:" lines
    assert "remote: stub deploy: step 1 of 2" in push.stderr and "remote: stub deploy: step 2 of 2" in push.stderr
    assert f"remote: moorage: pushed version {short} deployed" in push.stderr
    assert setup.remote_ref("main") == sha


def test_a_push_of_another_branch_is_accepted_without_a_deploy(setup: Setup) -> None:
    setup.add_remote()
    setup.use_stub(exit_code=1)  # a deploy would reject the push
    setup.git("checkout", "-q", "-b", "feature")
    sha = setup.commit("work in progress")
    push = setup.git("push", str(setup.bare), "feature")
    assert "remote: moorage: refs/heads/feature: not the deploy branch (main): accepted, nothing deployed" in push.stderr
    assert not (setup.stub_dir / "deploy-args").exists()
    assert setup.remote_ref("feature") == sha


def test_a_failed_deploy_rejects_the_push_and_the_branch_stays(setup: Setup) -> None:
    setup.add_remote()
    setup.use_stub(exit_code=0)
    first = setup.commit("good")
    setup.git("push", "-q", str(setup.bare), "main")
    (setup.stub_dir / "exit-code").write_text("1\n")
    setup.commit("broken")
    push = setup.git("push", str(setup.bare), "main", check=False)
    assert push.returncode != 0
    assert "[remote rejected] main -> main (pre-receive hook declined)" in push.stderr
    assert "remote: moorage: error: the deploy of pushed version" in push.stderr and "failed (exit 1): push rejected" in push.stderr
    assert setup.remote_ref("main") == first


def test_a_push_without_the_spec_or_of_another_service_is_rejected_before_any_deploy(setup: Setup) -> None:
    setup.add_remote("--spec", "deploy/moorage.yml")
    setup.use_stub(exit_code=0)
    setup.commit("spec at the top")
    missing = setup.git("push", str(setup.bare), "main", check=False)
    assert missing.returncode != 0 and "no deploy/moorage.yml in the pushed commit" in missing.stderr, missing.stderr
    setup.add_remote()  # back to moorage.yml
    setup.use_stub(exit_code=0)
    setup.commit("the other service", name="other")
    other = setup.git("push", str(setup.bare), "main", check=False)
    assert other.returncode != 0 and "moorage.yml deploys service 'other', but this remote is 'pushed''s" in other.stderr, other.stderr
    assert not (setup.stub_dir / "deploy-args").exists() and setup.remote_ref("main") is None


def test_a_second_push_while_one_deploys_is_refused_naming_the_first(setup: Setup) -> None:
    setup.add_remote()
    setup.use_stub(exit_code=0)
    (setup.stub_dir / "hold").touch()  # the first deploy runs until the file goes
    first_sha = setup.commit("first")
    first = subprocess.Popen(["git", "-C", str(setup.clone), "push", str(setup.bare), "main"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=setup.env())  # fmt: skip
    try:
        args_file = setup.stub_dir / "deploy-args"
        for _ in range(300):
            if args_file.exists():
                break
            time.sleep(0.1)
        assert args_file.exists(), "the first push's deploy never started"
        other = setup.clone.parent / "other-clone"
        subprocess.run(["git", "clone", "-q", str(setup.clone), str(other)], check=True, env=setup.env())
        (other / "second.txt").write_text("second\n")
        subprocess.run(["git", "-C", str(other), "add", "-A"], check=True, env=setup.env())
        subprocess.run(["git", "-C", str(other), "commit", "-q", "-m", "second"], check=True, env=setup.env())
        second = subprocess.run(["git", "-C", str(other), "push", str(setup.bare), "main"],
                                capture_output=True, text=True, env=setup.env(), check=False)  # fmt: skip
    finally:
        (setup.stub_dir / "hold").unlink()
        _, first_err = first.communicate(timeout=60)
    short = setup.git("rev-parse", "--short", first_sha).stdout.strip()
    assert second.returncode != 0, second.stderr
    assert f"pushed: the push of {short} by " in second.stderr and "is deploying; this push is refused" in second.stderr, second.stderr
    assert first.returncode == 0, first_err
    assert setup.remote_ref("main") == first_sha


def wait_for(path: Path, what: str) -> None:
    for _ in range(600):
        if path.exists():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} never happened ({path} missing after 60 s)")


def test_ctrl_c_on_the_push_does_not_stop_the_deploy_halfway(setup: Setup) -> None:
    setup.add_remote()
    setup.use_stub(exit_code=0)
    (setup.stub_dir / "hold").touch()
    setup.commit("interrupted")
    # its own process group, as a terminal's foreground job: Ctrl-C is SIGINT to the whole group. Its
    # output goes to a file, not a pipe: the hook (still running, by design) holds the pipe's other end.
    with (setup.stub_dir / "push-output").open("w") as output:
        push = subprocess.Popen(["git", "-C", str(setup.clone), "push", str(setup.bare), "main"],
                                stdout=output, stderr=output, text=True, env=setup.env(), start_new_session=True)  # fmt: skip
    pushed = setup.git("rev-parse", "HEAD").stdout.strip()
    wait_for(setup.stub_dir / "deploy-args", "the push's deploy starting")
    os.killpg(push.pid, signal.SIGINT)
    time.sleep(1)
    (setup.stub_dir / "hold").unlink()  # the deploy may go on now: it was not stopped by the Ctrl-C
    push.wait(timeout=120)  # git may wait for its receive-pack, which waits for the hook
    assert push.returncode != 0
    wait_for(setup.stub_dir / "finished", "the deploy running to its end after the pusher left")
    # Whether git moved the branch depends on whether its receive-pack outlived the Ctrl-C; never half-way.
    assert setup.remote_ref("main") in (None, pushed)


def test_remove_deletes_the_repository(setup: Setup) -> None:
    setup.add_remote()
    done = setup.moorage("remote", "remove", "pushed", "--root", str(setup.root))
    assert done.returncode == 0, done.stderr
    assert not setup.bare.exists()
    again = setup.moorage("remote", "remove", "pushed", "--root", str(setup.root))
    assert again.returncode == 2 and "no remote for 'pushed'" in again.stderr


def test_add_refuses_a_bad_service_name_and_a_spec_outside_the_repository(setup: Setup) -> None:
    bad = setup.moorage("remote", "add", "Bad_Name", "--root", str(setup.root), "-i", str(setup.inventory))
    assert bad.returncode == 2 and "RFC 1123 label" in bad.stderr, bad.stderr
    outside = setup.moorage("remote", "add", "pushed", "--root", str(setup.root), "-i", str(setup.inventory), "--spec", "../x.yml")
    assert outside.returncode == 2 and "a path inside the repository" in outside.stderr, outside.stderr
    assert not setup.root.exists()
