"""The examples' specs as the end-to-end tests change them, and secrets files sealed with Ansible Vault.

Each test deploys an example under a name, port and route of its own; it edits the example's
text by exact replacements, so a change to the example that a test relies on fails loudly here.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def example_spec(example: str, replacements: Mapping[str, str]) -> str:
    """examples/EXAMPLE/moorage.yml with each ``old`` replaced by ``new`` (every ``old`` must be there)."""
    path = REPO / "examples" / example / "moorage.yml"
    text = path.read_text()
    for old, new in replacements.items():
        assert old in text, f"{path.relative_to(REPO)} changed: {old!r} not found"
        text = text.replace(old, new)
    return text


def sealed_secrets(secrets: Path, password: Path, values: Mapping[str, str]) -> None:
    """``values`` written to ``secrets`` as YAML, encrypted with ``ansible-vault`` under a new password kept in ``password``."""
    password.write_text(uuid.uuid4().hex + "\n")
    secrets.write_text("".join(f"{name}: {value}\n" for name, value in values.items()))
    subprocess.run(
        [str(Path(sys.executable).parent / "ansible-vault"), "encrypt", str(secrets), "--vault-password-file", str(password)],
        check=True, capture_output=True,
    )  # fmt: skip
