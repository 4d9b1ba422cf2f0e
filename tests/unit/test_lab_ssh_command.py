"""`moorage lab ssh HOST -- CMD ARG...`: each argument reaches the machine as given, like `kubectl exec`.

ssh joins the words after the host with spaces and the login shell of the lab's user (bash) splits
them again; that line runs the command as root through `sudo -n`. Here the shell is run locally on
the string ssh would send, with a `sudo` that only drops its `-n`, which is all that happens to it
on the way; tests/e2e/test_lab_ssh.py runs the same through a real lab machine.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from moorage.lab.ssh import command_argv

KEY = Path("/lab/id_ed25519")
LOGIN = "moorage@10.0.0.1"
# sudo as the machine's is for the lab user (passwordless): the command, run as given.
SUDO = '#!/bin/sh\n[ "$1 $2" = "-n --" ] || { echo "sudo without -n --" >&2; exit 1; }\nshift 2\nexec "$@"\n'
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
    after_host = argv[argv.index(LOGIN) + 1 :]
    assert after_host[0] == "--"
    return " ".join(after_host[1:])


@pytest.fixture
def sudo_path(tmp_path: Path) -> str:
    """PATH with a ``sudo`` first that runs the command as given (it insists on ``-n``, as the lab's must)."""
    sudo = tmp_path / "sudo"
    sudo.write_text(SUDO)
    sudo.chmod(0o755)
    return f"{tmp_path}:{os.environ.get('PATH', '/usr/bin:/bin')}"


def run_as_the_machine(shell: str, argv: list[str], path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shell, "-c", what_ssh_sends(argv)], capture_output=True, text=True, check=True, env={**os.environ, "PATH": path})


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_every_argument_reaches_the_program_as_given(shell: str, sudo_path: str) -> None:
    argv = command_argv(KEY, "10.0.0.1", [*PRINT_ARGV, *HOSTILE_ARGUMENTS])

    remote = run_as_the_machine(shell, argv, sudo_path)

    assert json.loads(remote.stdout) == HOSTILE_ARGUMENTS


def test_the_reviewed_example_prints_its_text_with_the_space(sudo_path: str) -> None:
    argv = command_argv(KEY, "10.0.0.1", ["python3", "-c", 'print("a b")'])

    remote = run_as_the_machine("bash", argv, sudo_path)

    assert remote.stdout == "a b\n"


def test_the_command_runs_as_root_through_sudo_when_the_login_is_not_root() -> None:
    sent = what_ssh_sends(command_argv(KEY, "10.0.0.1", ["id", "-u"]))

    assert "exec sudo -n -- id -u" in sent


def test_ssh_runs_in_batch_mode_with_the_lab_key_and_reads_no_argument_as_its_option() -> None:
    argv = command_argv(KEY, "10.0.0.1", ["-v"])

    assert argv[0] == "ssh" and argv[argv.index("-i") + 1] == str(KEY) and "BatchMode=yes" in argv
    assert argv[-3:-1] == [LOGIN, "--"] and argv[-1].endswith("exec sudo -n -- -v; fi")


def test_without_a_command_it_is_an_interactive_root_login() -> None:
    argv = command_argv(KEY, "10.0.0.1", [])

    assert argv[-3:] == [LOGIN, "--", "exec sudo -i"] and "-t" in argv and "BatchMode=yes" not in argv
