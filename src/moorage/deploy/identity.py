"""What makes two deploys the same: the version (given, or a hash of artifact and spec) and the spec hash.

Both hash the service as the hosts get it (the classic target's ``moorage_service``), so a
change that reaches no host (a comment, key order) is no change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from moorage.spec.loader import SpecFile
from moorage.targets.classic import service_variables


def spec_hash(spec: SpecFile) -> str:
    """A hash of the rendered service (not its placement), stable across runs."""
    return _hash_variables(service_variables(spec))


def content_version(spec: SpecFile) -> str:
    """The version when none is given: a hash of the artifact's (or image archive's) bytes and the spec."""
    digest = hashlib.sha256(spec_hash(spec).encode())
    for path in (spec.artifact, spec.image_archive):
        if path is not None:
            _hash_path(path, digest)
    return digest.hexdigest()[:12]


def _hash_variables(variables: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(variables, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _hash_path(path: Path, digest: hashlib._Hash) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
