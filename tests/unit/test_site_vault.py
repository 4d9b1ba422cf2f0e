"""The site's secrets travel with the inventory: an Ansible Vault file in its group_vars, opened with the site's password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from moorage.commands.options import site_passwords
from moorage.errors import BadInput
from moorage.lab import vault as lab_vault
from moorage.state_paths import legacy_platform_secrets_dir
from moorage.vault import migrate_legacy_secrets, read_site_secrets, site_vault, site_vault_file

BIN = Path(sys.executable).parent
SECRETS = "consul_gossip_key: Z29zc2lw\nconsul_token_seed: seed-40-characters\nconsul_bootstrap_token: 1f0e-token\n"


def password(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def encrypted(path: Path, plaintext: str, password_file: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plaintext)
    subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password_file), str(path)], check=True, capture_output=True
    )
    return path


@pytest.fixture
def site(tmp_path: Path) -> Path:
    inventory = tmp_path / "prod" / "hosts.yml"
    inventory.parent.mkdir()
    inventory.write_text("all:\n  hosts: {a: {ansible_host: 10.0.0.1}}\n")
    return inventory


def test_the_vault_file_is_in_the_inventory_s_group_vars_for_a_file_or_a_directory(site: Path) -> None:
    assert site_vault_file(site) == site.parent / "group_vars" / "all" / "moorage.vault.yml"
    assert site_vault_file(site.parent) == site.parent / "group_vars" / "all" / "moorage.vault.yml"


def test_the_right_password_opens_it_among_others_and_a_missing_one_is_one_line(site: Path, tmp_path: Path) -> None:
    right, wrong = password(tmp_path / "right", "right"), password(tmp_path / "wrong", "wrong")
    encrypted(site_vault_file(site), SECRETS, right)
    assert read_site_secrets(site, [wrong, right])["consul_bootstrap_token"] == "1f0e-token"
    with pytest.raises(
        BadInput,
        match=r"moorage\.vault\.yml: no vault password to open the site's secrets: "
        r"pass --vault-password-file or set ANSIBLE_VAULT_PASSWORD_FILE$",
    ):
        read_site_secrets(site, [])
    with pytest.raises(BadInput, match=rf"moorage\.vault\.yml: the vault password \({wrong}\) does not open it$"):
        read_site_secrets(site, [wrong])


def test_a_site_without_secrets_is_told_to_run_platform_up(site: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"no platform secrets yet; run 'moorage platform up' with this inventory first$"):
        read_site_secrets(site, [password(tmp_path / "p", "p")])


def test_secrets_kept_by_moorage_0_1_move_into_the_inventory_once(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_STATE_DIR", str(tmp_path / "state"))
    legacy = legacy_platform_secrets_dir(site)
    legacy.mkdir(parents=True)
    encrypted(legacy / "consul.vault.yml", SECRETS, password(legacy / "vault-password", "old"))
    new = password(tmp_path / "site-password", "new")
    assert migrate_legacy_secrets(site, [new]) is True
    vault_file = site_vault_file(site)
    assert vault_file.stat().st_mode & 0o777 == 0o600
    assert b"seed-40-characters" not in vault_file.read_bytes()
    assert read_site_secrets(site, [new]) == {
        "consul_gossip_key": "Z29zc2lw",
        "consul_token_seed": "seed-40-characters",
        "consul_bootstrap_token": "1f0e-token",
    }
    assert migrate_legacy_secrets(site, [new]) is False  # once


def test_the_cli_tries_the_given_password_then_the_lab_s_then_ansible_s_variable(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOORAGE_STATE_DIR", str(tmp_path / "state"))
    given, from_env = tmp_path / "given", tmp_path / "env"
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(from_env))
    assert site_passwords(site, given, None) == (given, from_env)
    lab_inventory = tmp_path / "state" / "labs" / "mylab" / "hosts.yml"
    lab_inventory.parent.mkdir(parents=True)
    lab_inventory.write_text("all: {}\n")
    assert site_passwords(lab_inventory, given) == (given, lab_vault.password_file("mylab"), from_env)
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE")
    [lab_password] = site_passwords(lab_inventory)
    assert lab_password == lab_vault.password_file("mylab") == lab_inventory.parent / "vault-password"
    assert lab_password.stat().st_mode & 0o777 == 0o600 and len(lab_password.read_text().strip()) >= 32
    # A copy of the lab's inventory elsewhere is another site: no password of the lab's for it.
    assert site_passwords(site) == ()


def test_opening_names_the_password_that_did(site: Path, tmp_path: Path) -> None:
    right = password(tmp_path / "right", "right")
    assert site_vault(site, [right]).opening_password() == right  # no file yet: the first encrypts it
    encrypted(site_vault_file(site), SECRETS, right)
    assert site_vault(site, [password(tmp_path / "wrong", "wrong"), right]).opening_password() == right
