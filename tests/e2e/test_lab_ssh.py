"""`moorage lab ssh HOST -- CMD ARG...` on a real lab machine: each argument arrives as given.

The command used to reach the machine's shell re-split: `-- python3 -c 'print("a b")'` failed there
with a syntax error. (tests/unit/test_lab_ssh_command.py checks the quoting itself.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

Lab = Any  # the session `lab` fixture (tests/e2e/conftest.py)

MOORAGE = str(Path(shutil.which("moorage") or Path(__file__).parents[2] / ".venv/bin/moorage"))


def lab_ssh(lab: Lab, host: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MOORAGE, "lab", "ssh", host, "--", *command],
        capture_output=True,
        text=True,
        env={**os.environ, "MOORAGE_LAB": lab.name},
        timeout=60,
        check=False,
    )


def test_a_program_gets_each_argument_as_given(lab: Lab) -> None:
    arguments = ["a b", "", "it's", '"double"', "$HOME", "$(id)", "*", "a;b", "line\nbreak", "-v", "naïve ✓"]

    result = lab_ssh(lab, lab.hosts[0].name, "python3", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *arguments)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == arguments


def test_the_reviewed_example_prints_its_text_and_exit_codes_come_back(lab: Lab) -> None:
    printed = lab_ssh(lab, lab.hosts[0].name, "python3", "-c", 'print("a b")')
    failed = lab_ssh(lab, lab.hosts[0].name, "sh", "-c", "exit 7")

    assert (printed.returncode, printed.stdout) == (0, "a b\n")
    assert failed.returncode == 7
