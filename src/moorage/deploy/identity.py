"""What makes two deploys the same: the version (given, or a hash of artifact and spec) and the spec hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def spec_hash(service_variables: dict[str, Any]) -> str:
    """A hash of the rendered service (not its placement), stable across runs."""
    return hashlib.sha256(json.dumps(service_variables, sort_keys=True, default=str).encode()).hexdigest()[:12]


def content_version(service_variables: dict[str, Any]) -> str:
    """The version when none is given: a hash of the artifact's (or image archive's) bytes and the spec."""
    digest = hashlib.sha256(spec_hash(service_variables).encode())
    for key in ("artifact", "image_archive"):
        if service_variables.get(key):
            _hash_path(Path(service_variables[key]), digest)
    return digest.hexdigest()[:12]


def _hash_path(path: Path, digest: hashlib._Hash) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
