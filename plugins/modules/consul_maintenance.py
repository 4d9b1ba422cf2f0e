"""Put a service instance into Consul maintenance mode, or take it out."""

from __future__ import annotations

DOCUMENTATION = r"""
module: consul_maintenance
short_description: Toggle Consul maintenance mode of a service instance on the local agent
description:
  - An instance in maintenance has a critical check, so discovery (and moorage's ingress) stops
    sending it traffic; that is how moorage drains an instance before it stops it.
  - Changes something only when the instance's maintenance differs from O(enabled).
  - An instance the agent does not know is left alone (nothing to drain); RV(registered) says so.
version_added: 0.1.0
author: moorage
attributes:
  check_mode:
    support: full
options:
  consul_addr:
    description: The local agent's HTTP API.
    type: str
    default: http://127.0.0.1:8500
  token:
    description: ACL token with write on the service. Never shown.
    type: str
    default: ""
  service_id:
    description: The instance's service ID.
    type: str
    required: true
  enabled:
    description: In maintenance (V(true)) or not (V(false)).
    type: bool
    required: true
  reason:
    description: Why, shown in Consul's maintenance check (only when it is turned on).
    type: str
    default: moorage
"""

EXAMPLES = r"""
- name: Drain hello-1 (the ingress stops routing to it)
  moorage.platform.consul_maintenance:
    token: "{{ service_token }}"
    service_id: hello-1
    enabled: true
    reason: moorage release 7
  register: drain

- name: Back in rotation
  moorage.platform.consul_maintenance:
    token: "{{ service_token }}"
    service_id: hello-1
    enabled: false
"""

RETURN = r"""
registered:
  description: Whether the agent knows the instance.
  returned: always
  type: bool
maintenance:
  description: Whether the instance is in maintenance now (in check mode, would be).
  returned: always
  type: bool
"""

import urllib.parse

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.moorage.platform.plugins.module_utils.consul import MAINTENANCE_CHECK_PREFIX, ConsulClient, ConsulError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "consul_addr": {"type": "str", "default": "http://127.0.0.1:8500"},
            "token": {"type": "str", "default": "", "no_log": True},
            "service_id": {"type": "str", "required": True},
            "enabled": {"type": "bool", "required": True},
            "reason": {"type": "str", "default": "moorage"},
        },
        supports_check_mode=True,
    )
    client = ConsulClient(module.params["consul_addr"], module.params["token"])
    service_id, enabled = module.params["service_id"], module.params["enabled"]
    quoted = urllib.parse.quote(service_id, safe="")
    try:
        try:
            client.get(f"/v1/agent/service/{quoted}")
        except ConsulError as err:
            if err.status != 404:
                raise
            module.exit_json(changed=False, registered=False, maintenance=False)
        checks = client.get("/v1/agent/checks").document
        in_maintenance = isinstance(checks, dict) and f"{MAINTENANCE_CHECK_PREFIX}{service_id}" in checks
        if in_maintenance == enabled:
            module.exit_json(changed=False, registered=True, maintenance=enabled)
        if not module.check_mode:
            params = {"enable": "true", "reason": module.params["reason"]} if enabled else {"enable": "false"}
            client.put(f"/v1/agent/service/maintenance/{quoted}", params=params)
    except ConsulError as err:
        module.fail_json(msg=f"{service_id}: consul: {err}")
    module.exit_json(changed=True, registered=True, maintenance=enabled)


if __name__ == "__main__":
    main()
