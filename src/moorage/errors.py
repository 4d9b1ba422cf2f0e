"""Errors the CLI turns into one line and a stable exit status (0 ok, 1 failed, 2 bad input, 3 locked)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_LOCKED = 3


class MoorageError(Exception):
    """Something went wrong while doing the work: exit 1."""

    exit_code = EXIT_FAILED


class BadInput(MoorageError):
    """The user's input (spec, inventory, arguments) is wrong; nothing was touched: exit 2."""

    exit_code = EXIT_BAD_INPUT


class Locked(MoorageError):
    """Someone else holds the lock: exit 3."""

    exit_code = EXIT_LOCKED
