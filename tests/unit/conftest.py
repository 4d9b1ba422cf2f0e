"""Shared for the unit tests: a valid service spec (the DESIGN.md example) written next to its artifact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# DESIGN.md's example, except maxPerHost 1: a service with volumes must keep one instance per host.
VALID_SPEC = """\
apiVersion: moorage/v1
kind: Service
metadata:
  name: hello
spec:
  runtime: systemd
  artifact: ./app
  command: ["python3", "app.py", "--port", "${PORT}"]
  replicas: 3
  placement: {group: app, maxPerHost: 1}
  port: 8080
  env: {GREETING: hi}
  secrets: [API_TOKEN]
  health: {http: /healthz, interval: 2s, timeout: 1s, deregisterAfter: 5m}
  routes:
    - {host: hello.example.test, path: /}
  metrics: {path: /metrics}
  resources: {memory: 256Mi, cpu: 500m}
  volumes:
    - {name: data, path: /var/lib/hello}
  update: {maxParallel: 1, minHealthy: 5s, healthyDeadline: 60s, autoRevert: true, canary: 0}
  stop: {signal: SIGTERM, gracePeriod: 30s}
"""


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
