"""Register or deregister one instance of a moorage service with the local Consul agent."""

from __future__ import annotations

DOCUMENTATION = r"""
module: consul_instance
short_description: Register or deregister a moorage service instance with the local Consul agent
description:
  - Registers one instance (a Consul service with its ID, name, address, port, tags, meta and health
    check) with the Consul agent of the host it runs on, or deregisters it.
  - The tags follow moorage's route rules (the same code as C(moorage validate) and the ingress
    watcher): C(moorage), one C(route=HOST/PATH) per route, and C(metrics) when the instance is scraped.
    A route that breaks the rules fails the task, naming the rule.
  - Idempotent. The registration's digest is kept in the service meta C(moorage_registration); when
    the agent already holds the same registration nothing is sent.
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
    description: ACL token with write on the service (a service identity). Never shown.
    type: str
    default: ""
  id:
    description: The instance's service ID (unique on the agent).
    type: str
    required: true
  name:
    description: The service name. Required with O(state=present).
    type: str
  address:
    description: Address the instance answers on.
    type: str
    default: ""
  port:
    description: Port the instance listens on (0 for none).
    type: int
    default: 0
  routes:
    description: Routes of the service (C(moorage.yml) C(spec.routes)); each becomes a C(route=HOST/PATH) tag.
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: Host name, such as C(hello.example.test) or C(*.example.test).
        type: str
        required: true
      path:
        description: Path prefix.
        type: str
        default: /
  metrics_path:
    description: When set, Prometheus scrapes the instance on this path (tag C(metrics), meta C(metrics_path)).
    type: str
  health:
    description:
      - The health check as moorage renders it (C(moorage_service.health)); none when omitted.
      - C(http) checks C(http://ADDRESS:PORT) plus that path, C(tcp) checks C(ADDRESS:PORT), C(command) runs it.
    type: dict
    suboptions:
      kind: {description: "http, tcp or command.", type: str, required: true, choices: [http, tcp, command]}
      http: {description: "Path of an http check.", type: str}
      command: {description: "Program and arguments of a command check.", type: list, elements: str}
      interval: {description: "How often, as a Consul duration (V(10s)).", type: str, required: true}
      timeout: {description: "How long a check may take.", type: str, required: true}
      deregister_after: {description: "Deregister an instance critical for this long.", type: str, required: true}
  meta:
    description: Service meta (string values).
    type: dict
    default: {}
  timestamp_meta_key:
    description:
      - A meta key set to the UTC time of each (re)registration (V(2025-01-31T12:00:00Z)).
      - It does not count as a difference, so an unchanged instance keeps its time.
    type: str
  state:
    description: Registered (V(present)) or not (V(absent)).
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Register hello-1 with its route, health check and metrics
  moorage.platform.consul_instance:
    token: "{{ service_token }}"
    id: hello-1
    name: hello
    address: 10.213.0.11
    port: 8080
    routes: [{host: hello.example.test, path: /}]
    metrics_path: /metrics
    health: {kind: http, http: /healthz, interval: 2s, timeout: 1s, deregister_after: 5m}
    meta: {version: "1.4", release: "7"}
    timestamp_meta_key: started

- name: Deregister it
  moorage.platform.consul_instance:
    token: "{{ service_token }}"
    id: hello-1
    state: absent
"""

RETURN = r"""
registration:
  description: The registration as sent to (or, when unchanged, held by) the agent; absent with O(state=absent).
  returned: state is present
  type: dict
  sample: {ID: hello-1, Name: hello, Address: 10.213.0.11, Port: 8080, Tags: [moorage, route=hello.example.test/]}
tags:
  description: The instance's tags.
  returned: state is present
  type: list
  elements: str
  sample: [moorage, route=hello.example.test/, metrics]
"""

import hashlib
import json
import time
import urllib.parse
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.moorage.platform.plugins.module_utils.consul import ConsulClient, ConsulError
from ansible_collections.moorage.platform.plugins.module_utils.routes import InvalidRoute, instance_tags, route

DIGEST_META_KEY = "moorage_registration"

ARGUMENT_SPEC: dict[str, Any] = {
    "consul_addr": {"type": "str", "default": "http://127.0.0.1:8500"},
    "token": {"type": "str", "default": "", "no_log": True},
    "id": {"type": "str", "required": True},
    "name": {"type": "str"},
    "address": {"type": "str", "default": ""},
    "port": {"type": "int", "default": 0},
    "routes": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {"host": {"type": "str", "required": True}, "path": {"type": "str", "default": "/"}},
    },
    "metrics_path": {"type": "str"},
    "health": {
        "type": "dict",
        "options": {
            "kind": {"type": "str", "required": True, "choices": ["http", "tcp", "command"]},
            "http": {"type": "str"},
            "command": {"type": "list", "elements": "str"},
            "interval": {"type": "str", "required": True},
            "timeout": {"type": "str", "required": True},
            "deregister_after": {"type": "str", "required": True},
        },
    },
    "meta": {"type": "dict", "default": {}},
    "timestamp_meta_key": {"type": "str", "no_log": False},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
}


def health_check(params: dict[str, Any]) -> dict[str, Any]:
    """Consul's check definition for the instance's health (empty: no check)."""
    health = params["health"]
    if not health:
        return {}
    address, port = params["address"], params["port"]
    check: dict[str, Any] = {
        "Name": f"{params['name']} {health['kind']}",
        "Interval": health["interval"],
        "Timeout": health["timeout"],
        "DeregisterCriticalServiceAfter": health["deregister_after"],
    }
    if health["kind"] == "http":
        check["HTTP"] = f"http://{address}:{port}{health['http'] or '/'}"
    elif health["kind"] == "tcp":
        check["TCP"] = f"{address}:{port}"
    else:
        check["Args"] = list(health["command"] or [])
    return check


def registration(params: dict[str, Any]) -> dict[str, Any]:
    """The registration body, with the digest of everything but the timestamp in its meta. ValueError on a bad route."""
    routes = [route(item["host"], item["path"]) for item in params["routes"]]
    meta = {str(key): str(value) for key, value in params["meta"].items()}
    if params["metrics_path"]:
        meta["metrics_path"] = params["metrics_path"]
    body: dict[str, Any] = {
        "ID": params["id"],
        "Name": params["name"],
        "Address": params["address"],
        "Port": params["port"],
        "Tags": instance_tags(routes, metrics=bool(params["metrics_path"])),
        "Meta": meta,
    }
    check = health_check(params)
    if check:
        body["Check"] = check
    body["Meta"][DIGEST_META_KEY] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return body


def registered(client: ConsulClient, service_id: str) -> dict[str, Any] | None:
    """What the local agent holds for ``service_id`` (None: not registered)."""
    try:
        document = client.get(f"/v1/agent/service/{urllib.parse.quote(service_id, safe='')}").document
    except ConsulError as err:
        if err.status == 404:
            return None
        raise
    return document if isinstance(document, dict) else None


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("state", "present", ["name"])],
        supports_check_mode=True,
    )
    params = module.params
    client = ConsulClient(params["consul_addr"], params["token"])
    service_id = params["id"]
    try:
        current = registered(client, service_id)
        if params["state"] == "absent":
            if current is not None and not module.check_mode:
                client.put(f"/v1/agent/service/deregister/{urllib.parse.quote(service_id, safe='')}")
            module.exit_json(changed=current is not None)
        try:
            body = registration(params)
        except InvalidRoute as err:
            module.fail_json(msg=f"{service_id}: route {err}")
        current_meta = (current or {}).get("Meta") or {}
        stamp_key = params["timestamp_meta_key"]
        if current is not None and current_meta.get(DIGEST_META_KEY) == body["Meta"][DIGEST_META_KEY]:
            if stamp_key and stamp_key in current_meta:
                body["Meta"][stamp_key] = current_meta[stamp_key]
            module.exit_json(changed=False, registration=body, tags=body["Tags"])
        if stamp_key:
            body["Meta"][stamp_key] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if not module.check_mode:
            client.put("/v1/agent/service/register", body=body)
    except ConsulError as err:
        module.fail_json(msg=f"{service_id}: consul: {err}")
    module.exit_json(changed=True, registration=body, tags=body["Tags"])


if __name__ == "__main__":
    main()
