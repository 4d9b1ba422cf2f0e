"""One lab machine: its files on the overlay, its systemd-nspawn process, starting and stopping it.

A machine is ``systemd-nspawn --boot`` on an overlay of the base image, run in its own session so it
outlives the ``moorage`` command that started it. Its directory (``LAB/machines/HOSTNAME``) holds the
overlay's upper directory, the nspawn PID, the console log, a fingerprint of the configuration it
was started with (a machine whose fingerprint still matches is left running), the launch itself
(``launch.json``: ``lab start`` powers a stopped machine on exactly as it last ran) and, while it is
powered off on purpose, a ``stopped`` marker saying how (``lab stop`` or ``lab stop --kill``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from moorage.errors import MoorageError
from moorage.lab.host import run
from moorage.lab.image import APT_REPO_MOUNT, LAB_USER

# Set in every machine's PID 1, so a machine whose nspawn died can still be found and ended.
MACHINE_ENV = "MOORAGE_MACHINE"
STOP_TIMEOUT_SECONDS = 20.0
NSPAWN_PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")
# Each machine's own cgroup, under this directory in every hierarchy nspawn uses (see _cgroups).
CGROUP_PARENT = "moorage-lab"
# The lab user's SSH directory inside a machine: the lab's key is its only way in.
SSH_DIR = f"home/{LAB_USER}/.ssh"
# Inside a machine, before systemd starts: its cgroup v1 memory hierarchy, read-write (see nspawn_command).
MEMORY_RW_REMOUNT = "mount -o remount,rw,bind /sys/fs/cgroup/memory"


@dataclass(frozen=True)
class Machine:
    lab_name: str
    index: int  # 1-based
    address: str
    groups: tuple[str, ...]
    directory: Path

    @property
    def hostname(self) -> str:
        return f"lab-{self.index}"

    @property
    def machine_name(self) -> str:
        """The nspawn machine name: unique across labs on this host."""
        return f"{self.lab_name}-{self.index}"

    @property
    def runs_docker(self) -> bool:
        return "docker_hosts" in self.groups

    @property
    def upper(self) -> Path:
        return self.directory / "upper"

    @property
    def pid_file(self) -> Path:
        return self.directory / "pid"

    @property
    def console_log(self) -> Path:
        return self.directory / "console.log"

    @property
    def fingerprint_file(self) -> Path:
        return self.directory / "config.sha"

    @property
    def launch_file(self) -> Path:
        return self.directory / "launch.json"

    @property
    def stopped_marker(self) -> Path:
        return self.directory / "stopped"

    @property
    def cgroups_file(self) -> Path:
        return self.directory / "cgroups"


def nspawn_command(machine: Machine, *, base_image: Path, apt_repo: Path, bridge: str) -> tuple[list[str], dict[str, str]]:
    """The systemd-nspawn argv and extra environment that boot ``machine``."""
    argv = [
        "systemd-nspawn", "--quiet",
        "--register=no", "--keep-unit",  # no systemd on this host to register with or to give us a scope
        f"--machine={machine.machine_name}", f"--hostname={machine.hostname}",
        f"--directory={base_image}", f"--overlay={base_image}:{machine.upper}:/",
        f"--network-bridge={bridge}", "--resolv-conf=off", "--link-journal=no", "--timezone=off",
        "--console=read-only", f"--setenv={MACHINE_ENV}={machine.machine_name}",
        f"--bind-ro={apt_repo}:{APT_REPO_MOUNT}",
    ]  # fmt: skip
    environment: dict[str, str] = {}
    if machine.runs_docker:
        # dockerd needs a writable cgroup hierarchy (cgroup v2 here), keyrings and bpf, and all capabilities;
        # /var/lib/docker on the host's own filesystem, since overlay2 cannot stack on the machine's overlay.
        environment["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
        argv += [
            "--boot",
            "--capability=all",
            "--system-call-filter=add_key keyctl request_key bpf",
            f"--bind={machine.directory / 'docker'}:/var/lib/docker",
        ]
    else:
        # What --boot does, by hand: systemd as PID 1, SIGRTMIN+3 (its poweroff) when nspawn is asked to stop.
        # First, the machine's own memory hierarchy becomes writable: systemd enforces MemoryMax= only where
        # it finds the memory controller writable when it starts, and nspawn mounts cgroup v1 controllers
        # read-only (the machine has a memory cgroup of its own on the host, see _cgroups_to_join).
        argv += ["--kill-signal=SIGRTMIN+3", "/bin/sh", "-c", f"{MEMORY_RW_REMOUNT}; exec /lib/systemd/systemd"]
    return argv, environment


def machine_files(machine: Machine, *, all_machines: list[Machine], public_key: str) -> dict[str, str]:
    """Files (path inside the machine -> content) that make the base image into this machine."""
    hosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n" + "".join(
        f"{other.address} {other.hostname}\n" for other in all_machines
    )
    network = f"[Match]\nName=host0\n\n[Network]\nAddress={machine.address}/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    return {
        "etc/hostname": machine.hostname + "\n",
        "etc/hosts": hosts,
        "etc/systemd/network/10-host0.network": network,
        f"{SSH_DIR}/authorized_keys": public_key,
    }


def fingerprint(argv: list[str], environment: dict[str, str], files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps([argv, environment, files], sort_keys=True).encode()).hexdigest()


def prepare(machine: Machine, files: dict[str, str], *, user_ids: tuple[int, int]) -> None:
    """Write the machine's files into its upper directory (only while it is stopped).

    ``user_ids``: the lab user's uid and gid in the base image, who owns its home and SSH key (the
    upper directory's copy of a directory replaces the image's owner and mode: the home as useradd made it).
    """
    machine.upper.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        target = machine.upper / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    ssh_dir = machine.upper / SSH_DIR
    for path, mode in ((ssh_dir.parent, 0o755), (ssh_dir, 0o700), (ssh_dir / "authorized_keys", 0o600)):
        os.chown(path, *user_ids)
        path.chmod(mode)
    machine_id = machine.upper / "etc/machine-id"
    if not machine_id.exists():
        machine_id.write_text(uuid.uuid4().hex + "\n")
    host_key = machine.upper / "etc/ssh/ssh_host_ed25519_key"
    if not host_key.exists():
        host_key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", machine.hostname, "-f", host_key], what="ssh-keygen")
    if machine.runs_docker:
        (machine.directory / "docker").mkdir(exist_ok=True)


def start(machine: Machine, argv: list[str], environment: dict[str, str]) -> int:
    """Boot the machine in the background (its own session: it outlives this process); return nspawn's PID.

    nspawn starts in the machine's own cgroups: without systemd on the host, nspawn puts the container
    in ``payload`` below the cgroup it was started in, so machines started from one cgroup would share
    their systemd's unit cgroups and remove each other's (units failing with "Failed to attach to cgroup").
    The cgroups are recorded in the machine's directory, so whoever stops it later finds them.
    """
    cgroups = _cgroups_to_join(machine)
    for cgroup in cgroups:
        cgroup.mkdir(parents=True, exist_ok=True)
    machine.cgroups_file.write_text("".join(f"{cgroup}\n" for cgroup in cgroups))
    cgroup_procs = [str(cgroup / "cgroup.procs") for cgroup in cgroups]

    def join_own_cgroups() -> None:  # in the child, before exec
        for procs in cgroup_procs:
            Path(procs).write_text("0")  # 0: the writing process

    with machine.console_log.open("ab") as console:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            env={**os.environ, **environment},
            start_new_session=True,
            preexec_fn=join_own_cgroups,  # noqa: PLW1509 -- runs before exec, no threads started yet
        )
    machine.pid_file.write_text(f"{process.pid}\n")
    record_launch(machine, argv, environment)
    machine.stopped_marker.unlink(missing_ok=True)
    return process.pid


def record_launch(machine: Machine, argv: list[str], environment: dict[str, str]) -> None:
    """Keep how the machine runs, so ``lab start`` powers it on again the same way, on the same disk."""
    machine.launch_file.write_text(json.dumps({"argv": argv, "environment": environment}, indent=2) + "\n")


def recorded_launch(machine: Machine) -> tuple[list[str], dict[str, str]] | None:
    """The argv and environment the machine was last started with (``None`` if never recorded)."""
    try:
        launch = json.loads(machine.launch_file.read_text())
        return [str(arg) for arg in launch["argv"]], {str(k): str(v) for k, v in launch["environment"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def exit_reason(machine: Machine) -> str:
    """How the machine's nspawn (a child of this process) ended, e.g. "exit status 1"; "" if unknown."""
    pid = _read_pid(machine.pid_file)
    if pid is None:
        return ""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return ""
    if reaped != pid:
        return ""
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def nspawn_pid(machine: Machine) -> int | None:
    """The PID of the machine's running systemd-nspawn (from the PID file, else found by its arguments)."""
    recorded = _read_pid(machine.pid_file)
    if recorded is not None and _is_nspawn_of(recorded, machine.machine_name):
        return recorded
    found = [pid for pid in _all_pids() if _is_nspawn_of(pid, machine.machine_name)]
    return found[0] if found else None


def stop(machines: list[Machine], *, graceful: bool = True) -> None:
    """Stop the machines and wait until every process of each is gone; clean up what nspawn leaves.

    Graceful: nspawn turns SIGTERM into a poweroff (whatever still runs after STOP_TIMEOUT_SECONDS
    is killed). Otherwise it is a power cut: every process of the machine, its init and its nspawn
    included, is killed at once (:func:`power_cut`).
    """
    if graceful:
        pids = [pid for pid in map(nspawn_pid, machines) if pid is not None]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)
    for machine in machines:
        power_cut(machine)
        machine.pid_file.unlink(missing_ok=True)
        # nspawn removes these itself, unless it was killed: then the kernel may still be tearing the
        # machine's network namespace down, and its host-side veth would block the next start.
        shutil.rmtree(NSPAWN_PROPAGATE_DIR / machine.machine_name, ignore_errors=True)
        veth = f"vb-{machine.machine_name}"  # nspawn's name for it (an altname when shortened)
        if subprocess.run(["ip", "link", "show", "dev", veth], capture_output=True, check=False).returncode == 0:
            subprocess.run(["ip", "link", "delete", "dev", veth], capture_output=True, check=False)
        _remove_cgroups(machine)


def power_cut(machine: Machine) -> None:
    """End every process of the machine at once, as pulling its plug would; wait until all are gone.

    The machine's own cgroup (nspawn and everything below it) is killed in one step through cgroup
    v2's ``cgroup.kill``: nothing inside gets a signal it could handle, and nothing can fork away.
    Processes that left the cgroup (none should) and hosts without ``cgroup.kill`` (kernels before
    5.14) fall back to SIGKILL for each process found by the machine's marker.
    """
    for kill_file in _cgroup_kill_files(machine):
        with contextlib.suppress(OSError):
            kill_file.write_text("1")
    leftovers = processes(machine)
    for pid in leftovers:
        _kill(pid)
    _wait_gone(leftovers, machine)


def _cgroup_kill_files(machine: Machine) -> list[Path]:
    return [cgroup / "cgroup.kill" for cgroup in _cgroups(machine) if (cgroup / "cgroup.kill").exists()]


def _cgroups_to_join(machine: Machine) -> list[Path]:
    """The machine's own cgroups: ``moorage-lab/NAME-N`` in the hierarchies nspawn places containers in
    (name=systemd and cgroup2, at their roots), and in the cgroup v1 memory hierarchy below this
    process's own memory cgroup (so the machines' memory stays charged where moorage's is)."""
    cgroups = []
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount_point, fs_type, options = line.split()[:4]
        if fs_type == "cgroup2" or (fs_type == "cgroup" and "name=systemd" in options.split(",")):
            cgroups.append(Path(mount_point) / CGROUP_PARENT / machine.machine_name)
        elif fs_type == "cgroup" and "memory" in options.split(","):
            own = _own_cgroup("memory")
            if own is not None:
                cgroups.append(Path(mount_point + own.rstrip("/")) / CGROUP_PARENT / machine.machine_name)
    return cgroups


def _own_cgroup(controller: str) -> str | None:
    """This process's cgroup path in the v1 hierarchy of ``controller`` (e.g. ``/`` or ``/some/group``)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


def _cgroups(machine: Machine) -> list[Path]:
    """The cgroups the machine was started in (as recorded), else where it would be started now."""
    try:
        return [Path(line) for line in machine.cgroups_file.read_text().splitlines() if line]
    except OSError:
        return _cgroups_to_join(machine)


def _remove_cgroups(machine: Machine) -> None:
    """Remove the machine's (now empty) cgroups, deepest first; the shared parent stays."""
    for cgroup in _cgroups(machine):
        if not cgroup.is_dir():
            continue
        for directory, _, _ in sorted(os.walk(cgroup), key=lambda entry: len(entry[0]), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def processes(machine: Machine) -> list[int]:
    """The machine's processes: its nspawn, those carrying its PID 1's marker, and all in its cgroups
    (a container's processes inside, e.g. Docker's, have an environment of their own)."""
    marker = f"{MACHINE_ENV}={machine.machine_name}".encode()
    found = set()
    for pid in _all_pids():
        if _is_nspawn_of(pid, machine.machine_name):
            found.add(pid)
            continue
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.add(pid)
        except OSError:
            continue
    for cgroup in _cgroups(machine):
        for procs in cgroup.rglob("cgroup.procs") if cgroup.is_dir() else []:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(line) for line in procs.read_text().split())
    return sorted(found)


def _wait_gone(pids: list[int], machine: Machine) -> None:
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise MoorageError(f"machine {machine.machine_name} did not stop (PIDs {pids})")
        time.sleep(0.1)


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _is_nspawn_of(pid: int, machine_name: str) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"systemd-nspawn") and f"--machine={machine_name}".encode() in argv


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie child of ours is reaped here)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
