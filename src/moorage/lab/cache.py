"""Build-once artefacts under ``cache_root()``: keyed by their inputs, built aside, swapped in whole."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from moorage.state_paths import cache_root


def input_key(inputs: dict[str, object]) -> str:
    """A short stable hash of everything that goes into an artefact."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One builder at a time per artefact, across processes (several labs may start at once)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def ensure_built(kind: str, inputs: dict[str, object], build: Callable[[Path], None]) -> Path:
    """``cache_root()/KIND/KEY``, calling ``build(scratch_dir)`` first if it does not exist yet.

    The build fills a scratch directory that is renamed into place only when it succeeded, so a
    half-finished build is never mistaken for a finished one (the next run starts it afresh).
    """
    final = cache_root() / kind / input_key(inputs)
    if final.is_dir():
        return final
    with _exclusive(final.with_name(final.name + ".lock")):
        if final.is_dir():
            return final
        scratch = final.with_name(final.name + ".building")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        build(scratch)
        final.with_name(final.name + ".json").write_text(json.dumps(inputs, indent=2, sort_keys=True) + "\n")
        scratch.rename(final)
    return final
