"""Ansible inventory from the Consul catalog: every node a host, groups per service and per node meta."""

from __future__ import annotations

DOCUMENTATION = r"""
name: consul
short_description: Hosts and groups from the Consul catalog
description:
  - Every node in the Consul catalog becomes a host whose C(ansible_host) is the node's address.
  - Every service gives a group C(<service_group_prefix><service>) of the nodes that run it,
    and every node meta pair a group C(<meta_group_prefix><key>_<value>).
  - Host variables C(consul_node), C(consul_datacenter), C(consul_node_meta) and
    C(consul_services) (service name -> list of instances with ID, port, tags and meta).
  - Usable with C(ansible-inventory -i consul.yml --list); the config file names this plugin.
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: >-
      The name of this plugin; the inventory file must say so: C(moorage.platform.consul) (its FQCN,
      found through the collection), or C(consul) where the plugin is on the inventory plugin path.
    required: true
    choices: ['moorage.platform.consul', 'consul']
  url:
    description: Base URL of a Consul agent's HTTP API.
    type: str
    default: http://127.0.0.1:8500
    env:
      - name: CONSUL_HTTP_ADDR
  token:
    description: ACL token with read access to nodes and services. Never written to any output.
    type: str
    env:
      - name: CONSUL_HTTP_TOKEN
  datacenter:
    description: Datacenter to read; the agent's own when unset.
    type: str
  validate_certs:
    description: Verify the TLS certificate of an https URL.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each HTTP call.
    type: int
    default: 10
  service_group_prefix:
    description: Prefix of the group made for each service.
    type: str
    default: service_
  meta_group_prefix:
    description: Prefix of the group made for each node meta key and value.
    type: str
    default: meta_
"""

EXAMPLES = r"""
# consul.yml
plugin: moorage.platform.consul
url: http://10.0.0.10:8500
# token from CONSUL_HTTP_TOKEN
keyed_groups:
  - key: consul_datacenter
    prefix: dc
"""

import json
from urllib.parse import quote, urlencode

from ansible.errors import AnsibleError
from ansible.module_utils.urls import open_url
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable


class InventoryModule(BaseInventoryPlugin, Constructable):
    NAME = "consul"

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith(("consul.yml", "consul.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        nodes = self._get("/v1/catalog/nodes")
        services_by_node: dict[str, dict[str, list[dict]]] = {node["Node"]: {} for node in nodes}
        for service_name in sorted(self._get("/v1/catalog/services")):
            for entry in self._get(f"/v1/catalog/service/{quote(service_name, safe='')}"):
                instance = {
                    "id": entry["ServiceID"],
                    "address": entry["ServiceAddress"] or entry["Address"],
                    "port": entry["ServicePort"],
                    "tags": entry["ServiceTags"] or [],
                    "meta": entry.get("ServiceMeta") or {},
                }
                services_by_node.setdefault(entry["Node"], {}).setdefault(service_name, []).append(instance)
        for node in nodes:
            self._add_node(node, services_by_node.get(node["Node"], {}))

    def _add_node(self, node: dict, services: dict[str, list[dict]]) -> None:
        host = node["Node"]
        self.inventory.add_host(host)
        meta = node.get("Meta") or {}
        variables = {
            "ansible_host": node["Address"],
            "consul_node": host,
            "consul_datacenter": node.get("Datacenter"),
            "consul_node_meta": meta,
            "consul_services": services,
        }
        for name, value in variables.items():
            self.inventory.set_variable(host, name, value)
        for service_name in services:
            self._add_to_group(self.get_option("service_group_prefix") + service_name, host)
        for key, value in meta.items():
            if value:
                self._add_to_group(f"{self.get_option('meta_group_prefix')}{key}_{value}", host)
        strict = self.get_option("strict")
        self._set_composite_vars(self.get_option("compose"), variables, host, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), variables, host, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, host, strict=strict)

    def _add_to_group(self, raw_name: str, host: str) -> None:
        group = self.inventory.add_group(self._sanitize_group_name(raw_name))
        self.inventory.add_child(group, host)

    def _get(self, api_path: str):
        query = {"dc": self.get_option("datacenter")} if self.get_option("datacenter") else {}
        url = self.get_option("url").rstrip("/") + api_path + (f"?{urlencode(query)}" if query else "")
        headers = {"X-Consul-Token": self.get_option("token")} if self.get_option("token") else {}
        try:
            response = open_url(
                url,
                headers=headers,
                timeout=self.get_option("timeout"),
                validate_certs=self.get_option("validate_certs"),
            )
            return json.loads(response.read())
        except Exception as error:
            raise AnsibleError(f"consul inventory: GET {url} failed: {error}") from error
