"""``lab up`` / ``down`` / ``status`` / ``stop`` / ``start``: the lab, idempotent and safe to re-run after a crash.

State on disk (``lab_dir()``): ``state.json`` (bridge, subnet, host count), the SSH key, the
inventory, and one directory per machine. ``up`` compares what should run with what runs and only
(re)starts machines whose configuration changed (a machine powered off by ``stop`` is started
again, as ``docker compose up`` does); ``down`` removes every trace of the lab. ``stop`` powers
machines off (a clean shutdown, or with ``kill`` a power cut) and ``start`` powers them on again,
on the same disk, with the launch they last ran with.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from moorage.errors import BadInput, Locked, MoorageError
from moorage.lab import machines as machine_ops
from moorage.lab.aptrepo import ensure_apt_repo
from moorage.lab.host import preflight, raise_inotify_limits, run
from moorage.lab.image import ensure_base_image, user_ids
from moorage.lab.inventory import groups_for, render
from moorage.lab.machines import Machine
from moorage.lab.network import MAX_HOSTS, LabNetwork, bridge_name, choose_network, ensure_bridge, remove_bridge
from moorage.lab.paths import inventory_path, lab_dir, lab_name
from moorage.lab.ssh import ensure_key, key_path, run_remote
from moorage.paths import ansible_root
from moorage.reporting import QuietReporter, Reporter

BOOT_TIMEOUT_SECONDS = 180
# The name becomes nspawn machine names (NAME-1, ...): nspawn accepts letters, digits, '-' and '.' only.
LAB_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,40}")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # systemd colours its console messages


@dataclass(frozen=True)
class MachineStatus:
    hostname: str
    machine: str
    address: str
    groups: list[str]
    running: bool
    pid: int | None
    system: str  # `systemctl is-system-running` inside, or "stopped" / "unreachable"
    action: str = ""  # what the command did: started, restarted, already running, stopped, killed, already stopped
    stopped_by: str | None = None  # "lab stop" or "lab stop --kill" while powered off on purpose


@dataclass(frozen=True)
class LabStatus:
    name: str
    bridge: str
    subnet: str
    inventory: str
    ssh_key: str
    machines: list[MachineStatus]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def up(host_count: int, progress: Reporter | None = None) -> LabStatus:
    """Bring the lab to ``host_count`` running machines; a machine that already runs as wanted is left alone."""
    progress = progress or QuietReporter()
    if not 1 <= host_count <= MAX_HOSTS:
        raise BadInput(f"--hosts must be between 1 and {MAX_HOSTS}, not {host_count}")
    preflight()
    name = _checked_lab_name()
    with _lab_lock(name):
        with progress.step("base image (debootstrap bookworm; first time only)"):
            base_image = ensure_base_image()
        with progress.step("local apt repository (first time only)"):
            apt_repo = ensure_apt_repo()
        for setting in raise_inotify_limits():
            progress.note(f"raised {setting}: a host full of machines needs more inotify than the default")
        network = _load_or_choose_network(name)
        with progress.step(f"bridge {network.bridge} ({network.subnet})"):
            ensure_bridge(network)
        key = ensure_key(name)
        wanted = _plan(name, network, host_count)
        _remove_machines([machine for machine in _existing_machines(name) if machine.index > host_count])
        launches = {
            machine.hostname: machine_ops.nspawn_command(machine, base_image=base_image, apt_repo=apt_repo, bridge=network.bridge)
            for machine in wanted
        }
        with progress.step(f"{host_count} machine(s) booted"):
            actions = {
                machine.hostname: _converge_machine(machine, wanted, base_image, launches[machine.hostname], key) for machine in wanted
            }
            _wait_until_ready(wanted, launches, key, progress)
        inventory = _write_inventory(name, wanted, key)
    return LabStatus(
        name=name, bridge=network.bridge, subnet=network.subnet, inventory=str(inventory), ssh_key=str(key),
        machines=[
            _machine_status(machine, "running", actions[machine.hostname]) for machine in wanted
        ],
    )  # fmt: skip


def down(progress: Reporter | None = None) -> list[str]:
    """Stop every machine and remove the bridge, the lab's state and its inventory; return what was removed."""
    progress = progress or QuietReporter()
    preflight()
    name = _checked_lab_name()
    removed: list[str] = []
    with _lab_lock(name):
        existing = _existing_machines(name)
        with progress.step(f"{len(existing)} machine(s) stopped"):
            _remove_machines(existing)
        removed += [machine.hostname for machine in existing]
        network = _saved_network(name)
        bridge = network.bridge if network else bridge_name(name)
        remove_bridge(bridge)
        removed.append(bridge)
        _unlink_checkout_inventory(name)
        _unmount_under(lab_dir(name))
        shutil.rmtree(lab_dir(name), ignore_errors=True)
    return removed


def stop(hostnames: list[str], *, kill: bool, progress: Reporter | None = None) -> LabStatus:
    """Power machines off: a clean shutdown (nspawn's poweroff), or with ``kill`` a power cut (every
    process of each machine ended at once). They stay off, with their disks, until ``start`` or ``up``."""
    progress = progress or QuietReporter()
    preflight()
    name = _checked_lab_name()
    how = "lab stop --kill" if kill else "lab stop"
    with _lab_lock(name):
        network, machines = _named_machines(name, hostnames)
        actions = {}
        for machine in machines:
            running = bool(machine_ops.nspawn_pid(machine) is not None or machine_ops.processes(machine))
            actions[machine.hostname] = ("killed" if kill else "stopped") if running else "already stopped"
        with progress.step(f"{', '.join(hostnames)} {'killed' if kill else 'shut down'}"):
            machine_ops.stop(machines, graceful=not kill)
        for machine in machines:
            if actions[machine.hostname] != "already stopped" or not machine.stopped_marker.exists():
                machine.stopped_marker.write_text(how + "\n")
        return _status_of(name, network, machines, actions)


def start(hostnames: list[str], progress: Reporter | None = None) -> LabStatus:
    """Power machines on again, on their own disks, exactly as they last ran; wait until they are up."""
    progress = progress or QuietReporter()
    preflight()
    name = _checked_lab_name()
    with _lab_lock(name):
        network, machines = _named_machines(name, hostnames)
        key = key_path(name)
        launches = {}
        for machine in machines:
            launch = machine_ops.recorded_launch(machine)
            if launch is None:
                raise BadInput(f"lab {name!r}: no record of how {machine.hostname} ran: run `moorage lab up`")
            launches[machine.hostname] = launch
        actions = {}
        with progress.step(f"{', '.join(hostnames)} booted"):
            for machine in machines:
                if machine_ops.nspawn_pid(machine) is not None:
                    actions[machine.hostname] = "already running"
                    continue
                machine_ops.stop([machine], graceful=False)  # whatever a crash left of it
                _unmount_under(machine.directory)
                machine_ops.start(machine, *launches[machine.hostname])
                actions[machine.hostname] = "started"
            _wait_until_ready(machines, launches, key, progress)
        return _status_of(name, network, machines, actions)


def status() -> LabStatus | None:
    """What runs now (``None`` if the lab was never brought up)."""
    name = lab_name()
    network = _saved_network(name)
    if network is None:
        return None
    return _status_of(name, network, _existing_machines(name), {})


def _status_of(name: str, network: LabNetwork, machines: list[Machine], actions: dict[str, str]) -> LabStatus:
    with ThreadPoolExecutor(max_workers=max(1, len(machines))) as pool:
        states = list(pool.map(lambda machine: _probe(machine, key_path(name)), machines))
    return LabStatus(
        name=name, bridge=network.bridge, subnet=network.subnet, inventory=str(inventory_path(name)),
        ssh_key=str(key_path(name)),
        machines=[
            _machine_status(machine, state, actions.get(machine.hostname, ""))
            for machine, state in zip(machines, states, strict=True)
        ],
    )  # fmt: skip


def _named_machines(name: str, hostnames: list[str]) -> tuple[LabNetwork, list[Machine]]:
    """The lab's network and its machines called ``hostnames`` (lab-2, or the nspawn name), in the order given."""
    network = _saved_network(name)
    existing = _existing_machines(name)
    if network is None or not existing:
        raise BadInput(f"lab {name!r} is not up (run `moorage lab up`)")
    found: list[Machine] = []
    for hostname in hostnames:
        machine = next((m for m in existing if hostname in (m.hostname, m.machine_name)), None)
        if machine is None:
            known = ", ".join(m.hostname for m in existing)
            raise BadInput(f"lab {name!r} has no host {hostname!r} (hosts: {known})")
        if machine not in found:
            found.append(machine)
    return network, found


def machine_address(hostname: str) -> str:
    """The address of a lab machine, by hostname (``lab-1``) or nspawn machine name."""
    _, [machine] = _named_machines(lab_name(), [hostname])
    return machine.address


def _checked_lab_name() -> str:
    name = lab_name()
    if not LAB_NAME_PATTERN.fullmatch(name):
        raise BadInput(f"MOORAGE_LAB={name!r}: a lab name is letters, digits, '-' and '.' (at most 41 characters)")
    return name


# --- state -----------------------------------------------------------------------------------------


def _state_file(name: str) -> Path:
    return lab_dir(name) / "state.json"


def _saved_network(name: str) -> LabNetwork | None:
    try:
        saved = json.loads(_state_file(name).read_text())
    except (OSError, ValueError):
        return None
    return LabNetwork(bridge=saved["bridge"], subnet=saved["subnet"])


def _load_or_choose_network(name: str) -> LabNetwork:
    """The lab keeps its network for life; a new lab picks one now and records it before using it."""
    network = _saved_network(name) or choose_network(name)
    _state_file(name).write_text(json.dumps(asdict(network), indent=2) + "\n")
    return network


@contextmanager
def _lab_lock(name: str) -> Iterator[None]:
    lab_dir(name).mkdir(parents=True, exist_ok=True)
    with (lab_dir(name) / ".lock").open("w") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Locked(f"lab {name!r} is busy: another `moorage lab` command is working on it") from None
        yield


def _plan(name: str, network: LabNetwork, host_count: int) -> list[Machine]:
    return [_machine(name, network, index, host_count) for index in range(1, host_count + 1)]


def _machine(name: str, network: LabNetwork, index: int, host_count: int) -> Machine:
    return Machine(
        lab_name=name,
        index=index,
        address=network.machine_address(index),
        groups=groups_for(index, host_count),
        directory=lab_dir(name) / "machines" / f"lab-{index}",
    )


def _existing_machines(name: str) -> list[Machine]:
    """Machines with a directory in the lab's state (running or not), in index order."""
    network = _saved_network(name) or LabNetwork(bridge=bridge_name(name), subnet="0.0.0.0/24")
    indexes = sorted(
        int(match.group(1)) for entry in (lab_dir(name) / "machines").glob("lab-*") if (match := re.fullmatch(r"lab-(\d+)", entry.name))
    )
    host_count = max(indexes, default=0)
    return [_machine(name, network, index, host_count) for index in indexes]


# --- machines --------------------------------------------------------------------------------------


def _converge_machine(
    machine: Machine, wanted: list[Machine], base_image: Path, launch: tuple[list[str], dict[str, str]], key: Path
) -> str:
    """Start the machine unless it already runs with exactly this configuration; say what was done."""
    argv, environment = launch
    files = machine_ops.machine_files(machine, all_machines=wanted, public_key=key.with_suffix(".pub").read_text())
    fingerprint = machine_ops.fingerprint(argv, environment, files)
    running = machine_ops.nspawn_pid(machine) is not None
    if running and _read(machine.fingerprint_file) == fingerprint:
        machine_ops.record_launch(machine, argv, environment)  # a machine started by an older moorage has none
        return "already running"
    # Also ends what a crashed run left: a machine whose nspawn died but whose PID 1 lives on.
    machine_ops.stop([machine], graceful=running)
    image_marker = machine.directory / "image"
    if _read(image_marker) != str(base_image):
        shutil.rmtree(machine.upper, ignore_errors=True)  # an overlay is only valid on the image it was made on
    machine.directory.mkdir(parents=True, exist_ok=True)
    _unmount_under(machine.directory)  # a crashed run may have left the overlay mounted on the host
    image_marker.write_text(str(base_image))
    machine_ops.prepare(machine, files, user_ids=user_ids(base_image))
    machine_ops.start(machine, argv, environment)
    machine.fingerprint_file.write_text(fingerprint)
    return "restarted" if running else "started"


def _remove_machines(machines: list[Machine]) -> None:
    """Machines and their disks go: no point in a clean shutdown."""
    machine_ops.stop(machines, graceful=False)
    for machine in machines:
        shutil.rmtree(machine.directory, ignore_errors=True)


def _wait_until_ready(
    machines: list[Machine], launches: dict[str, tuple[list[str], dict[str, str]]], key: Path, progress: Reporter
) -> None:
    """Wait until every machine answers SSH and its systemd finished booting with every unit up.

    A machine whose nspawn stops while booting is started once more (saying why); a machine that
    stops again, or boots "degraded", fails ``up`` with a line naming its console log or failed units.
    """
    with ThreadPoolExecutor(max_workers=len(machines)) as pool:
        list(pool.map(lambda machine: _wait_one(machine, launches[machine.hostname], key, progress), machines))


def _wait_one(machine: Machine, launch: tuple[list[str], dict[str, str]], key: Path, progress: Reporter) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
    restarted = False
    while time.monotonic() < deadline:
        if machine_ops.nspawn_pid(machine) is None:
            reason = _stop_reason(machine)
            if restarted:
                raise MoorageError(f"{machine.hostname} ({machine.machine_name}) stopped while booting, twice: {reason}")
            progress.note(f"{machine.hostname} ({machine.machine_name}) stopped while booting ({reason}); starting it again")
            machine_ops.stop([machine], graceful=False)  # whatever is left of it
            machine_ops.start(machine, *launch)
            restarted = True
            continue
        try:
            result = run_remote(key, machine.address, "systemctl is-system-running --wait", timeout=60)
        except subprocess.TimeoutExpired:
            continue
        if result.returncode == 255:  # ssh itself failed (sshd not up yet)
            time.sleep(0.2)
            continue
        state = result.stdout.strip() or "unknown"
        if state == "running":
            if machine_ops.nspawn_pid(machine) is not None:  # nspawn may have died while systemd answered
                return
            continue
        raise MoorageError(f"{machine.hostname} ({machine.machine_name}) booted {state}: {_failed_units(machine, key)}")
    raise MoorageError(f"{machine.hostname} did not finish booting within {BOOT_TIMEOUT_SECONDS}s (console log: {machine.console_log})")


def _stop_reason(machine: Machine) -> str:
    """How the machine's nspawn ended and the console's last line, for a one-line message."""
    exit_reason = machine_ops.exit_reason(machine)
    console = f"{_last_line(machine.console_log)} (console log: {machine.console_log})"
    return f"{exit_reason}; {console}" if exit_reason else console


def _failed_units(machine: Machine, key: Path) -> str:
    """The machine's failed units, named, and where to read why."""
    listed = run_remote(key, machine.address, "systemctl list-units --failed --plain --no-legend", timeout=30)
    units = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    named = ", ".join(units) if units else "no failed unit listed"
    return f"failed units: {named} (see `moorage lab ssh {machine.hostname} -- journalctl -b -p err`)"


def _probe(machine: Machine, key: Path) -> str:
    if machine_ops.nspawn_pid(machine) is None:
        return "stopped"
    try:
        result = run_remote(key, machine.address, "systemctl is-system-running", timeout=10)
    except subprocess.TimeoutExpired:
        return "unreachable"
    return "unreachable" if result.returncode == 255 else result.stdout.strip()


def _machine_status(machine: Machine, system: str, action: str = "") -> MachineStatus:
    pid = machine_ops.nspawn_pid(machine)
    stopped_by = (_read(machine.stopped_marker) or "").strip() or None if pid is None else None
    return MachineStatus(
        hostname=machine.hostname, machine=machine.machine_name, address=machine.address,
        groups=list(machine.groups), running=pid is not None, pid=pid, system=system, action=action,
        stopped_by=stopped_by,
    )  # fmt: skip


# --- inventory and leftovers ------------------------------------------------------------------------


GROUP_VARS = "group_vars"


def _checkout_inventory() -> Path | None:
    """``inventory/lab/hosts.yml`` in a source checkout (``None`` for an installed moorage)."""
    root = ansible_root()
    return root / "inventory" / "lab" / "hosts.yml" if (root / ".git").exists() else None


def _write_inventory(name: str, machines: list[Machine], key: Path) -> Path:
    """The lab's hosts.yml, and in a checkout a link to it at inventory/lab/hosts.yml (the last lab up wins).

    Its group_vars (the site's vault file: moorage.vault) get a link beside it too: Ansible reads
    group_vars next to the inventory path it is given, a link's own directory.
    """
    inventory = inventory_path(name)
    inventory.write_text(render(name, [(m.hostname, m.address, m.groups) for m in machines], key))
    group_vars = inventory.parent / GROUP_VARS
    group_vars.mkdir(mode=0o700, exist_ok=True)
    link = _checkout_inventory()
    if link is not None:
        link.parent.mkdir(parents=True, exist_ok=True)
        for path, target in ((link, inventory), (link.parent / GROUP_VARS, group_vars)):
            path.unlink(missing_ok=True)
            path.symlink_to(target)
    return inventory


def _unlink_checkout_inventory(name: str) -> None:
    link = _checkout_inventory()
    if link is not None and link.is_symlink() and Path(link.readlink()) == inventory_path(name):
        link.unlink()
        group_vars = link.parent / GROUP_VARS
        if group_vars.is_symlink():
            group_vars.unlink()


def _unmount_under(directory: Path) -> None:
    """Unmount anything a crashed run left mounted inside the lab's directory (deepest first)."""
    prefix = str(directory) + "/"
    mount_points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount_point in sorted((m for m in mount_points if m.startswith(prefix)), key=len, reverse=True):
        run(["umount", "--lazy", mount_point], what=f"unmounting {mount_point}")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _last_line(path: Path) -> str:
    """The console log's last non-empty line, without terminal colour codes."""
    lines = [ANSI_ESCAPE.sub("", line) for line in (_read(path) or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no console output"
