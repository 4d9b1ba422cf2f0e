"""The repository's ansible.cfg: a checkout runs the playbooks by hand with the settings the moorage CLI uses.

The CLI sets Ansible's settings in the environment (``moorage.runner.ansible_envvars``) and does
not read ansible.cfg; these tests keep the two in step, and check with the real ``ansible-config``
and ``ansible-inventory`` that the collection moorage.platform resolves by FQCN from the file alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from moorage import paths
from moorage.runner import ansible_envvars

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def ansible_config(tmp_path: Path, *plugin_type: str) -> dict[str, Any]:
    """``ansible-config dump --only-changed [-t connection]`` with the repository's ansible.cfg, run from elsewhere."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    environment["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    dumped = subprocess.run(
        [str(BIN / "ansible-config"), "dump", "--only-changed", "--format", "json", *plugin_type],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    entries = json.loads(dumped.stdout)
    if plugin_type:  # [{"ssh": [{"name": ..., "value": ...}, ...]}]
        entries = [entry for plugin in entries for entries_of_plugin in plugin.values() for entry in entries_of_plugin]
    return {entry["name"]: entry["value"] for entry in entries if isinstance(entry, dict) and "name" in entry}


def test_ansible_cfg_names_the_cli_s_collection_roles_and_plugins(tmp_path: Path) -> None:
    settings = ansible_config(tmp_path)
    envvars = ansible_envvars()
    assert settings["DEFAULT_ROLES_PATH"] == [str(paths.roles_dir())] == [envvars["ANSIBLE_ROLES_PATH"]]
    assert settings["DEFAULT_INVENTORY_PLUGIN_PATH"] == [str(paths.plugins_dir() / "inventory")] == [envvars["ANSIBLE_INVENTORY_PLUGINS"]]
    assert settings["COLLECTIONS_PATHS"][0] == str(paths.collections_dir())
    assert (paths.collections_dir() / "ansible_collections" / "moorage" / "platform").resolve() == ROOT


def test_ansible_cfg_has_the_cli_s_tuned_settings(tmp_path: Path) -> None:
    settings = ansible_config(tmp_path)
    ssh = ansible_config(tmp_path, "-t", "connection")
    envvars = ansible_envvars()
    assert ssh["pipelining"] is True and envvars["ANSIBLE_PIPELINING"] == "True"
    assert ssh["ssh_args"] == envvars["ANSIBLE_SSH_ARGS"]
    assert str(settings["DEFAULT_FORKS"]) == envvars["ANSIBLE_FORKS"]
    assert settings["DEFAULT_GATHERING"] == envvars["ANSIBLE_GATHERING"]
    assert settings["INTERPRETER_PYTHON"] == envvars["ANSIBLE_INTERPRETER_PYTHON"]
    assert settings["RETRY_FILES_ENABLED"] is False


def test_the_consul_inventory_plugin_resolves_by_fqcn_through_ansible_cfg(tmp_path: Path) -> None:
    source = tmp_path / "consul.yml"
    source.write_text("plugin: moorage.platform.consul\nurl: http://127.0.0.1:9\n")
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "CONSUL_"))}
    environment |= {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    listed = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(source), "--list"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=120,
    )
    # The plugin loaded and ran: it tried the URL (nothing listens on port 9), so the name resolved.
    assert listed.returncode != 0
    assert "consul inventory: GET http://127.0.0.1:9/v1/catalog/nodes failed" in listed.stderr
