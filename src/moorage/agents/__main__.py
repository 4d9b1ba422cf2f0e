"""Run one host agent: ``python3 -I DIR AGENT [ARGS]`` on a host, ``python -m moorage.agents AGENT [ARGS]`` here.

This file is also copied to ``DIR/__main__.py`` on the hosts (and is the deploy agent zipapp's
entry), so its imports are absolute. Only the chosen agent's module is imported: the deploy
agent runs once per batch and host, and its start-up is part of every batch's time.
"""

from __future__ import annotations

import importlib
import sys

AGENTS = {
    "ingress": "ingress",
    "prometheus-targets": "prometheus_targets",
    "health-gate": "health_gate",
    "instance": "instance",
    "release": "prepare",
    "purge": "purge",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in AGENTS:
        print(f"usage: moorage-agent {{{','.join(AGENTS)}}} [--help | ARGS]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"moorage.agents.{AGENTS[argv[0]]}")
    result: int = module.main(argv[1:])
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
