"""Compare this host with what the platform's last converge recorded on it, or record it."""

from __future__ import annotations

DOCUMENTATION = r"""
module: platform_state
short_description: Whether this host still holds what the platform's last converge left on it
description:
  - Without O(record), compares the host with the record its last converge left (in O(stamp)) -
    the digest of the platform's inputs, and the files, units, installed packages and addresses
    that converge managed - and returns whether it still holds all of it, or the first difference.
  - With O(record), records what the host holds now, after a converge, for the given inputs.
  - C(moorage platform up) runs it before and after C(playbooks/platform.yml) - when every host
    holds its record for the same inputs, there is nothing to converge.
  - Host-side logic is moorage's agent module C(moorage.agents.platform_state).
version_added: 0.3.0
author: moorage
attributes:
  check_mode:
    support: full
options:
  inputs:
    description: Digest of the platform's inputs (roles, playbooks, moorage, the inventory and its variables).
    type: str
    required: true
  record:
    description: What the converge managed on this host - O(record.files) and O(record.units) - to record now.
    type: dict
    options:
      files:
        description: Files the converge wrote or checked; O(record.files[].content=false) watches type, mode and owner only.
        type: list
        elements: dict
        default: []
      units:
        description: systemd units the converge started or enabled.
        type: list
        elements: str
        default: []
  stamp:
    description: Where the record is kept (0600).
    type: path
    default: /var/lib/moorage/platform/state.json
"""

EXAMPLES = r"""
- name: Does this host still hold its last converge?
  moorage.platform.platform_state:
    inputs: "{{ platform_inputs }}"
  register: held

- name: Record what the converge left
  moorage.platform.platform_state:
    inputs: "{{ platform_inputs }}"
    record:
      files: [{path: /etc/nginx/nginx.conf}, {path: /etc/nginx/moorage, content: false}]
      units: [nginx]
"""

RETURN = r"""
holds:
  description: Whether the host holds its last converge's record for these inputs (false after recording).
  returned: always
  type: bool
reason:
  description: The first difference, in words (empty when it holds).
  returned: always
  type: str
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.moorage.platform.plugins.module_utils.platform_state import STAMP, Watch, check, record

ARGUMENT_SPEC = {
    "inputs": {"type": "str", "required": True},
    "record": {
        "type": "dict",
        "options": {
            "files": {"type": "list", "elements": "dict", "default": []},
            "units": {"type": "list", "elements": "str", "default": []},
        },
    },
    "stamp": {"type": "path", "default": str(STAMP)},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    stamp = Path(module.params["stamp"])
    if module.params["record"] is None:
        verdict = check(module.params["inputs"], stamp)
        module.exit_json(changed=False, holds=verdict.holds, reason=verdict.reason)
    if module.check_mode:
        module.exit_json(changed=True, holds=False, reason="")
    changed = record(module.params["inputs"], Watch.from_params(module.params["record"]), stamp)
    module.exit_json(changed=changed, holds=False, reason="")


if __name__ == "__main__":
    main()
