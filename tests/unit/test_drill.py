"""moorage drill: what it reads from a site, its throwaway secrets, and its bad-input lines (the run itself: make drill)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from moorage.errors import BadInput
from moorage.lab.drill import SMALLEST_PLATFORM, _throwaway_secrets, read_site
from moorage.spec.loader import SpecInvalid, load_spec

REPO = Path(__file__).resolve().parents[2]
MOORAGE = str(Path(sys.executable).parent / "moorage")


def site_with(tmp_path: Path, host_count: int | None) -> Path:
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "moorage.yml").write_text(
        (REPO / "examples/hello/moorage.yml").read_text().replace("./app", str(REPO / "examples/hello/app"))
    )
    if host_count is not None:
        hosts = "".join(f"        vm-{n}: {{ansible_host: 192.0.2.{n}}}\n" for n in range(1, host_count + 1))
        (tmp_path / "hosts.yml").write_text(f"all:\n  children:\n    app:\n      hosts:\n{hosts}")
    return tmp_path


def test_examples_is_a_site_of_every_example_on_the_smallest_platform() -> None:
    site = read_site(REPO / "examples")
    assert sorted(spec.name for spec in site.specs) == ["hello", "hello-docker", "notes-api"]
    assert site.host_count == SMALLEST_PLATFORM


@pytest.mark.parametrize(("hosts", "lab_hosts"), [(None, 4), (2, 4), (6, 6)])
def test_the_drill_lab_has_as_many_hosts_as_the_sites_inventory_and_at_least_a_platform(
    tmp_path: Path, hosts: int | None, lab_hosts: int
) -> None:
    assert read_site(site_with(tmp_path, hosts)).host_count == lab_hosts


def test_a_site_that_is_not_there_or_has_no_specs_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such site directory"):
        read_site(tmp_path / "nope")
    with pytest.raises(BadInput, match=r"no service specs \(moorage.yml or \*/moorage.yml\)"):
        read_site(tmp_path)


def test_an_invalid_spec_stops_the_drill_before_any_machine(tmp_path: Path) -> None:
    site = site_with(tmp_path, None)
    (site / "hello" / "moorage.yml").write_text("apiVersion: moorage/v1\nkind: Service\nmetadata: {name: Bad_Name}\n")
    with pytest.raises(SpecInvalid):
        read_site(site)


def test_drill_secrets_are_random_vault_files_only_the_drill_can_open_and_gone_afterwards() -> None:
    notes = load_spec(REPO / "examples/notes-api/moorage.yml")
    hello = load_spec(REPO / "examples/hello/moorage.yml")
    with _throwaway_secrets([notes, hello]) as options:
        assert set(options) == {"notes-api"}
        vault_file, password = Path(options["notes-api"][1]), Path(options["notes-api"][3])
        assert vault_file.read_text().startswith("$ANSIBLE_VAULT;")
        assert stat.S_IMODE(vault_file.stat().st_mode) == 0o600 and stat.S_IMODE(password.stat().st_mode) == 0o600
        assert stat.S_IMODE(vault_file.parent.stat().st_mode) == 0o700
        plain = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-vault"), "view", "--vault-password-file", str(password), str(vault_file)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        name, value = plain.strip().split(": ")
        assert name == "JWT_SECRET" and len(value) == 64
    assert not vault_file.exists() and not password.exists()


def test_drill_of_a_missing_site_at_the_cli_is_one_line_exit_2(tmp_path: Path) -> None:
    run = subprocess.run([MOORAGE, "drill", str(tmp_path / "nope")], capture_output=True, text=True, check=False)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"moorage: error: {tmp_path / 'nope'}: no such site directory (a directory with service specs and, optionally, hosts.yml)"
    ]
