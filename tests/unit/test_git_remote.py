"""`moorage remote add | list | remove` and the pre-receive hook, with real git pushing to real bare repositories.

The CLI and the hook are the real ones (`moorage remote add` writes the hook, git runs it, it runs
`moorage remote receive`). Only the deploy the hook starts is a stub here: after `remote add`, the
tests point the recorded executable (`git config moorage.executable`) at a shell script that
records its arguments and the spec it was given, prints progress lines and exits with the status
the test chose (tests/git_remote_stub.py). A real deploy needs a lab; tests/e2e/test_git_push.py
and test_git_push_ssh.py push to the real thing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from git_remote_stub import MOORAGE, Setup, config, stub_setup


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return stub_setup(tmp_path)


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


# Runs its arguments with SIGINT's default action (a shell cannot undo an inherited "ignore", Python can).
WITH_DEFAULT_SIGINT = (
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])",
)


def test_ctrl_c_on_the_push_does_not_stop_the_deploy_halfway(setup: Setup) -> None:
    setup.add_remote()
    setup.use_stub(exit_code=0)
    (setup.stub_dir / "hold").touch()
    setup.commit("interrupted")
    # its own process group, as a terminal's foreground job: Ctrl-C is SIGINT to the whole group. Its
    # output goes to a file, not a pipe: the hook (still running, by design) holds the pipe's other end.
    with (setup.stub_dir / "push-output").open("w") as output:
        # Ctrl-C as at a terminal even when this suite runs in a background job (which ignores SIGINT, and so
        # would every child: the push then ran to its end with exit 0 in a CI run started with `&`).
        push = subprocess.Popen([*WITH_DEFAULT_SIGINT, "git", "-C", str(setup.clone), "push", str(setup.bare), "main"],
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
