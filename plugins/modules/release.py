"""Put a release of a moorage service on this host (files, instance definitions, token), or check that it can go there."""

from __future__ import annotations

DOCUMENTATION = r"""
module: release
short_description: Check that a release of a moorage service can go on this host, or put it there
description:
  - The first half of a deploy on a host; nothing that runs changes. The second half,
    M(moorage.platform.instance), switches instances to the release.
  - With O(step=check) (reads only) it fails, naming the host and the reason, when the release
    cannot go on this host (an instance's port is taken by something else, a secret has no value,
    a route breaks the rules, Docker does not answer). It also says what the shipping needs
    (RV(archive_present), RV(archive_dest)).
  - With O(step=ship) it unpacks the release's archive (shipped to RV(archive_dest) beforehand), loads
    or pulls a Docker image, writes each instance's definition of the release (env with secret
    values, unit, check, registration; mode 0600), creates volumes and their user, writes the
    service's Consul token (and creates the token in Consul with O(management_token) when missing),
    and prunes releases beyond the newest O(keep) (never one an instance runs or would go back to).
  - Host-side logic is moorage's deploy agent (C(moorage.agents.prepare)), the same code
    C(moorage deploy) runs.
version_added: 0.2.0
author: moorage
extends_documentation_fragment:
  - moorage.platform.host_agent
attributes:
  check_mode:
    support: full
options:
  step:
    description: Check only (V(check)), or write the release (V(ship)).
    type: str
    choices: [check, ship]
    required: true
  service:
    description: The service as C(moorage render --target classic) gives it (C(moorage_service)).
    type: dict
    required: true
  instances:
    description: This host's instances of the release, C([{id, index, host, address, port}]).
    type: list
    elements: dict
    required: true
  release:
    description: The release number.
    type: int
    required: true
  version:
    description: The release's version (C(MOORAGE_VERSION)).
    type: str
    required: true
  files_release:
    description: Whose files the instances run (the release itself, or an older one after a rollback).
    type: int
  archive:
    description: The release's files (systemd) or image archive (docker) as shipped, by content; none when the files must be here already.
    type: dict
    suboptions:
      digest: {description: "sha256 of the archive.", type: str, required: true}
      suffix: {description: "V(.tar.gz), V(.tgz), V(.tar) or V(.zip).", type: str, required: true}
  secrets:
    description: Secret values by name (written only to the 0600 definitions). Never shown.
    type: dict
    default: {}
  lbs:
    description: Consul node names of the lb hosts whose acknowledgments the switch waits for.
    type: list
    elements: str
    default: []
  drain_timeout:
    description: Seconds the switch waits for the lb hosts to stop, or start, routing to an instance.
    type: float
    default: 60
  token:
    description:
      - The service's ACL token, written for the deploy agent (0600). Never shown.
      - Empty with O(management_token) - derived from it and the service's name (the same on every run).
    type: str
    default: ""
  token_accessor:
    description: The accessor ID the token gets when it is created (derived with the token when empty).
    type: str
    default: ""
  management_token:
    description: A token that may create the service's token when it does not exist. Never shown.
    type: str
    default: ""
  keep:
    description: Releases kept on the host.
    type: int
    default: 5
"""

EXAMPLES = r"""
- name: Can release 7 go here?
  moorage.platform.release:
    step: check
    service: "{{ moorage_service }}"
    instances: "{{ moorage_instances | selectattr('host', 'equalto', inventory_hostname) | list }}"
    release: 7
    version: "1.4"
    archive: {digest: "{{ archive_sha256 }}", suffix: .tar.gz}
  register: here

- name: Ship the archive
  ansible.builtin.copy:
    src: "{{ archive_path }}"
    dest: "{{ here.archive_dest }}"
    mode: "0644"
  when: not here.archive_present

- name: Release 7 on this host
  moorage.platform.release:
    step: ship
    service: "{{ moorage_service }}"
    instances: "{{ moorage_instances | selectattr('host', 'equalto', inventory_hostname) | list }}"
    release: 7
    version: "1.4"
    archive: {digest: "{{ archive_sha256 }}", suffix: .tar.gz}
    token: "{{ service_token }}"
"""

RETURN = r"""
archive_present:
  description: Whether the archive (or its unpacked files) is on the host already.
  returned: step is check
  type: bool
archive_dest:
  description: Where the archive is to be shipped.
  returned: step is check
  type: str
running:
  description: This host's instances of the release and the release each runs now (null when not running).
  returned: step is check
  type: dict
changes:
  description: What was written (in check mode, would be).
  returned: step is ship
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.moorage.platform.plugins.module_utils.layout import HOST_AGENT_ARGUMENTS
from ansible_collections.moorage.platform.plugins.module_utils.prepare import run_step

ARGUMENT_SPEC = {
    "step": {"type": "str", "choices": ["check", "ship"], "required": True},
    "service": {"type": "dict", "required": True},
    "instances": {"type": "list", "elements": "dict", "required": True},
    "release": {"type": "int", "required": True},
    "version": {"type": "str", "required": True},
    "files_release": {"type": "int"},
    "archive": {"type": "dict", "options": {"digest": {"type": "str", "required": True}, "suffix": {"type": "str", "required": True}}},
    "secrets": {"type": "dict", "default": {}, "no_log": True},
    "lbs": {"type": "list", "elements": "str", "default": []},
    "drain_timeout": {"type": "float", "default": 60},
    "token": {"type": "str", "default": "", "no_log": True},
    "token_accessor": {"type": "str", "default": ""},
    "management_token": {"type": "str", "default": "", "no_log": True},
    "keep": {"type": "int", "default": 5},
    **HOST_AGENT_ARGUMENTS,
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    result = run_step(module.params, check_mode=module.check_mode)
    if not result.pop("ok"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
