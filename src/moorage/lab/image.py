"""The base image every lab machine boots from: Debian bookworm by debootstrap, built once, cached.

Machines never write to it: each runs on an overlay whose upper directory is the machine's own.
"""

from __future__ import annotations

import os
from pathlib import Path

from moorage.errors import MoorageError
from moorage.lab.cache import ensure_built
from moorage.lab.host import debian_mirror, run

SUITE = "bookworm"
# Bump when the recipe below changes, so an old image is never reused for a new recipe.
RECIPE_VERSION = 4
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-apt",
    "iproute2", "iputils-ping", "procps", "curl", "ca-certificates", "less", "sudo",
)  # fmt: skip
# Where machines see the lab's apt repository (bind-mounted read-only), and the only apt source they have.
APT_REPO_MOUNT = "/srv/moorage-apt"
# Machines are reached as cloud images ship: a user with passwordless sudo (Ansible's ``become``), no root login.
LAB_USER = "moorage"
SUDOERS = f"{LAB_USER} ALL=(ALL) NOPASSWD:ALL\n"
SSHD_CONFIG = f"""\
# moorage lab: only {LAB_USER} logs in, with the lab's key; root does not. Each machine has its own ed25519 host key.
PermitRootLogin no
AllowUsers {LAB_USER}
PasswordAuthentication no
KbdInteractiveAuthentication no
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
"""
# Units that have no job in a lab machine: the apt timers would take the dpkg lock from under
# Ansible's apt tasks at random moments, and e2scrub checks LVM volumes a container has none of.
MASKED_UNITS = (
    "systemd-networkd-wait-online.service",  # the network is static and never goes "online" upstream
    "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
    "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer",
)  # fmt: skip


def image_inputs() -> dict[str, object]:
    return {"suite": SUITE, "packages": sorted(PACKAGES), "mirror": debian_mirror(), "recipe": RECIPE_VERSION}


def ensure_base_image() -> Path:
    """The root directory of the cached base image, built by debootstrap (about a minute) if missing."""
    inputs = image_inputs()
    return ensure_built("images", inputs, lambda root: _build(root, str(inputs["mirror"])))


def _build(root: Path, mirror: str) -> None:
    run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, root, mirror],
        what=f"debootstrap {SUITE} from {mirror}",
    )
    _configure(root)


def user_ids(root: Path, user: str = LAB_USER) -> tuple[int, int]:
    """The uid and gid of ``user`` in the image whose root directory is ``root`` (its ``/etc/passwd``)."""
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user and len(fields) >= 4:
            return int(fields[2]), int(fields[3])
    raise MoorageError(f"the lab image at {root} has no user {user!r}: remove it to have it rebuilt")


def _add_lab_user(root: Path) -> None:
    """The user Ansible logs in as, with passwordless sudo (a drop-in checked by visudo before it counts)."""
    run(["chroot", root, "useradd", "--create-home", "--shell", "/bin/bash", LAB_USER], what=f"adding user {LAB_USER} to the image")
    sudoers = root / f"etc/sudoers.d/{LAB_USER}"
    sudoers.write_text(SUDOERS)
    sudoers.chmod(0o440)
    run(["chroot", root, "visudo", "-cf", f"/etc/sudoers.d/{LAB_USER}"], what=f"checking /etc/sudoers.d/{LAB_USER}")


def _configure(root: Path) -> None:
    """Make the image a good container guest: networkd on, apt from the lab repo only, key-only sshd."""
    run(["systemctl", f"--root={root}", "enable", "systemd-networkd.service"], what="enabling systemd-networkd in the image")
    run(["systemctl", f"--root={root}", "mask", *MASKED_UNITS], what="masking units a lab machine has no use for")
    # pam_env reads it at every SSH login and logs an error when it is missing.
    (root / "etc/default/locale").write_text("LANG=C.UTF-8\n")
    for host_key in (root / "etc/ssh").glob("ssh_host_*"):
        host_key.unlink()  # every machine gets its own, written when it is created
    (root / "etc/ssh/sshd_config.d/moorage-lab.conf").write_text(SSHD_CONFIG)
    _add_lab_user(root)
    (root / "etc/machine-id").write_text("")  # every machine gets its own
    (root / "etc/resolv.conf").unlink(missing_ok=True)  # the build host's resolver means nothing inside the lab
    (root / "etc/apt/sources.list").write_text("# moorage lab: packages come from the lab repository only (sources.list.d)\n")
    (root / "etc/apt/sources.list.d/moorage-lab.list").write_text(f"deb [trusted=yes] file:{APT_REPO_MOUNT} ./\n")
    (root / "etc/apt/apt.conf.d/90moorage-lab").write_text('Acquire::Languages "none";\n')
    for leftover in [
        *(root / "var/cache/apt/archives").glob("*.deb"),
        *(root / "var/lib/apt/lists").glob("*_*"),
        *(root / "var/cache/apt").glob("*.bin"),
        root / "var/lib/apt/periodic/update-success-stamp",
    ]:
        leftover.unlink(missing_ok=True)
    # No package lists yet: make the apt cache look ancient, so `apt: cache_valid_time=...` updates it.
    os.utime(root / "var/lib/apt/lists", (0, 0))
