"""The Consul test helper works whatever ran before it (issue: `make test` after `make demo`).

Three states of the cache root, each in a private ``MOORAGE_CACHE_DIR``: nothing cached (the
helper downloads the package itself), only a lab apt repository (what ``moorage lab up`` or
``make demo`` leaves; the helper's own cache directory is absent), and both. In each the helper
must hand out a working binary and start a real agent with it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import consul_dev
import pytest


def _agent_answers() -> None:
    with consul_dev.start_consul_dev() as agent:
        assert agent.api("GET", "/v1/status/leader")


def _binary_works(binary: Path) -> None:
    version = subprocess.run([str(binary), "version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("Consul v1.8."), version


@pytest.fixture(scope="module")
def downloaded_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The helper's own download into an empty cache root (the first case), kept for the others."""
    cache = tmp_path_factory.mktemp("empty-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOORAGE_CACHE_DIR", str(cache))
        assert not (cache / "consul-dev").exists()
        _binary_works(consul_dev.consul_binary())
        _agent_answers()
    debs = sorted((cache / "consul-dev" / "debs").glob("consul_*.deb"))
    assert debs, "the helper downloaded no package into its own cache"
    return debs[-1]


def test_empty_cache_downloads_the_package(downloaded_deb: Path) -> None:
    assert downloaded_deb.stat().st_size > 1_000_000


def _lab_repo(cache: Path, deb: Path) -> None:
    """A finished lab apt repository as ``moorage.lab.aptrepo`` leaves it: ``apt/KEY/*.deb``."""
    repo = cache / "apt" / "0123456789abcdef"
    repo.mkdir(parents=True)
    shutil.copy2(deb, repo / deb.name)
    # A build that never finished must not be picked.
    (cache / "apt" / "fedcba9876543210.building").mkdir()


def test_lab_repo_present_helper_cache_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, downloaded_deb: Path) -> None:
    _lab_repo(tmp_path, downloaded_deb)
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path))
    assert not (tmp_path / "consul-dev").exists()
    _binary_works(consul_dev.consul_binary())
    _agent_answers()
    assert not (tmp_path / "consul-dev" / "debs").exists(), "the lab repository's package was there: nothing to download"


def test_lab_repo_and_helper_cache_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, downloaded_deb: Path) -> None:
    _lab_repo(tmp_path, downloaded_deb)
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path))
    first = consul_dev.consul_binary()
    assert (tmp_path / "consul-dev" / "root").is_dir()
    # The second call reuses the extracted binary as it is.
    assert consul_dev.consul_binary() == first
    _binary_works(first)
    _agent_answers()
