"""Options every moorage host-agent module takes: where a service's files live and how Consul is reached."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  root:
    description: Where releases' files live.
    type: str
    default: /opt/moorage
  config_root:
    description: Where definitions, env files and state live (the service's Consul token too).
    type: str
    default: /etc/moorage
  consul_addr:
    description: The local Consul agent's HTTP API.
    type: str
    default: http://127.0.0.1:8500
  host:
    description: This host's inventory name (for messages).
    type: str
    default: ""
"""
