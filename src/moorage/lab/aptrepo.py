"""The lab's local apt repository: every package the roles install, with its dependency closure.

The closure is computed against the base image itself (``apt-get install --download-only`` in a
throw-away overlay of it), so a machine can install any of these packages from the repository
alone, with no traffic leaving the host. Consul comes from Debian bullseye (see docs/lab.md).
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

from moorage.lab.cache import ensure_built
from moorage.lab.host import debian_mirror, run
from moorage.lab.image import ensure_base_image, image_inputs

SUITES = ("bookworm", "bullseye")  # bullseye for consul only: it is in no newer suite
# Bump when the recipe below changes.
RECIPE_VERSION = 2  # 2: NGINX's Lua module for the ingress balancer
PACKAGES = (
    "nginx", "libnginx-mod-http-lua", "lua-resty-core", "prometheus", "prometheus-node-exporter", "prometheus-alertmanager",
    "rsyslog", "rsyslog-relp", "rsyslog-elasticsearch", "docker.io", "python3-docker",
    "consul", "busybox-static",
)  # fmt: skip


def ensure_apt_repo() -> Path:
    """The directory holding the repository's .deb files and its index (built once, then cached).

    Callable without a running lab (it needs root, for debootstrap and systemd-nspawn, on first use).
    """
    base_image = ensure_base_image()
    mirror = debian_mirror()
    inputs = {
        "image": image_inputs(),
        "suites": list(SUITES),
        "packages": sorted(PACKAGES),
        "mirror": mirror,
        "recipe": RECIPE_VERSION,
    }
    return ensure_built("apt", inputs, lambda repo: _build(repo, base_image, mirror))


def _build(repo: Path, base_image: Path, mirror: str) -> None:
    with tempfile.TemporaryDirectory(dir=repo.parent, prefix=".build-") as scratch:
        _download_closure(repo, base_image, mirror, Path(scratch))
    for leftover in ("partial", "lock"):
        target = repo / leftover
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    _index(repo)


def _download_closure(repo: Path, base_image: Path, mirror: str, scratch: Path) -> None:
    config = scratch / "config"
    (config / "parts").mkdir(parents=True)
    (config / "sources.list").write_text("".join(f"deb {mirror} {suite} main\n" for suite in SUITES))
    upper = scratch / "upper"
    upper.mkdir()
    apt_options = "-o Dir::Etc::SourceList=/moorage-build/sources.list -o Dir::Etc::SourceParts=/moorage-build/parts"
    script = (
        f"apt-get {apt_options} -q update"
        f" && DEBIAN_FRONTEND=noninteractive apt-get {apt_options} -q -y --download-only install {' '.join(PACKAGES)}"
    )
    run(
        [
            "systemd-nspawn",
            "--quiet",
            "--register=no",
            "--keep-unit",
            f"--machine=moorage-apt-{os.getpid()}",
            f"--directory={base_image}",
            f"--overlay={base_image}:{upper}:/",
            "--resolv-conf=bind-host",
            f"--bind={repo}:/var/cache/apt/archives",
            f"--bind-ro={config}:/moorage-build",
            "/bin/sh",
            "-c",
            script,
        ],
        what=f"downloading {', '.join(PACKAGES)} from {mirror}",
    )


def _index(repo: Path) -> None:
    """A flat repository (``deb [trusted=yes] file:DIR ./``) indexed by apt-ftparchive."""
    packages = run(["apt-ftparchive", "packages", "."], what="apt-ftparchive packages", cwd=repo)
    (repo / "Packages").write_text(packages)
    with gzip.open(repo / "Packages.gz", "wt") as compressed:
        compressed.write(packages)
    release = run(["apt-ftparchive", "release", "."], what="apt-ftparchive release", cwd=repo)
    (repo / "Release").write_text(release)
