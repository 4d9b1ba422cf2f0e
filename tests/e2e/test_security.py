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
    for host in platform.lab.hosts:
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


def test_a_host_nobody_declared_gets_the_fallback_never_a_service(platform: Platform) -> None:
    for lb in platform.lab.group("lb"):
        answer = requests.get(f"http://{lb.address}/", headers={"Host": f"undeclared-{uuid.uuid4().hex[:8]}.example.test"}, timeout=10)
        assert (answer.status_code, answer.text.strip()) == (503, "no service routed for this host"), (lb.name, answer.text)
        bare = requests.get(f"http://{lb.address}/", headers={"Host": lb.address}, timeout=10)
        assert (bare.status_code, bare.text.strip()) == (503, "no service routed for this host"), (lb.name, bare.text)


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
