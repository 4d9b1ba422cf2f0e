"""The deploy's SSH runs feed the agent's parameters on stdin (moorage.deploy.remote): an ssh that exits
before reading them (an unreachable host) must fail that host's run, never kill the command.

The CLI gives SIGPIPE its default action (so `moorage logs -f | head` ends quietly), under which a
write to a closed pipe kills the process; each case runs in a process of its own for that reason.
"""

from __future__ import annotations

import subprocess
import sys

SETUP = """
import os, signal, threading
from moorage.deploy.remote import _feed
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as moorage.cli sets it
read, write = os.pipe()
os.close(read)  # the ssh went away without reading
pipe = os.fdopen(write, "wb")
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SETUP + code], capture_output=True, text=True, timeout=60)


def test_feeding_an_ssh_that_went_away_leaves_the_command_alive() -> None:
    done = run("thread = threading.Thread(target=_feed, args=(pipe, b'x' * 100000)); thread.start(); thread.join(); print('alive')")
    assert (done.returncode, done.stdout.strip()) == (0, "alive"), done.stderr


def test_the_control_a_plain_write_there_is_killed_by_sigpipe() -> None:
    done = run("pipe.write(b'x' * 100000); pipe.flush(); print('alive')")
    assert done.returncode == -13 and "alive" not in done.stdout
