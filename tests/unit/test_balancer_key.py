"""The balancer feed's key: processes that create it at the same moment end with one key."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

from moorage.agents.balancer import ensure_key


def test_processes_starting_together_agree_on_one_key_written_0600(tmp_path: Path) -> None:
    key_file = tmp_path / "ingress" / "balancer.key"
    context = multiprocessing.get_context("fork")
    with context.Pool(8) as pool:
        keys = pool.map(ensure_key, [key_file] * 64)

    assert len(set(keys)) == 1 and keys[0] == key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sorted(path.name for path in key_file.parent.iterdir()) == ["balancer.key"]  # no temporary left
    assert ensure_key(key_file) == keys[0]
