"""The unit tests' harness for `moorage remote`: real git and a real hook, a stub in place of the deploy the hook starts.

After `remote add`, :meth:`Setup.use_stub` points the recorded executable (`git config
moorage.executable`) at a shell script that records its arguments and the spec it was given,
prints progress lines and exits with the status the test chose. Used by tests/unit/test_git_remote*.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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


def stub_setup(tmp_path: Path) -> Setup:
    """A developer's clone of examples/hello's app, an inventory, and where the remotes and the stub go."""
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
