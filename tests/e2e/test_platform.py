"""`moorage platform up` on the 4-host session lab: what a user of the platform would notice.

Everything is real: Ansible over SSH to systemd-nspawn machines, Consul 1.8.7 from Debian,
Prometheus, Alertmanager, rsyslog over RELP, NGINX. The ELK option of the logging role cannot run
here (Elastic's packages are in no registry the lab reaches); its check-mode run is the last test.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from platform_cli import Platform, platform_up
from ruamel.yaml import YAML
from waiting import eventually

from moorage.lab import vault as lab_vault
from moorage.vault import site_vault_file

pytestmark = pytest.mark.e2e


def consul_get(platform: Platform, host: str, path: str, token: str | None = None) -> requests.Response:
    headers = {"X-Consul-Token": token} if token else {}
    return requests.get(platform.consul_api(host) + path, headers=headers, timeout=10)


# --- Consul ---------------------------------------------------------------------------------


def test_consul_members_alive_and_exactly_one_leader(platform: Platform) -> None:
    lab, token = platform.lab, platform.management_token
    members = consul_get(platform, "lab-1", "/agent/members", token).json()
    assert {member["Name"]: member["Status"] for member in members} == {host.name: 1 for host in lab.hosts}  # 1 = alive
    servers = {host.address for host in lab.group("consul_servers")}
    # Each agent's own view, asked on its host (a client agent's HTTP API answers on loopback only).
    leaders = {
        json.loads(lab.run(host.name, "curl -sf http://127.0.0.1:8500/v1/status/leader").stdout).rsplit(":", 1)[0] for host in lab.hosts
    }
    assert len(leaders) == 1 and leaders <= servers, f"every agent must see the same single leader: {leaders}"
    peers = {peer.rsplit(":", 1)[0] for peer in consul_get(platform, "lab-1", "/status/peers").json()}
    assert peers == servers


def test_anonymous_requests_read_no_kv_and_register_nothing(platform: Platform) -> None:
    api, token = platform.consul_api("lab-1"), platform.management_token
    key = f"moorage-e2e/{uuid.uuid4().hex}"
    assert requests.put(f"{api}/kv/{key}", data="secret", headers={"X-Consul-Token": token}, timeout=10).json() is True
    try:
        assert requests.get(f"{api}/kv/{key}", timeout=10).status_code == 403
        assert requests.get(f"{api}/kv/{key}", headers={"X-Consul-Token": token}, timeout=10).status_code == 200
        assert requests.put(f"{api}/kv/moorage-e2e/anonymous", data="x", timeout=10).status_code == 403
        registration = {"Name": "intruder", "Port": 9999}
        assert requests.put(f"{api}/agent/service/register", json=registration, timeout=10).status_code == 403
        services = requests.get(f"{api}/catalog/services", headers={"X-Consul-Token": token}, timeout=10).json()
        assert "intruder" not in services
    finally:
        requests.delete(f"{api}/kv/{key}", headers={"X-Consul-Token": token}, timeout=10)


def test_consul_service_names_resolve_on_every_host(platform: Platform) -> None:
    servers = {host.address for host in platform.lab.group("consul_servers")}
    for host in platform.lab.hosts:
        answer = platform.lab.run(host.name, "getent hosts consul.service.consul").stdout
        assert {line.split()[0] for line in answer.splitlines()} == servers, f"{host.name}: {answer!r}"


# --- Prometheus -----------------------------------------------------------------------------


def node_exporter_targets(platform: Platform) -> dict[str, str]:
    targets = requests.get(platform.prometheus_api() + "/targets", timeout=10).json()["data"]["activeTargets"]
    return {t["labels"]["node"]: t["health"] for t in targets if t["labels"].get("job") == "node-exporter"}


def test_prometheus_scrapes_every_node_exporter(platform: Platform) -> None:
    every_host_up = {host.name: "up" for host in platform.lab.hosts}
    eventually(
        lambda: True if node_exporter_targets(platform) == every_host_up else None,
        within=60,
        what=f"every node_exporter target up in Prometheus (last seen {node_exporter_targets(platform)})",
    )


@pytest.fixture()
def failing_service(platform: Platform) -> Iterator[str]:
    """A service tagged metrics whose port nothing listens on and whose Consul check fails."""
    name = f"e2e-failing-{uuid.uuid4().hex[:6]}"
    api, headers = platform.consul_api(platform.lab.group("consul_servers")[0].name), {"X-Consul-Token": platform.management_token}
    definition = {
        "Name": name,
        "Port": 9,
        "Tags": ["metrics"],
        "Check": {"TCP": "127.0.0.1:9", "Interval": "2s", "Timeout": "1s"},
    }
    requests.put(f"{api}/agent/service/register", json=definition, headers=headers, timeout=10).raise_for_status()
    yield name
    requests.put(f"{api}/agent/service/deregister/{name}", headers=headers, timeout=10)


def firing_alerts(platform: Platform, job: str) -> set[str]:
    alerts = requests.get(platform.prometheus_api() + "/alerts", timeout=10).json()["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["labels"].get("job") == job and a["state"] == "firing"}


def test_a_failing_service_fires_alerts_through_alertmanager(platform: Platform, failing_service: str) -> None:
    wanted = {"InstanceDown", "ConsulServiceCritical"}
    eventually(
        lambda: True if firing_alerts(platform, failing_service) >= wanted else None,
        within=180,
        every=3,
        what=f"{wanted} firing for {failing_service} (firing: {firing_alerts(platform, failing_service)})",
    )
    monitoring = platform.lab.group("monitoring")[0].name  # Alertmanager answers Prometheus on loopback only

    def received() -> bool | None:
        alerts = json.loads(platform.lab.run(monitoring, "curl -sf http://127.0.0.1:9093/api/v2/alerts").stdout)
        names = {a["labels"]["alertname"] for a in alerts if a["labels"].get("job") == failing_service}
        return True if names >= wanted else None

    eventually(received, within=60, every=2, what=f"Alertmanager received {wanted} for {failing_service}")


# --- NGINX ingress --------------------------------------------------------------------------


def test_nginx_answers_the_fallback_and_keeps_serving_without_its_consul_agent(platform: Platform) -> None:
    lb = platform.lab.group("lb")[0]
    unrouted = {"Host": f"nobody-{uuid.uuid4().hex[:6]}.example.test"}
    before = requests.get(f"http://{lb.address}/", headers=unrouted, timeout=10)
    assert before.status_code == 503 and before.text.strip(), "the fallback must be a 503 with a body that says why"
    platform.lab.run(lb.name, "systemctl stop consul")
    try:
        time.sleep(3)  # the watcher notices Consul is gone and must keep the last good config
        during = requests.get(f"http://{lb.address}/", headers=unrouted, timeout=10)
        assert (during.status_code, during.text) == (before.status_code, before.text)
        assert platform.lab.run(lb.name, "systemctl is-active nginx").stdout.strip() == "active"
    finally:
        platform.lab.run(lb.name, "systemctl start consul")


# --- Logging --------------------------------------------------------------------------------


def test_a_logger_line_on_every_host_reaches_the_logging_host_within_5s(platform: Platform) -> None:
    lab = platform.lab
    store = lab.group("logging")[0].name
    tag = f"e2e-{uuid.uuid4().hex[:8]}"
    for host in lab.hosts:
        line = f"hello from {host.name} {uuid.uuid4().hex}"
        lab.run(host.name, f"logger -t {tag} '{line}'")
        path = f"/var/log/moorage/{host.name}/{tag}.log"

        def arrived(path: str = path, line: str = line) -> bool | None:
            found = lab.run(store, f"grep -F -q '{line}' {path}", check=False).returncode == 0
            return True if found else None

        eventually(arrived, within=5, every=0.25, what=f"{host.name}'s logger line in {store}:{path}")


# --- Idempotence and check mode -------------------------------------------------------------


def test_a_re_run_puts_back_a_removed_package_and_a_stopped_service(platform: Platform) -> None:
    """The roles skip apt and systemd calls the package facts and service state say are not needed:
    a package removed by hand and a service stopped by hand must still come back."""
    removed_on, stopped_on = "lab-3", "lab-4"
    platform.lab.run(removed_on, "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q prometheus-node-exporter")
    platform.lab.run(stopped_on, "systemctl stop prometheus-node-exporter")
    again = platform_up(platform.lab.inventory)
    assert again.returncode == 0, again.error
    changed = again.changed_per_host()
    assert changed[removed_on] > 0 and changed[stopped_on] > 0, changed
    assert all(count == 0 for host, count in changed.items() if host not in (removed_on, stopped_on)), changed
    assert platform.lab.run(removed_on, "systemctl is-active prometheus-node-exporter").stdout.strip() == "active"
    assert platform.lab.run(stopped_on, "systemctl is-active prometheus-node-exporter").stdout.strip() == "active"


def test_a_second_platform_up_changes_nothing(platform: Platform) -> None:
    again = platform_up(platform.lab.inventory)
    assert again.returncode == 0, again.error
    assert again.changed_per_host() == {host.name: 0 for host in platform.lab.hosts}


def test_check_mode_on_the_converged_platform_changes_nothing(platform: Platform) -> None:
    checked = platform_up(platform.lab.inventory, "--check")
    assert checked.returncode == 0, checked.error
    assert checked.result["check"] is True
    assert checked.changed_per_host() == {host.name: 0 for host in platform.lab.hosts}


def test_a_platform_up_with_nothing_changed_runs_no_playbook_and_any_drift_converges(platform: Platform) -> None:
    """Every host says whether it holds what its last converge recorded (files, units, packages, the
    same inputs); when all do, platform.yml does not run. A file edited by hand converges every host
    and is put back; the routes the ingress watcher renders are its own; --full runs the playbook."""
    lab, inventory = platform.lab, platform.lab.inventory
    assert platform_up(inventory).returncode == 0  # an earlier test may have left something to put back
    again = platform_up(inventory)
    assert again.returncode == 0, again.error
    assert again.result["converged"] is False and again.result["playbook"] == "platform_state.yml", again.result
    assert again.changed_per_host() == {host.name: 0 for host in lab.hosts}

    lb = lab.group("lb")[0].name
    routes = lab.run(lb, "cat /etc/nginx/moorage/ingress.conf").stdout
    lab.run(lb, "echo '# rendered again by the watcher' >> /etc/nginx/moorage/ingress.conf")
    try:
        held = platform_up(inventory)
    finally:
        lab.run(lb, f"printf %s {shlex.quote(routes)} > /etc/nginx/moorage/ingress.conf")
    assert held.returncode == 0 and held.result["converged"] is False, held.result

    nginx_conf = lab.run(lb, "cat /etc/nginx/nginx.conf").stdout
    lab.run(lb, "echo '# edited by hand' >> /etc/nginx/nginx.conf")
    fixed = platform_up(inventory)
    assert fixed.returncode == 0, fixed.error
    assert fixed.result["converged"] is True and fixed.result["playbook"] == "platform.yml"
    assert fixed.result["reason"].startswith(f"{lb}: /etc/nginx/nginx.conf changed"), fixed.result["reason"]
    assert fixed.changed_per_host()[lb] > 0
    assert lab.run(lb, "cat /etc/nginx/nginx.conf").stdout == nginx_conf

    full = platform_up(inventory, "--full")
    assert full.returncode == 0 and full.result["converged"] is True and full.result["reason"] == ""
    assert full.changed_per_host() == {host.name: 0 for host in lab.hosts}
    assert platform_up(inventory).result["converged"] is False


# --- Bad inventories: one line naming the group or host, nothing changed --------------------


def edited_inventory(lab: Any, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    yaml = YAML()
    document = yaml.load(lab.inventory.read_text())
    edit(document["all"])
    path = tmp_path / "hosts.yml"
    with path.open("w") as stream:
        yaml.dump(document, stream)
    copy_site_vault(lab, path)
    return path


def copy_site_vault(lab: Any, inventory: Path) -> None:
    """The edited inventory is another site's: it gets the lab's vault file (its password is passed)."""
    vault_file = site_vault_file(inventory)
    vault_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(site_vault_file(lab.inventory), vault_file)


def lab_password(lab: Any) -> str:
    return str(lab_vault.password_file(lab.name))


def remove_lb(inventory: dict[str, Any]) -> None:
    del inventory["children"]["lb"]


def two_consul_servers(inventory: dict[str, Any]) -> None:
    inventory["children"]["consul_servers"]["hosts"] = {"lab-1": None, "lab-2": None}


def unreachable_host(inventory: dict[str, Any]) -> None:
    address = inventory["hosts"]["lab-1"]["ansible_host"].rsplit(".", 1)[0] + ".250"  # in the lab's range, unused
    inventory["hosts"]["lab-ghost"] = {"ansible_host": address, "ansible_ssh_common_args": "-o ConnectTimeout=3"}
    inventory["children"]["app"]["hosts"]["lab-ghost"] = None


@pytest.mark.parametrize(
    ("edit", "named"),
    [(two_consul_servers, "consul_servers"), (remove_lb, "'lb'"), (unreachable_host, "lab-ghost")],
    ids=["consul_servers-of-2", "no-lb", "unreachable-host"],
)
def test_a_bad_inventory_fails_in_one_line_and_changes_nothing(
    platform: Platform, tmp_path: Path, edit: Callable[[dict[str, Any]], None], named: str
) -> None:
    run = platform_up(edited_inventory(platform.lab, tmp_path, edit), "--vault-password-file", lab_password(platform.lab))
    assert run.returncode == 2, run.error
    assert run.error is not None and "\n" not in run.error and named in run.error, run.error
    assert all(changed == 0 for changed in run.changed_per_host().values()), run.result


# --- The ELK option (no Elastic registry reachable here: check mode only) -------------------


def test_the_elk_logging_option_passes_check_mode(platform: Platform, tmp_path: Path) -> None:
    """Elasticsearch, Kibana and Filebeat are in no registry the lab reaches, so this runs the ELK
    path of the logging role in check mode only (the real code path, nothing installed)."""

    def elk(inventory: dict[str, Any]) -> None:
        inventory["vars"]["logging_backend"] = "elk"

    inventory = edited_inventory(platform.lab, tmp_path, elk)
    run = platform_up(inventory, "--check", "--vault-password-file", lab_password(platform.lab))
    assert run.returncode == 0, run.error
