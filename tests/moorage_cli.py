"""The real `moorage` CLI as end-to-end tests run it: to completion, or in the background (to be killed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MOORAGE = str(Path(sys.executable).parent / "moorage")


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    def result(self) -> dict[str, Any]:
        """The last JSON line of ``--output json`` (the result event, or the error document)."""
        return json.loads(self.stdout.strip().splitlines()[-1])

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def error_lines(self) -> list[str]:
        """The CLI's error lines (``moorage: error: ...`` or a spec's ``FILE:LINE:COL: error: ...``), not progress."""
        return [line for line in self.stderr.splitlines() if re.match(r"\S.*\berror: ", line)]

    def describe(self) -> str:
        return (
            f"moorage {' '.join(self.args)} exited {self.returncode} after {self.seconds:.0f}s: {self.stdout[-2000:]}{self.stderr[-2000:]}"
        )


def moorage(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> Run:
    started = time.monotonic()
    completed = subprocess.run([MOORAGE, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return Run(tuple(args), completed.returncode, completed.stdout, completed.stderr, time.monotonic() - started)


@dataclass
class Background:
    """A `moorage` command running in the background, e.g. to be killed mid-way."""

    args: tuple[str, ...]
    process: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls, *args: str, env: dict[str, str] | None = None) -> Background:
        process = subprocess.Popen(
            [MOORAGE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        return cls(tuple(args), process)

    def finish(self, timeout: float = 900) -> Run:
        stdout, stderr = self.process.communicate(timeout=timeout)
        return Run(self.args, self.process.returncode, stdout, stderr, time.monotonic() - self.started)
