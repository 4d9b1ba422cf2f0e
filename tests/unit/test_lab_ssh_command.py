"""`moorage lab ssh HOST -- CMD ARG...`: each argument reaches the machine as given, like `kubectl exec`.

ssh joins the words after the host with spaces and the machine's login shell (root's: bash) splits
them again. Here that shell is run locally on the string ssh would send, which is all that happens
to it on the way; tests/e2e/test_lab_ssh.py runs the same through a real lab machine.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from moorage.lab.ssh import command_argv

KEY = Path("/lab/id_ed25519")
PRINT_ARGV = ["python3", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
HOSTILE_ARGUMENTS = [
    "a b",
    "  spaced  ",
    "",
    "it's",
    '"double"',
    "$HOME",
    "${PATH}",
    "$(id)",
    "`id`",
    "*",
    "~",
    "a;b",
    "a|b",
    "a && b",
    "#comment",
    "back\\slash",
    "line\nbreak",
    "tab\there",
    "-v",
    "--",
    "naïve ünïcode ✓",
]


def what_ssh_sends(argv: list[str]) -> str:
    """The remote command: ssh joins every argument after the host (and its ``--``) with spaces."""
    after_host = argv[argv.index("root@10.0.0.1") + 1 :]
    assert after_host[0] == "--"
    return " ".join(after_host[1:])


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_every_argument_reaches_the_program_as_given(shell: str) -> None:
    argv = command_argv(KEY, "10.0.0.1", [*PRINT_ARGV, *HOSTILE_ARGUMENTS])

    remote = subprocess.run([shell, "-c", what_ssh_sends(argv)], capture_output=True, text=True, check=True)

    assert json.loads(remote.stdout) == HOSTILE_ARGUMENTS


def test_the_reviewed_example_prints_its_text_with_the_space() -> None:
    argv = command_argv(KEY, "10.0.0.1", ["python3", "-c", 'print("a b")'])

    remote = subprocess.run(["bash", "-c", what_ssh_sends(argv)], capture_output=True, text=True, check=True)

    assert remote.stdout == "a b\n"


def test_ssh_runs_in_batch_mode_with_the_lab_key_and_reads_no_argument_as_its_option() -> None:
    argv = command_argv(KEY, "10.0.0.1", ["-v"])

    assert argv[0] == "ssh" and argv[argv.index("-i") + 1] == str(KEY) and "BatchMode=yes" in argv
    assert argv[-3:] == ["root@10.0.0.1", "--", "-v"]


def test_without_a_command_it_is_an_interactive_login() -> None:
    argv = command_argv(KEY, "10.0.0.1", [])

    assert argv[-1] == "root@10.0.0.1" and "-t" in argv and "BatchMode=yes" not in argv
