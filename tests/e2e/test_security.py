"""Security by default on the converged session lab, as someone on the lab's network would find it.

Each test asks the real thing from outside (the controller is on the lab's bridge, like any other
machine on that network): Consul's HTTP API without a token, NGINX with a Host nobody declared, SSH
with a password.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
import requests
from platform_cli import Platform

from moorage.agents.consul import ConsulClient
from moorage.agents.prepare import ensure_service_token, service_token
from moorage.deploy.keys import lock_key, release_key

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def management(platform: Platform) -> dict[str, str]:
    return {"X-Consul-Token": platform.management_token}


def test_anonymous_consul_requests_cannot_read_or_write_kv_on_any_server(platform: Platform) -> None:
    key, value = f"moorage/services/security-probe/{uuid.uuid4().hex}", "not-for-anonymous"
    first = platform.consul_api(platform.lab.group("consul_servers")[0].name)
    assert requests.put(f"{first}/kv/{key}", data=value, headers=management(platform), timeout=10).json() is True
    try:
        for server in platform.lab.group("consul_servers"):
            api = platform.consul_api(server.name)
            read = requests.get(f"{api}/kv/{key}", timeout=10)
            listed = requests.get(f"{api}/kv/moorage/", params={"recurse": "true"}, timeout=10)
            written = requests.put(f"{api}/kv/{key}", data="overwritten", timeout=10)
            deleted = requests.delete(f"{api}/kv/{key}", timeout=10)
            assert read.status_code in (403, 404) and value not in read.text, (server.name, read.status_code, read.text)
            assert listed.status_code in (403, 404) and "security-probe" not in listed.text, (server.name, listed.status_code)
            assert (written.status_code, deleted.status_code) == (403, 403), (server.name, written.text, deleted.text)
        kept = requests.get(f"{first}/kv/{key}", params={"raw": "true"}, headers=management(platform), timeout=10)
        assert kept.text == value
    finally:
        requests.delete(f"{first}/kv/{key}", headers=management(platform), timeout=10)


def test_anonymous_consul_requests_cannot_register_or_deregister(platform: Platform) -> None:
    name = f"intruder-{uuid.uuid4().hex[:8]}"
    for host in platform.lab.group("consul_servers"):  # the only agents whose HTTP API is on the network
        api = platform.consul_api(host.name)
        registered = requests.put(f"{api}/agent/service/register", json={"Name": name, "Port": 1}, timeout=10)
        catalog = requests.put(
            f"{api}/catalog/register", json={"Node": host.name, "Address": host.address, "Service": {"Service": name}}, timeout=10
        )
        assert (registered.status_code, catalog.status_code) == (403, 403), (host.name, registered.text, catalog.text)
        # Every service this agent holds (the platform's own, and any deployed one) stays registered.
        held = requests.get(f"{api}/agent/services", headers=management(platform), timeout=10).json()
        for service_id in held:
            gone = requests.put(f"{api}/agent/service/deregister/{service_id}", timeout=10)
            assert gone.status_code == 403, (host.name, service_id, gone.status_code, gone.text)
        after = requests.get(f"{api}/agent/services", headers=management(platform), timeout=10).json()
        assert set(after) == set(held), host.name
        assert name not in json.dumps(after)


def test_one_services_token_cannot_touch_another_services_kv_lock_or_registrations(platform: Platform) -> None:
    """Each deployed service gets its own token (made the way a deploy makes it): it may register its
    own instances, and nothing of another service's, nor any deploy state in KV."""
    suffix = uuid.uuid4().hex[:8]
    mine, theirs = f"alpha-{suffix}", f"beta-{suffix}"
    host = platform.lab.group("consul_servers")[0]
    api = platform.consul_api(host.name)
    address = api.removesuffix("/v1")
    tokens = {name: service_token(platform.management_token, name) for name in (mine, theirs)}
    for name, (secret, accessor) in tokens.items():
        ensure_service_token(ConsulClient(address, secret), name, secret, accessor, platform.management_token)
    as_mine, as_theirs = ({"X-Consul-Token": tokens[name][0]} for name in (mine, theirs))
    their_instance = f"{theirs}-1"
    key = release_key(theirs, 1)
    assert requests.put(f"{api}/kv/{key}", data="release of theirs", headers=management(platform), timeout=10).json() is True
    try:
        # The positive control: each token registers its own service.
        for name, headers in ((mine, as_mine), (theirs, as_theirs)):
            own = requests.put(
                f"{api}/agent/service/register", json={"ID": f"{name}-1", "Name": name, "Port": 1}, headers=headers, timeout=10
            )
            assert own.status_code == 200, (name, own.text)
        register = requests.put(
            f"{api}/agent/service/register", json={"ID": f"{theirs}-9", "Name": theirs, "Port": 2}, headers=as_mine, timeout=10
        )
        deregister = requests.put(f"{api}/agent/service/deregister/{their_instance}", headers=as_mine, timeout=10)
        maintenance = requests.put(
            f"{api}/agent/service/maintenance/{their_instance}", params={"enable": "true"}, headers=as_mine, timeout=10
        )
        read = requests.get(f"{api}/kv/{key}", headers=as_mine, timeout=10)
        overwrite = requests.put(f"{api}/kv/{key}", data="forged", headers=as_mine, timeout=10)
        lock = requests.put(f"{api}/kv/{lock_key(theirs)}", data="held by me", headers=as_mine, timeout=10)
        session = requests.put(f"{api}/session/create", json={"Name": "steal"}, headers=as_mine, timeout=10)
        statuses = {
            "register": register.status_code, "deregister": deregister.status_code, "maintenance": maintenance.status_code,
            "read release": read.status_code, "overwrite release": overwrite.status_code, "take lock": lock.status_code,
            "create session": session.status_code,
        }  # fmt: skip
        assert statuses == dict.fromkeys(statuses, 403), statuses
        held = requests.get(f"{api}/agent/services", headers=management(platform), timeout=10).json()
        assert their_instance in held and f"{theirs}-9" not in held
        assert held[their_instance]["Port"] == 1
        kept = requests.get(f"{api}/kv/{key}", params={"raw": "true"}, headers=management(platform), timeout=10)
        assert kept.text == "release of theirs"
    finally:
        for name in (mine, theirs):
            requests.put(f"{api}/agent/service/deregister/{name}-1", headers=management(platform), timeout=10)
            requests.delete(f"{api}/acl/token/{tokens[name][1]}", headers=management(platform), timeout=10)
        requests.delete(f"{api}/kv/{key}", headers=management(platform), timeout=10)


def test_a_host_nobody_declared_gets_the_fallback_never_a_service(platform: Platform) -> None:
    for lb in platform.lab.group("lb"):
        answer = requests.get(f"http://{lb.address}/", headers={"Host": f"undeclared-{uuid.uuid4().hex[:8]}.example.test"}, timeout=10)
        assert (answer.status_code, answer.text.strip()) == (503, "no service routed for this host"), (lb.name, answer.text)
        bare = requests.get(f"http://{lb.address}/", headers={"Host": lb.address}, timeout=10)
        assert (bare.status_code, bare.text.strip()) == (503, "no service routed for this host"), (lb.name, bare.text)


# What may listen beyond loopback, per inventory group (port -> why). Everything else listens on
# 127.0.0.1 only, or not at all (Alertmanager's cluster port, Consul DNS on the network).
NETWORK_PORTS = {
    "all": {22: "sshd", 8301: "Consul LAN gossip", 9100: "node_exporter, scraped by Prometheus"},
    "consul_servers": {8300: "Consul server RPC", 8302: "Consul WAN gossip", 8500: "Consul HTTP API, asked by the controller"},
    "monitoring": {9090: "Prometheus", 2514: "rsyslog, receiving every host's logs"},
    "lb": {80: "NGINX"},
}


def network_listeners(platform: Platform, host: str) -> dict[int, str]:
    """Port -> process of every TCP socket of ``host`` listening beyond loopback, but the ports of the
    services deployed there (registered in Consul on that node)."""
    first = platform.consul_api(platform.lab.group("consul_servers")[0].name)
    registered = requests.get(f"{first}/catalog/node-services/{host}", headers=management(platform), timeout=10).json()
    deployed = {service["Port"] for service in registered["Services"] if "moorage" in (service.get("Tags") or [])}
    listeners: dict[int, str] = {}
    for line in platform.lab.run(host, "ss -Hltnp").stdout.splitlines():
        fields = line.split()
        address, port = fields[3].rsplit(":", 1)
        if address.strip("[]") not in ("127.0.0.1", "::1") and int(port) not in deployed:
            listeners[int(port)] = fields[5] if len(fields) > 5 else "?"
    return listeners


def test_the_platform_listens_on_the_network_only_where_it_must(platform: Platform) -> None:
    """Consul's HTTP API on the servers only, Prometheus on the monitoring host, Alertmanager nowhere but
    loopback, and nothing else a stranger on the network could reach (services' own ports excepted)."""
    for host in platform.lab.hosts:
        allowed = {port for group, ports in NETWORK_PORTS.items() for port in ports if group == "all" or group in host.groups}
        listening = network_listeners(platform, host.name)
        assert set(listening) <= allowed, (host.name, {port: name for port, name in listening.items() if port not in allowed})
        probe = requests.get(f"http://{host.address}:8500/v1/status/leader", timeout=5) if 8500 in listening else None
        assert (probe is not None) == ("consul_servers" in host.groups), host.name
    monitoring = platform.lab.group("monitoring")[0]
    assert requests.get(f"http://{monitoring.address}:9090/-/ready", timeout=10).status_code == 200
    for port in (9093, 9094):  # Alertmanager: Prometheus asks it on loopback; it runs alone
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://{monitoring.address}:{port}/", timeout=5)
    status = json.loads(platform.lab.run(monitoring.name, "curl -sf http://127.0.0.1:9093/api/v2/status").stdout)
    assert status["cluster"]["status"] == "disabled"  # answers Prometheus on loopback, alone


def test_ssh_accepts_keys_only(platform: Platform) -> None:
    for host in platform.lab.hosts:
        attempt = subprocess.run(
            [
                "ssh", "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no", "-o",
                "PreferredAuthentications=password,keyboard-interactive",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
                f"root@{host.address}", "true",
            ],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert attempt.returncode == 255 and "Permission denied (publickey)." in attempt.stderr, (host.name, attempt.stderr)
        config = platform.lab.run(host.name, "sshd -T").stdout.lower().splitlines()
        assert {"passwordauthentication no", "kbdinteractiveauthentication no"} <= set(config), host.name
