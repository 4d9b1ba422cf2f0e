"""A service's secret values from ``--secrets FILE`` (YAML ``NAME: value``, plain or an Ansible Vault).

``moorage deploy`` (and rollback, scale, promote) hands them to the hosts' deploy agent in memory
(over SSH, on its stdin), which writes them only into 0600 files; ``moorage dev`` into Compose's
secret files. Read once per command, here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from moorage.errors import BadInput


def read_secret_values(names: Sequence[str], secrets_file: Path | None, password_file: Path | None) -> dict[str, str]:
    """The values of the secrets ``names`` (only those); BadInput naming the file and what is wrong."""
    if not names:
        return {}
    if secrets_file is None:
        raise BadInput(f"spec.secrets: {', '.join(names)} need values: pass --secrets FILE (YAML NAME: value, may be an Ansible Vault)")
    try:
        content = secrets_file.read_bytes()
    except OSError as error:
        raise BadInput(f"--secrets {secrets_file}: {error.strerror}") from None
    from ansible.parsing.vault import VaultLib, VaultSecret, is_encrypted  # only for these files: ansible is slow to import

    if is_encrypted(content):
        if password_file is None:
            raise BadInput(f"--secrets {secrets_file} is an Ansible Vault: pass --vault-password-file")
        try:
            content = VaultLib([("default", VaultSecret(password_file.read_bytes().strip()))]).decrypt(content)
        except OSError as error:
            raise BadInput(f"--vault-password-file {password_file}: {error.strerror}") from None
        except Exception as error:  # ansible's AnsibleError: a wrong password, a damaged file
            raise BadInput(f"--secrets {secrets_file}: cannot decrypt: {error}") from None
    try:
        values = yaml.safe_load(content)
    except yaml.YAMLError:
        raise BadInput(f"--secrets {secrets_file}: not YAML") from None
    if not isinstance(values, dict):
        raise BadInput(f"--secrets {secrets_file}: expected a mapping NAME: value")
    missing = [name for name in names if name not in values or values[name] is None or isinstance(values[name], (dict, list))]
    if missing:
        raise BadInput(f"--secrets {secrets_file}: no value for {', '.join(missing)}")
    return {name: str(values[name]) for name in names}
