"""Errors the CLI turns into one line and a stable exit status (0 ok, 1 failed, 2 bad input, 3 locked).

``moorage plan`` alone also exits 4: changes pending (like ``terraform plan -detailed-exitcode``).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_LOCKED = 3
EXIT_CHANGES_PENDING = 4  # moorage plan: a deploy would change something


class MoorageError(Exception):
    """Something went wrong while doing the work: exit 1."""

    exit_code = EXIT_FAILED

    def report_lines(self) -> list[str]:
        """What a person reads on stderr."""
        return [f"moorage: error: {self}"]

    def as_json(self) -> dict[str, object]:
        """What a machine reads on stdout with ``--output json``."""
        return {"ok": False, "error": str(self), "exit_code": self.exit_code}


class BadInput(MoorageError):
    """The user's input (spec, inventory, arguments) is wrong; nothing was touched: exit 2."""

    exit_code = EXIT_BAD_INPUT


class Locked(MoorageError):
    """Someone else holds the lock: exit 3."""

    exit_code = EXIT_LOCKED
