"""A real site, as an ops engineer runs it: plain ansible-playbook, the collection by FQCN, secrets that travel.

- ``ansible-playbook -i <the lab's inventory> playbooks/platform.yml`` from the checkout (its
  ansible.cfg), with the site's vault password, converges the platform; a second run changes nothing.
- A playbook in a directory outside the repository uses the collection built with
  ``ansible-galaxy collection build`` and installed with ``ansible-galaxy collection install``:
  its role, named by FQCN, converges a lab machine.
- A second controller, holding only a copy of the inventory directory (hosts.yml and group_vars,
  with the site's vault file) at another path, its own state directory, and the vault password
  file: deploy, scale and rollback work. Without the password: one line, exit 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import requests
from platform_cli import Platform
from waiting import eventually

from moorage.lab import vault as lab_vault
from moorage.vault import SITE_VAULT_FILE

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICE = "hello-site"
ROUTE = "hello-site.example.test"


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without Ansible's and moorage's own settings (an ops engineer's shell)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "MOORAGE_", "CONSUL_"))}
    return {**environment, **extra}


def run(command: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=dict(env), timeout=timeout, check=False)


def recap(output: str) -> list[str]:
    return [line for line in output.splitlines() if " : ok=" in line]


def test_plain_ansible_playbook_converges_the_platform_and_a_second_run_changes_nothing(platform: Platform) -> None:
    lab = platform.lab
    # As an ops engineer tries it in a checkout: the lab's inventory through its link in inventory/lab/.
    assert (REPO / "inventory/lab/hosts.yml").resolve() == lab.inventory.resolve()
    command = [
        str(BIN / "ansible-playbook"), "-i", "inventory/lab/hosts.yml", "playbooks/platform.yml",
        "--vault-password-file", str(lab_vault.password_file(lab.name)),
    ]  # fmt: skip
    environment = clean_environment(PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    first = run(command, cwd=REPO, env=environment)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    second = run(command, cwd=REPO, env=environment)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    hosts = recap(second.stdout)
    assert len(hosts) == len(lab.hosts) and all("changed=0" in line and "failed=0" in line for line in hosts), "\n".join(hosts)
    assert platform.management_token not in first.stdout + first.stderr + second.stdout + second.stderr


def test_a_playbook_outside_the_repository_uses_the_built_and_installed_collection(platform: Platform, tmp_path: Path) -> None:
    lab = platform.lab
    environment = clean_environment()
    built = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path)], cwd=REPO, env=environment)
    assert built.returncode == 0, built.stderr
    [tarball] = tmp_path.glob("moorage-platform-*.tar.gz")
    collections = tmp_path / "collections"
    installed = run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "-p", str(collections), str(tarball)], cwd=tmp_path, env=environment
    )
    assert installed.returncode == 0, installed.stderr
    role = collections / "ansible_collections" / "moorage" / "platform" / "roles" / "common"
    assert role.is_dir() and not role.is_symlink()

    site = tmp_path / "site"
    site.mkdir()
    (site / "base.yml").write_text(
        "- name: Base for one machine, with the installed collection's role by FQCN\n"
        f"  hosts: {lab.hosts[-1].name}\n"
        "  gather_facts: true\n"
        "  gather_subset: ['!all', min, virtual]\n"
        "  roles:\n"
        "    - role: moorage.platform.common\n"
    )
    # Only the installed copy: no ansible.cfg here, the collections path names only the install.
    playbook = [
        str(BIN / "ansible-playbook"), "-i", str(lab.inventory), "base.yml",
        "--vault-password-file", str(lab_vault.password_file(lab.name)),
    ]  # fmt: skip
    play_environment = clean_environment(ANSIBLE_COLLECTIONS_PATH=str(collections), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    first = run(playbook, cwd=site, env=play_environment)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert f"{lab.hosts[-1].name}" in "\n".join(recap(first.stdout))
    second = run(playbook, cwd=site, env=play_environment)
    assert second.returncode == 0 and all("changed=0" in line for line in recap(second.stdout)), second.stdout[-3000:]


@pytest.fixture
def second_controller(platform: Platform, tmp_path: Path) -> Path:
    """A copy of the lab's inventory directory (hosts.yml and group_vars, nothing else) at another path."""
    copy = tmp_path / "site-copy"
    copy.mkdir()
    shutil.copy2(platform.lab.inventory, copy / "hosts.yml")
    shutil.copytree(platform.lab.inventory.parent / "group_vars", copy / "group_vars")
    return copy


def test_a_second_controller_with_a_copy_of_the_inventory_deploys_scales_and_rolls_back(
    platform: Platform, second_controller: Path, tmp_path: Path
) -> None:
    password = tmp_path / "vault-password"
    shutil.copy2(lab_vault.password_file(platform.lab.name), password)
    password.chmod(0o600)
    spec = tmp_path / "hello-site.yml"
    spec.write_text(
        (REPO / "examples/hello/moorage.yml")
        .read_text()
        .replace("name: hello\n", f"name: {SERVICE}\n")
        .replace("artifact: ./app", f"artifact: {REPO / 'examples/hello/app'}")
        .replace("port: 8080", "port: 8098")
        .replace("replicas: 3", "replicas: 1")
        .replace("hello.example.test", ROUTE)
        .replace("minHealthy: 3s", "minHealthy: 1s")
    )
    # The other controller: its own state directory (no lab, no secrets of its own), only the copy.
    state = tmp_path / "state"
    with_password = clean_environment(
        MOORAGE_STATE_DIR=str(state), MOORAGE_INVENTORY=str(second_controller), ANSIBLE_VAULT_PASSWORD_FILE=str(password)
    )
    without_password = clean_environment(MOORAGE_STATE_DIR=str(state), MOORAGE_INVENTORY=str(second_controller))
    outputs: list[str] = []

    def moorage(*args: str, env: Mapping[str, str] = with_password) -> subprocess.CompletedProcess[str]:
        done = run([str(BIN / "moorage"), *args], cwd=tmp_path, env=env)
        outputs.append(done.stdout + done.stderr)
        return done

    def answers() -> set[str]:
        lb = platform.lab.group("lb")[0].address
        return {requests.get(f"http://{lb}/", headers={"Host": ROUTE}, timeout=10).text.strip().rsplit(" ", 1)[-1] for _ in range(10)}

    def serving(version: str) -> None:
        eventually(lambda: True if answers() == {version} else None, within=60, what=f"every answer from version {version}")

    try:
        refused = moorage("status", env=without_password)
        assert (refused.returncode, refused.stdout) == (2, "")
        assert refused.stderr == (
            f"moorage: error: {second_controller / SITE_VAULT_FILE}: no vault password to open the site's secrets: "
            "pass --vault-password-file or set ANSIBLE_VAULT_PASSWORD_FILE\n"
        )
        refused_deploy = moorage("deploy", str(spec), "--version", "1", env=without_password)
        assert (refused_deploy.returncode, len(refused_deploy.stderr.splitlines())) == (2, 1), refused_deploy.stderr

        first = moorage("deploy", str(spec), "--version", "1")
        assert first.returncode == 0, first.stderr[-3000:]
        serving("1")
        scaled = moorage("scale", f"{SERVICE}=2")
        assert scaled.returncode == 0, scaled.stderr[-3000:]
        second = moorage("deploy", str(spec), "--version", "2")
        assert second.returncode == 0, second.stderr[-3000:]
        serving("2")
        back = moorage("rollback", SERVICE)
        assert back.returncode == 0, back.stderr[-3000:]
        serving("1")
        status = moorage("status", SERVICE, "--output", "json")
        assert status.returncode == 0 and status.stdout.count('"version": "1"') >= 2, status.stdout  # both instances
    finally:
        moorage("remove", SERVICE, "--yes")
    assert not any(platform.management_token in output for output in outputs)
    assert not list(state.rglob("*vault*")), "the second controller keeps no secrets of its own"


def test_the_hashicorp_install_path_passes_check_mode_on_a_lab_machine(platform: Platform, tmp_path: Path) -> None:
    """Installing a current Consul from HashiCorp's apt repository is the production path; the lab cannot
    reach HashiCorp, so the real tasks run in check mode on a real Debian machine: they load, template
    with its facts, and would add the repository; nothing on the machine changes."""
    lab = platform.lab
    host = lab.hosts[-1].name
    playbook = tmp_path / "hashicorp.yml"
    playbook.write_text(
        "- name: Consul from HashiCorp's apt repository, in check mode\n"
        f"  hosts: {host}\n"
        "  gather_facts: true\n"
        "  gather_subset: ['!all', min]\n"
        "  tasks:\n"
        "    - name: The consul role's hashicorp install path\n"
        "      ansible.builtin.include_role:\n"
        "        name: moorage.platform.consul\n"
        "        tasks_from: install-hashicorp\n"
        "      vars:\n"
        "        consul_install_source: hashicorp\n"
    )
    command = [
        str(BIN / "ansible-playbook"), "-i", str(lab.inventory), str(playbook), "--check", "--diff",
        "--vault-password-file", str(lab_vault.password_file(lab.name)),
    ]  # fmt: skip
    checked = run(command, cwd=REPO, env=clean_environment(PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"))
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-2000:]
    assert "Suites: bookworm" in checked.stdout and "URIs: https://apt.releases.hashicorp.com" in checked.stdout, checked.stdout[-4000:]
    assert "Signed-By: /etc/apt/keyrings/hashicorp.asc" in checked.stdout
    [line] = recap(checked.stdout)
    assert "changed=1" in line and "failed=0" in line, line
    assert lab.run(host, "test -e /etc/apt/sources.list.d/hashicorp.sources", check=False).returncode == 1
