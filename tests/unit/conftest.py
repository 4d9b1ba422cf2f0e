"""Shared for the unit tests: a valid service spec (the full example of docs/concepts.md) written next to its
artifact; a real Consul dev agent with ACLs (one per test module that asks for it) and its management client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import consul
import pytest
from consul_dev import ConsulDev, start_consul_dev
from spec_samples import VALID_SPEC


@pytest.fixture
def valid_spec_text() -> str:
    return VALID_SPEC


@pytest.fixture
def spec_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding the spec's artifact (./app); spec files are named relative to it."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "app.py").write_text("print('hello')\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def write_spec(spec_dir: Path) -> Callable[..., Path]:
    """Write spec text (or bytes) as ``moorage.yml`` (or ``name``) and return its relative path."""

    def write(content: str | bytes, name: str = "moorage.yml") -> Path:
        path = Path(name)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    return write


@pytest.fixture(scope="module")
def agent() -> Iterator[ConsulDev]:
    """A Consul dev agent with ACLs on (default deny), one per test module that uses it."""
    with start_consul_dev(acl=True) as running:
        yield running


@pytest.fixture
def client(agent: ConsulDev) -> consul.Consul:
    """py-consul with the agent's management token."""
    return consul.Consul(host=agent.host, port=agent.port, token=agent.management_token)
