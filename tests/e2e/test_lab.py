"""``moorage lab`` end to end: real machines up, talking, installing from the lab repository, running
Docker; ``up`` twice changes nothing, ``up`` after a crash repairs, ``down`` leaves nothing.

These tests use their own lab (``moorage-e2e-lab``, 3 hosts; ``NAME-lab`` when ``MOORAGE_TEST_LAB``
names the session lab, so several checkouts can run them side by side) so the shared session lab
is not disturbed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from moorage.lab.paths import lab_dir
from moorage.lab.ssh import run_remote
from moorage.lab.vault import password_file

LAB = f"{os.environ['MOORAGE_TEST_LAB']}-lab" if os.environ.get("MOORAGE_TEST_LAB") else "moorage-e2e-lab"
MOORAGE = str(Path(shutil.which("moorage") or Path(__file__).parents[2] / ".venv/bin/moorage"))

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def moorage(*args: str, lab: str = LAB) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOORAGE, *args], capture_output=True, text=True, env={**os.environ, "MOORAGE_LAB": lab}, check=False)


def last_json_document(stdout: str) -> dict[str, Any]:
    """`--output json` prints progress events (one per line) and then the result document."""
    decoder, position, document = json.JSONDecoder(), 0, None
    while position < len(stdout):
        if stdout[position].isspace():
            position += 1
            continue
        document, position = decoder.raw_decode(stdout, position)
    assert isinstance(document, dict), stdout
    return document


def lab_up(hosts: int) -> dict[str, Any]:
    result = moorage("lab", "up", "--hosts", str(hosts), "--output", "json")
    if result.returncode != 0:
        pytest.fail(f"moorage lab up failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    return last_json_document(result.stdout)


def on(machine: dict[str, Any], command: str, timeout: float = 300) -> str:
    result = run_remote(lab_dir(LAB) / "id_ed25519", machine["address"], command, timeout=timeout)
    assert result.returncode == 0, f"{machine['hostname']}: {command}: {result.stderr or result.stdout}"
    return result.stdout.strip()


def processes_of_lab(lab: str) -> list[str]:
    """Command lines of every process that belongs to the lab's machines (nspawn or inside)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"--machine={lab}-" in cmdline or any(entry.startswith(f"MOORAGE_MACHINE={lab}-".encode()) for entry in environ):
            found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.fixture
def fresh_lab() -> Any:
    """Start from nothing; whatever happens, leave nothing."""
    moorage("lab", "down")
    yield
    moorage("lab", "down")


def test_lab_up_runs_real_machines_and_down_leaves_nothing(fresh_lab: None) -> None:
    first = lab_up(3)
    machines = first["machines"]
    assert [m["hostname"] for m in machines] == ["lab-1", "lab-2", "lab-3"]
    assert {m["action"] for m in machines} == {"started"}

    # systemd is PID 1 and finished booting with nothing failed; the hostname is the lab's.
    for machine in machines:
        assert on(machine, "systemctl is-system-running") == "running"
        assert on(machine, "hostname") == machine["hostname"]
        assert on(machine, "cat /proc/1/comm") == "systemd"

    # Machines reach each other by name.
    for machine in machines:
        for other in machines:
            on(machine, f"ping -c 1 -W 2 {other['hostname']}")

    # apt installs from the lab repository (the only source): consul comes from Debian bullseye.
    lab_1 = machines[0]
    on(lab_1, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q consul")
    assert "file:/srv/moorage-apt" in on(lab_1, "apt-cache policy consul")
    assert on(lab_1, "consul version").startswith("Consul v1.8.7")

    # A Docker container really runs on the docker host and publishes its port to the lab network.
    [docker_host] = [m for m in machines if "docker_hosts" in m["groups"]]
    on(docker_host, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io busybox-static")
    on(
        docker_host,
        "set -e; rm -rf /tmp/rootfs; mkdir -p /tmp/rootfs/bin /tmp/rootfs/www; cp /bin/busybox /tmp/rootfs/bin/;"
        " echo hello-from-docker > /tmp/rootfs/www/index.html;"
        " tar -C /tmp/rootfs -c . | docker import - lab/tiny:1;"
        " docker run -d --name tiny -p 8080:80 lab/tiny:1 /bin/busybox httpd -f -p 80 -h /www",
    )
    page = subprocess.run(
        ["curl", "-s", "--retry", "10", "--retry-connrefused", "--retry-delay", "1", f"http://{docker_host['address']}:8080/"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert page.stdout.strip() == "hello-from-docker"

    # Running `up` again changes nothing: same machines, same processes.
    second = lab_up(3)
    assert {m["action"] for m in second["machines"]} == {"already running"}
    assert [m["pid"] for m in second["machines"]] == [m["pid"] for m in machines]

    down = moorage("lab", "down")
    assert down.returncode == 0, down.stderr
    assert_nothing_left(first)


def test_lab_up_repairs_a_crashed_run(fresh_lab: None) -> None:
    machines = lab_up(3)["machines"]
    crashed = machines[1]
    os.kill(crashed["pid"], signal.SIGKILL)  # nspawn dies; the machine's systemd lives on, orphaned
    (lab_dir(LAB) / "machines" / crashed["hostname"] / "pid").unlink()

    repaired = lab_up(3)["machines"]
    assert [m["action"] for m in repaired] == ["already running", "started", "already running"]
    assert len([p for p in processes_of_lab(LAB) if f"--machine={LAB}-2 " in p + " "]) == 1
    assert on(repaired[1], "systemctl is-system-running") == "running"
    on(repaired[0], f"ping -c 1 -W 2 {crashed['hostname']}")


def test_lab_commands_fail_in_one_line_without_root() -> None:
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", MOORAGE, "lab", "up"],
        capture_output=True, text=True, check=False, env={**os.environ, "MOORAGE_LAB": LAB, "HOME": "/tmp"},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "moorage: error: moorage lab needs root (it creates a bridge and boots systemd-nspawn machines); run it with sudo"
    )


def test_session_lab_has_the_documented_layout(lab: Any) -> None:
    groups = {host.name: set(host.groups) for host in lab.hosts}
    assert sorted(groups) == ["lab-1", "lab-2", "lab-3", "lab-4"]
    assert [h.name for h in lab.group("consul_servers")] == ["lab-1", "lab-2", "lab-3"]
    assert [h.name for h in lab.group("docker_hosts")] == ["lab-4"]
    assert [h.name for h in lab.group("lb")] == ["lab-1", "lab-3"]
    assert [h.name for h in lab.group("app")] == ["lab-1", "lab-2", "lab-3", "lab-4"]
    inventory = subprocess.run(
        # the lab's site secrets are vaulted beside hosts.yml; docs/lab.md names this password file
        [str(Path(MOORAGE).with_name("ansible-inventory")), "-i", str(lab.inventory), "--list",
         "--vault-password-file", str(password_file(lab.name))],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    hostvars = json.loads(inventory.stdout)["_meta"]["hostvars"]
    assert hostvars["lab-2"]["ansible_host"] == lab.host("lab-2").address
    assert lab.run("lab-2", "hostname").stdout.strip() == "lab-2"


def assert_nothing_left(lab_up_result: dict[str, Any]) -> None:
    bridge, subnet = lab_up_result["bridge"], ipaddress.ip_network(lab_up_result["subnet"])
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert bridge not in links
    assert not re.search(rf"vb-{re.escape(LAB)}", links)
    addresses = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    assert not [a for a in re.findall(r"inet (\S+)/", addresses) if ipaddress.ip_address(a) in subnet]
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True).stdout
    assert str(subnet) not in routes
    mounts = Path("/proc/mounts").read_text()
    assert str(lab_dir(LAB)) not in mounts
    assert processes_of_lab(LAB) == []
    assert not lab_dir(LAB).exists()
    assert not list(Path("/run/systemd/nspawn/propagate").glob(f"{LAB}-*"))


def machine_processes(machine: str) -> list[str]:
    """Processes of one lab machine (``LAB-2``): its nspawn or anything inside it."""
    return [line for line in processes_of_lab(LAB) if f"--machine={machine} " in line + " " or line in processes_in_cgroup(machine)]


def processes_in_cgroup(machine: str) -> list[str]:
    """Processes still in the machine's own cgroup (Docker's containers there carry no marker)."""
    found = []
    for procs in Path("/sys/fs/cgroup/unified/moorage-lab", machine).rglob("cgroup.procs"):
        found += [f"{pid}: (in {procs.parent})" for pid in procs.read_text().split()]
    return found


def test_lab_stop_and_start_power_a_machine_off_and_on(fresh_lab: None) -> None:
    lab_1, lab_2 = lab_up(2)["machines"]
    # A unit whose ExecStop leaves a trace: a clean shutdown runs it, a power cut cannot.
    on(
        lab_2,
        'printf \'[Service]\\nExecStart=/bin/sleep infinity\\nExecStop=/bin/sh -c "echo clean-stop >> /var/tmp/stops"\\n'
        "[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/trace.service"
        " && systemctl enable --now trace.service && echo on-disk > /var/tmp/kept && sync",
    )
    boot_before = on(lab_2, "cat /proc/sys/kernel/random/boot_id")

    # Power cut: every process of lab-2, its systemd included, ends at once; lab-1 runs on.
    killed = moorage("lab", "stop", "lab-2", "--kill", "--output", "json")
    assert killed.returncode == 0, killed.stderr
    [result] = last_json_document(killed.stdout)["machines"]
    assert (result["hostname"], result["running"], result["action"], result["stopped_by"]) == ("lab-2", False, "killed", "lab stop --kill")
    assert machine_processes(f"{LAB}-2") == []
    assert on(lab_1, "systemctl is-system-running") == "running"
    assert run_remote(lab_dir(LAB) / "id_ed25519", lab_1["address"], "ping -c 1 -W 1 lab-2", timeout=30).returncode != 0
    status = json.loads(moorage("lab", "status", "--output", "json").stdout)
    assert [(m["hostname"], m["system"], m["stopped_by"]) for m in status["machines"]] == [
        ("lab-1", "running", None),
        ("lab-2", "stopped", "lab stop --kill"),
    ]
    again = moorage("lab", "stop", "lab-2", "--kill", "--output", "json")
    assert last_json_document(again.stdout)["machines"][0]["action"] == "already stopped"

    # Power on: the same disk, a new boot, every unit up; the killed unit never ran its ExecStop.
    started = moorage("lab", "start", "lab-2", "--output", "json")
    assert started.returncode == 0, started.stderr
    [result] = last_json_document(started.stdout)["machines"]
    assert (result["running"], result["system"], result["action"], result["stopped_by"]) == (True, "running", "started", None)
    assert on(lab_2, "cat /var/tmp/kept") == "on-disk"
    assert on(lab_2, "cat /proc/sys/kernel/random/boot_id") != boot_before
    assert on(lab_2, "cat /var/tmp/stops 2>/dev/null || true") == ""
    assert on(lab_2, "systemctl is-active trace.service") == "active"

    # A clean stop shuts systemd down (ExecStop ran); `lab up` starts a stopped machine again.
    stopped = moorage("lab", "stop", "lab-2", "--output", "json")
    assert stopped.returncode == 0, stopped.stderr
    assert last_json_document(stopped.stdout)["machines"][0]["stopped_by"] == "lab stop"
    assert machine_processes(f"{LAB}-2") == []
    assert [(m["hostname"], m["action"]) for m in lab_up(2)["machines"]] == [("lab-1", "already running"), ("lab-2", "started")]
    assert on(lab_2, "cat /var/tmp/stops") == "clean-stop"

    unknown = moorage("lab", "stop", "lab-9")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == f"moorage: error: lab {LAB!r} has no host 'lab-9' (hosts: lab-1, lab-2)"


def test_memory_limits_are_enforced_on_the_systemd_machines(fresh_lab: None) -> None:
    systemd_host, docker_host = lab_up(2)["machines"]
    assert "docker_hosts" in docker_host["groups"] and "docker_hosts" not in systemd_host["groups"]
    allocate = "python3 -c 'x = bytearray(200 * 2**20); x[::4096] = b\"a\" * len(x[::4096]); print(len(x))'"
    over = run_remote(lab_dir(LAB) / "id_ed25519", systemd_host["address"], f"systemd-run --wait -p MemoryMax=50M {allocate}", timeout=60)
    assert over.returncode != 0 and "code=killed/status=KILL" in over.stdout + over.stderr, over.stdout + over.stderr  # OOM-killed
    within = on(systemd_host, f"systemd-run --quiet --wait --pipe -p MemoryMax=300M {allocate}")
    assert within == str(200 * 2**20)
