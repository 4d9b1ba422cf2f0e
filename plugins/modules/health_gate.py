"""Wait until a service instance has passed its Consul checks for a while: moorage's health gate."""

from __future__ import annotations

DOCUMENTATION = r"""
module: health_gate
short_description: Wait until an instance's Consul checks have passed for min_healthy, within a deadline
description:
  - Asks the local Consul agent for the instance's own checks (its maintenance check does not count)
    until all of them have been passing for O(min_healthy) seconds in a row.
  - Fails when O(deadline) seconds pass first, with the checks' last status and output.
  - The same gate as moorage's C(health-gate) host agent (one code, C(moorage.agents.health_gate)).
  - Reads only, so it never reports a change. In check mode it does not wait (the instance was not started).
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
    description: ACL token with read on the service. Never shown.
    type: str
    default: ""
  service_id:
    description: The instance's service ID.
    type: str
    required: true
  min_healthy:
    description: Seconds the checks must pass without a break (C(update.minHealthy)).
    type: float
    required: true
  deadline:
    description: Give up after this many seconds (C(update.healthyDeadline)).
    type: float
    required: true
"""

EXAMPLES = r"""
- name: Gate hello-1 (passing for 10 s, within 5 min)
  moorage.platform.health_gate:
    token: "{{ service_token }}"
    service_id: hello-1
    min_healthy: 10
    deadline: 300
"""

RETURN = r"""
waited_seconds:
  description: How long it waited.
  returned: always
  type: float
checks:
  description: The instance's checks at the last look (ID, status, output).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.moorage.platform.plugins.module_utils.consul import ConsulClient
from ansible_collections.moorage.platform.plugins.module_utils.health_gate import wait_until_healthy


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "consul_addr": {"type": "str", "default": "http://127.0.0.1:8500"},
            "token": {"type": "str", "default": "", "no_log": True},
            "service_id": {"type": "str", "required": True},
            "min_healthy": {"type": "float", "required": True},
            "deadline": {"type": "float", "required": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    if module.check_mode:
        module.exit_json(changed=False, waited_seconds=0.0, checks=[], msg="check mode: the gate was not waited for")
    client = ConsulClient(params["consul_addr"], params["token"])
    result = wait_until_healthy(client, params["service_id"], params["min_healthy"], params["deadline"])
    checks = [{"id": check.check_id, "status": check.status, "output": check.output} for check in result.checks]
    if not result.passed:
        module.fail_json(msg=result.message, waited_seconds=round(result.waited_seconds, 2), checks=checks)
    module.exit_json(changed=False, msg=result.message, waited_seconds=round(result.waited_seconds, 2), checks=checks)


if __name__ == "__main__":
    main()
