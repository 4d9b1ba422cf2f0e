"""Bringing NGINX to a rendered configuration: test the candidate, swap it in atomically, reload.

Only the configuration itself; the servers of each upstream go to NGINX's balancer without a
reload (``balancer.py``).

Like consul-template's ``manager/renderer.go`` (render, compare, atomic write), with a test first:
the candidate goes through ``nginx -t`` inside a full copy of the main config (whose one include
of the live file points at the candidate). A refused candidate is kept as ``OUTPUT.rejected``
and never swapped in; NGINX keeps serving the last good config. The same text is not tried
again until something changes it.

Every change of the live file happens under an exclusive lock on ``.OUTPUT.lock`` beside it: the
daemon and a ``--once`` run (the role's first run, or an operator's) may run at the same time,
and each then tests and swaps its own candidate in turn.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import logging
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .render import split_live

LOG = logging.getLogger("moorage-ingress")
COMMAND_TIMEOUT_SECONDS = 60


class Outcome(enum.Enum):
    UNCHANGED = "unchanged"
    APPLIED = "applied"
    REJECTED = "rejected"
    RELOAD_FAILED = "reload failed"
    FAILED = "failed"


@dataclass(frozen=True)
class ApplyOptions:
    output: Path  # the live file, included once by the main config
    nginx_main_config: Path
    nginx_command: tuple[str, ...]
    reload_command: tuple[str, ...]


class UnusableMainConfig(Exception):
    """The main config cannot be read or does not include the output exactly once."""


def candidate_main_config(options: ApplyOptions, candidate: Path) -> Path:
    """A copy of the main config, beside it, with the live include pointing at ``candidate``."""
    main = options.nginx_main_config
    try:
        text = main.read_text()
    except OSError as err:
        raise UnusableMainConfig(f"nginx_main_config: {err}") from err
    include = re.compile(rf"(\binclude\s+){re.escape(str(options.output))}(\s*;)")
    if len(include.findall(text)) != 1:
        raise UnusableMainConfig(f"{main} must have exactly one 'include {options.output};'")
    candidate_main = main.with_name(f".moorage-ingress-candidate-{main.name}")
    candidate_main.write_text(include.sub(lambda match: f"{match[1]}{candidate}{match[2]}", text))
    return candidate_main


def check_with_nginx(options: ApplyOptions, candidate: Path) -> tuple[bool, str]:
    """``nginx -t`` on a full main config that includes the candidate: (passed, nginx's words)."""
    candidate_main = candidate_main_config(options, candidate)
    try:
        result = subprocess.run(
            [*options.nginx_command, "-t", "-q", "-c", str(candidate_main)],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    finally:
        candidate_main.unlink(missing_ok=True)
    return result.returncode == 0, (result.stderr or result.stdout).strip()


def reload_nginx(options: ApplyOptions) -> tuple[bool, str]:
    result = subprocess.run(list(options.reload_command), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False)
    return result.returncode == 0, (result.stderr or result.stdout).strip()


def one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


class Applier:
    """Brings the live file to a rendered configuration; remembers the last text NGINX refused.

    The live file is the configuration, then the comments of the servers the balancer was fed
    (``render.backends_comment``): only a change of the configuration is tested and reloaded.
    """

    def __init__(self, options: ApplyOptions) -> None:
        self.options = options
        self.rejected_digest = ""

    def live_text(self) -> str | None:
        try:
            return self.options.output.read_text()
        except FileNotFoundError:
            return None

    def live_config(self) -> str | None:
        """The configuration part of the live file (None: no file)."""
        text = self.live_text()
        return None if text is None else split_live(text)[0]

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the lock on the live file (another process applying waits for it)."""
        output = self.options.output
        with open(output.with_name(f".{output.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def refused(self, config: str) -> bool:
        """Whether NGINX refused this very configuration last time (it is not tried again)."""
        return hashlib.sha256(config.encode()).hexdigest() == self.rejected_digest

    def apply(self, config: str, comment: str = "") -> Outcome:
        """Test, swap, reload. Raises OSError, SubprocessError or UnusableMainConfig when it cannot try."""
        with self.exclusive():
            return self._apply(config, comment)

    def _apply(self, config: str, comment: str) -> Outcome:
        if self.live_config() == config:
            self._note(comment)
            return Outcome.UNCHANGED
        if self.refused(config):
            return Outcome.REJECTED
        output = self.options.output
        candidate = output.with_name(f"{output.name}.candidate")
        candidate.write_text(joined(config, comment))
        passed, words = check_with_nginx(self.options, candidate)
        if not passed:
            rejected = output.with_name(f"{output.name}.rejected")
            os.replace(candidate, rejected)
            self.rejected_digest = hashlib.sha256(config.encode()).hexdigest()
            LOG.error("candidate refused by nginx -t, kept as %s; still serving the last good config: %s", rejected, one_line(words))
            return Outcome.REJECTED
        os.replace(candidate, output)
        reloaded, words = reload_nginx(self.options)
        if not reloaded:
            LOG.error("new config in place but the reload failed: %s", one_line(words))
            return Outcome.RELOAD_FAILED
        return Outcome.APPLIED

    def note(self, comment: str) -> None:
        """Rewrite the comment part of the live file (atomically, no reload) when it differs."""
        with self.exclusive():
            self._note(comment)

    def _note(self, comment: str) -> None:
        text = self.live_text()
        if text is None:
            return
        config, live_comment = split_live(text)
        if live_comment == comment:
            return
        output = self.options.output
        noted = output.with_name(f"{output.name}.noted")
        noted.write_text(joined(config, comment))
        os.replace(noted, output)


def joined(config: str, comment: str) -> str:
    return f"{config}\n{comment}" if comment else config
