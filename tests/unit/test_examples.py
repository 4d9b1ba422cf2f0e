"""Every example validates in a fresh clone once `make setup` has built what it needs.

A fresh clone is this checkout's tracked files copied to a new directory (nothing ignored, such
as a built image archive, comes along); the build is the Makefile's own `examples` rule, run there
with this checkout's virtualenv. hello-docker's image is built from busybox-static, downloaded
from this host's Debian mirror as `make setup` does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def fresh_clone(target: Path) -> Path:
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--", "examples", "Makefile", "pyproject.toml", "requirements.lock"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, tracked):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)
    return target


def validate(clone: Path, *specs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moorage", "validate", *specs], cwd=clone, capture_output=True, text=True, check=False)


def test_every_example_validates_in_a_fresh_clone_after_the_setup_builds(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path / "clone")
    specs = sorted(str(path.relative_to(clone)) for path in clone.glob("examples/*/moorage.yml"))
    assert specs == ["examples/hello-docker/moorage.yml", "examples/hello/moorage.yml", "examples/notes-api/moorage.yml"]
    before = validate(clone, "examples/hello-docker/moorage.yml")

    built = subprocess.run(
        ["make", "--no-print-directory", "-C", str(clone), "examples", f"BIN={REPO / '.venv/bin'}", "VENV_STAMP="],
        capture_output=True,
        text=True,
        check=False,
    )
    after = validate(clone, *specs)

    assert before.returncode == 2 and "spec.imageArchive: ./image.tar not found" in before.stderr  # what setup is for
    assert built.returncode == 0, built.stderr
    assert (after.returncode, after.stderr) == (0, ""), after.stderr
    assert after.stdout.splitlines() == [f"{spec}: ok" for spec in specs]
