"""Switch instances of a moorage service on this host to a prepared release, or remove them."""

from __future__ import annotations

DOCUMENTATION = r"""
module: instance
short_description: Switch a moorage service's instances on this host to a release behind a health gate, or remove them
description:
  - The second half of a deploy on a host (the first, M(moorage.platform.release), prepared the release).
  - With O(state=running), per instance, O(max_parallel) at a time - maintenance on, wait until every
    lb host acknowledged it no longer routes to it, graceful stop, start the release, probe its health
    check until healthy for C(update.minHealthy) within C(update.healthyDeadline), register it in Consul
    (tags C(moorage), C(route=HOST/PATH), C(metrics); meta release, version), maintenance off, wait until
    every lb host routes to it.
  - An instance that fails says why, with the app's last log lines; with C(update.autoRevert) it goes back
    to the release it ran before (a new instance is removed). An instance that runs the release already is
    left running.
  - With O(state=absent) it drains, deregisters, stops and deletes the instances.
  - Host-side logic is moorage's deploy agent (C(moorage.agents.instance)), the same code C(moorage deploy)
    runs over SSH.
version_added: 0.2.0
author: moorage
extends_documentation_fragment:
  - moorage.platform.host_agent
attributes:
  check_mode:
    support: full
options:
  service:
    description: The service's name.
    type: str
    required: true
  instances:
    description: Instance IDs on this host.
    type: list
    elements: str
    required: true
  state:
    description: Running the release (V(running)) or gone (V(absent)).
    type: str
    choices: [running, absent]
    default: running
  release:
    description: The release to run (prepared on this host). Required with O(state=running).
    type: int
  max_parallel:
    description: Instances switched at a time (C(update.maxParallel)).
    type: int
    default: 1
  revert:
    description: Whether a failed instance goes back to its previous release; unset follows C(update.autoRevert).
    type: bool
  lbs:
    description: With O(state=absent), lb hosts that must stop routing to an instance first (default the release's).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Switch hello-1 and hello-4 to release 7, one at a time
  moorage.platform.instance:
    service: hello
    instances: [hello-1, hello-4]
    release: 7
    max_parallel: 1

- name: Remove hello-4
  moorage.platform.instance:
    service: hello
    instances: [hello-4]
    state: absent
"""

RETURN = r"""
instances:
  description: Per instance - whether it succeeded, changed, the release it runs, and a failure's message and last log lines.
  returned: always
  type: list
  elements: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.moorage.platform.plugins.module_utils.consul import ConsulClient, read_token
from ansible_collections.moorage.platform.plugins.module_utils.instance import Agent, SwitchFailed, in_parallel, load_definition, read_state
from ansible_collections.moorage.platform.plugins.module_utils.layout import HOST_AGENT_ARGUMENTS, ServiceLayout
from ansible_collections.moorage.platform.plugins.module_utils.runtime import runtime_for


def would_change(layout: ServiceLayout, instance: str, release: int | None) -> bool:
    """Check mode: whether the instance would be switched (or removed)."""
    state = read_state(layout, instance)
    if release is None:
        return state is not None or layout.unit_file(instance).exists()
    try:
        definition = load_definition(layout, release, instance)
    except SwitchFailed:
        return True
    runtime = runtime_for(definition.runtime, layout)
    return not (
        state is not None
        and state.healthy
        and state.release == release
        and state.digest == definition.digest
        and runtime.is_running(instance)
    )


ARGUMENT_SPEC = {
    "service": {"type": "str", "required": True},
    "instances": {"type": "list", "elements": "str", "required": True},
    "state": {"type": "str", "choices": ["running", "absent"], "default": "running"},
    "release": {"type": "int"},
    "max_parallel": {"type": "int", "default": 1},
    "revert": {"type": "bool"},
    "lbs": {"type": "list", "elements": "str", "default": []},
    **HOST_AGENT_ARGUMENTS,
}


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("state", "running", ["release"])],
        supports_check_mode=True,
    )
    params = module.params
    layout = ServiceLayout(params["service"], params["root"], params["config_root"])
    release = params["release"] if params["state"] == "running" else None
    if module.check_mode:
        changed = [name for name in params["instances"] if would_change(layout, name, release)]
        module.exit_json(changed=bool(changed), instances=[{"instance": name, "changed": name in changed} for name in params["instances"]])
    try:
        token = read_token(os.environ, str(layout.token_file) if layout.token_file.exists() else "")
    except OSError as err:
        module.fail_json(msg=f"{layout.token_file}: {err}")
    agent = Agent(layout, ConsulClient(params["consul_addr"], token), lambda event: None, params["host"])
    if release is not None:
        outcomes = in_parallel(
            lambda name: agent.switch(name, release, revert=params["revert"]), params["instances"], params["max_parallel"]
        )
    else:
        outcomes = in_parallel(lambda name: agent.remove(name, params["lbs"]), params["instances"], len(params["instances"]))
    results = [outcome.as_dict() for outcome in outcomes]
    changed = any(outcome.changed for outcome in outcomes)
    failed = [outcome for outcome in outcomes if not outcome.ok]
    if failed or len(outcomes) < len(params["instances"]):
        module.fail_json(
            msg="; ".join(outcome.message for outcome in failed) or "stopped after a failed instance", changed=changed, instances=results
        )
    module.exit_json(changed=changed, instances=results)


if __name__ == "__main__":
    main()
