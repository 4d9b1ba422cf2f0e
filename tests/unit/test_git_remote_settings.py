"""What `moorage remote add` records for a push that arrives over SSH: the URL it prints and the site's vault password.

A push over SSH runs the hook in a fresh login session: none of the `MOORAGE_*` or
`ANSIBLE_VAULT_PASSWORD_FILE` of the person who added the remote. So the remote records what its
deploy needs (git config `moorage.*`) and the printed ssh:// URL carries the user and port the
developer's git must use. The deploy the hook starts is the stub of tests/git_remote_stub.py
(it records its arguments); tests/e2e/test_git_push_ssh.py pushes through a real sshd to a real deploy.
"""

from __future__ import annotations

import getpass
import json
import subprocess
from pathlib import Path

import pytest
from ansible.constants import DEFAULT_VAULT_ID_MATCH
from ansible.parsing.vault import VaultLib, VaultSecret
from git_remote_stub import MOORAGE, REPO, Setup, config, stub_setup

from moorage import gitremote
from moorage.errors import BadInput
from moorage.lab import vault as lab_vault
from moorage.vault import site_vault_file

USER = getpass.getuser()
BARE = Path("/srv/git/pushed.git")


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return stub_setup(tmp_path)


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("deploy.example.org", f"ssh://{USER}@deploy.example.org/srv/git/pushed.git"),
        ("git@deploy.example.org:2222", "ssh://git@deploy.example.org:2222/srv/git/pushed.git"),
        ("127.0.0.1:2299", f"ssh://{USER}@127.0.0.1:2299/srv/git/pushed.git"),
        ("root@[::1]:2222", "ssh://root@[::1]:2222/srv/git/pushed.git"),
        ("[2001:db8::1]", f"ssh://{USER}@[2001:db8::1]/srv/git/pushed.git"),
        ("deploy-bot@ctl-1.", "ssh://deploy-bot@ctl-1./srv/git/pushed.git"),
    ],
)
def test_ssh_host_takes_a_user_a_host_and_a_port(given: str, url: str) -> None:
    assert gitremote.SshAddress.parse(given).url(BARE) == url


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("git@", "'' is not a host name or address"),
        ("@host", "'' is not a user name"),
        ("bad user@host", "'bad user' is not a user name"),
        ("host name", "'host name' is not a host name or address"),
        ("-host", "'-host' is not a host name or address"),
        ("host:0", "port '0' is not a number from 1 to 65535"),
        ("host:65536", "port '65536' is not a number from 1 to 65535"),
        ("host:ssh", "port 'ssh' is not a number from 1 to 65535"),
        ("host:", "port '' is not a number from 1 to 65535"),
        ("::1:22", "write an IPv6 address in brackets"),
        ("[::1", "a bracketed host is an IPv6 address"),
        ("[ctl]:22", "a bracketed host is an IPv6 address"),
        ("[::1]22", "unexpected '22' after the address"),
    ],
)
def test_a_bad_ssh_host_is_refused_saying_why(given: str, why: str) -> None:
    with pytest.raises(BadInput, match=r"--ssh-host .*: " + why.replace("[", r"\[") + r".*expected \[USER@\]HOST\[:PORT\]"):
        gitremote.SshAddress.parse(given)


def test_add_and_list_print_the_ssh_url_with_its_user_and_port_and_refuse_a_bad_one(setup: Setup) -> None:
    done = setup.moorage("remote", "add", "pushed", "--root", str(setup.root), "-i", str(setup.inventory),
                         "--ssh-host", "git@127.0.0.1:2222", "-o", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["urls"] == [str(setup.bare), f"ssh://git@127.0.0.1:2222{setup.bare}"]
    listed = setup.moorage("remote", "list", "--root", str(setup.root), "--ssh-host", "[::1]:2200", "-o", "json")
    assert json.loads(listed.stdout)["remotes"][0]["urls"][1] == f"ssh://{USER}@[::1]:2200{setup.bare}"
    other = setup.root.parent / "other-remotes"
    bad = setup.moorage("remote", "add", "pushed", "--root", str(other), "-i", str(setup.inventory), "--ssh-host", "ctl:99999")
    assert bad.returncode == 2 and "--ssh-host 'ctl:99999': port '99999' is not a number" in bad.stderr, bad.stderr
    assert not other.exists()


# --- the settings in the repository's git config ---------------------------------------------------


def settings(tmp_path: Path, **optional: Path) -> gitremote.RemoteSettings:
    return gitremote.RemoteSettings(
        service="pushed",
        branch="release",
        spec="deploy/moorage.yml",
        inventory=tmp_path / "site" / "hosts.yml",
        executable=Path(MOORAGE),
        state_root=tmp_path / "state",
        lock_wait="120s",
        **optional,  # type: ignore[arg-type]
    )


def test_settings_round_trip_through_the_git_config_and_an_option_dropped_is_unset(tmp_path: Path) -> None:
    root = tmp_path / "remotes"
    full = settings(tmp_path, secrets=tmp_path / "secrets.vault.yml", vault_password_file=tmp_path / "site-password")
    made = gitremote.add(full, root)
    assert gitremote.read_settings(made.path) == full
    assert config(made.path, "vaultPasswordFile") == str(tmp_path / "site-password")
    only_password = settings(tmp_path, vault_password_file=tmp_path / "site-password")  # the site's, no --secrets
    assert gitremote.read_settings(gitremote.add(only_password, root).path) == only_password
    assert config(made.path, "secrets") == ""
    plain = settings(tmp_path)
    assert gitremote.read_settings(gitremote.add(plain, root).path) == plain
    assert config(made.path, "vaultPasswordFile") == ""


# --- the site's vault password --------------------------------------------------------------------


def password(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def vaulted_site(inventory: Path, password_file: Path) -> None:
    """An inventory whose site secrets (group_vars/all/moorage.vault.yml) the password opens, as `platform up` leaves it."""
    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password_file.read_bytes().strip()))])
    path = site_vault_file(inventory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(vault.encrypt("consul_token_seed: seed\n"))


def without_vault_variable(setup: Setup) -> dict[str, str]:
    return {key: value for key, value in setup.env().items() if key != "ANSIBLE_VAULT_PASSWORD_FILE"}


def moorage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOORAGE, *args], capture_output=True, text=True, env=env, check=False)


def test_a_site_s_password_from_the_variable_is_recorded_and_the_hook_passes_it_without_the_variable(setup: Setup) -> None:
    site_password = password(setup.tmp / "site-password", "s3cret")
    vaulted_site(setup.inventory, site_password)
    with_variable = {**without_vault_variable(setup), "ANSIBLE_VAULT_PASSWORD_FILE": str(site_password)}
    added = moorage(with_variable, "remote", "add", "pushed", "--root", str(setup.root), "-i", str(setup.inventory))
    assert added.returncode == 0, added.stderr
    assert config(setup.bare, "vaultPasswordFile") == str(site_password)
    assert f"the deploy opens the site's secrets with {site_password} (keep it there)\n" in added.stdout
    setup.use_stub(exit_code=0)
    setup.commit("over ssh")
    push = subprocess.run(["git", "-C", str(setup.clone), "push", str(setup.bare), "main"],
                          capture_output=True, text=True, env=without_vault_variable(setup))  # fmt: skip
    assert push.returncode == 0, push.stderr
    args = setup.deployed_args()
    assert args[args.index("--vault-password-file") + 1] == str(site_password)
    assert "--secrets" not in args


def test_a_given_password_is_recorded_and_one_that_does_not_open_the_site_is_refused_before_anything(setup: Setup) -> None:
    right, wrong = password(setup.tmp / "right", "right"), password(setup.tmp / "wrong", "wrong")
    vaulted_site(setup.inventory, right)
    env = without_vault_variable(setup)

    def add(*extra: str) -> subprocess.CompletedProcess[str]:
        return moorage(env, "remote", "add", "pushed", "--root", str(setup.root), "-i", str(setup.inventory), *extra)

    refused = add("--vault-password-file", str(wrong))
    assert refused.returncode == 2 and f"moorage.vault.yml: the vault password ({wrong}) does not open it" in refused.stderr
    missing = add()
    assert missing.returncode == 2 and "no vault password to open the site's secrets: pass --vault-password-file" in missing.stderr
    assert not setup.root.exists()
    added = add("--vault-password-file", str(right), "-o", "json")
    assert added.returncode == 0, added.stderr
    assert config(setup.bare, "vaultPasswordFile") == str(right)
    assert json.loads(added.stdout)["vault_password_file"] == str(right)


def test_a_lab_s_inventory_records_no_password_the_deploy_finds_the_lab_s_own(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_STATE_DIR", str(setup.tmp / "state"))  # as setup.env() sets it for the CLI
    inventory = setup.tmp / "state" / "labs" / "mylab" / "hosts.yml"
    inventory.parent.mkdir(parents=True)
    inventory.write_text("all: {hosts: {}}\n")
    vaulted_site(inventory, lab_vault.password_file("mylab"))
    other = password(setup.tmp / "other", "another site's")
    with_variable = {**without_vault_variable(setup), "ANSIBLE_VAULT_PASSWORD_FILE": str(other)}
    added = moorage(with_variable, "remote", "add", "pushed", "--root", str(setup.root), "-i", str(inventory))
    assert added.returncode == 0, added.stderr
    assert config(setup.bare, "inventory") == str(inventory) and config(setup.bare, "vaultPasswordFile") == ""


def test_deploy_opens_the_site_s_secrets_with_the_given_password_without_secrets_of_the_service(setup: Setup) -> None:
    """What the hook runs: `moorage deploy -i SITE --vault-password-file P` (no --secrets, no variable) uses P for the site."""
    right, wrong = password(setup.tmp / "right", "right"), password(setup.tmp / "wrong", "wrong")
    vaulted_site(setup.inventory, right)
    spec = str(REPO / "examples/hello/moorage.yml")
    deploy = moorage(without_vault_variable(setup), "deploy", spec, "-i", str(setup.inventory), "--vault-password-file", str(wrong))
    assert deploy.returncode == 2 and f"the vault password ({wrong}) does not open it" in deploy.stderr, deploy.stderr
