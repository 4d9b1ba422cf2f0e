"""Run one host agent: ``python3 -I DIR AGENT [ARGS]`` on a host, ``python -m moorage.agents AGENT [ARGS]`` here.

This file is also copied to ``DIR/__main__.py`` on the hosts, so its imports are absolute.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from moorage.agents import health_gate, ingress, prometheus_targets

AGENTS: dict[str, Callable[[list[str]], int]] = {
    "ingress": ingress.main,
    "prometheus-targets": prometheus_targets.main,
    "health-gate": health_gate.main,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in AGENTS:
        print(f"usage: moorage-agent {{{','.join(AGENTS)}}} [--help | ARGS]", file=sys.stderr)
        return 2
    return AGENTS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
