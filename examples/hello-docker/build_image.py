"""Build image.tar for examples/hello-docker: a busybox-only image in `docker load` format.

The lab's hosts have no registry, so the spec ships the image as ``imageArchive``. The image is
one layer holding Debian's busybox-static (``/bin/busybox`` and ``/bin/sh``); busybox's httpd is
the app. The archive is written byte for byte the same on every run (fixed times and order), so
an unchanged image gives an unchanged content version.

    .venv/bin/python examples/hello-docker/build_image.py [--deb busybox-static_*.deb | --download] [-o image.tar]

The .deb comes from ``--deb``; with ``--download``, from this host's Debian mirror (``apt-get
download``: what ``make setup`` does, so the example validates in a fresh clone); else from the
lab's local apt repository (built by ``moorage lab up``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

IMAGE_TAG = "hello-busybox:1"  # the spec's `image`
HERE = Path(__file__).parent


def layer_bytes(busybox: bytes) -> bytes:
    """The image's only layer: /bin/busybox and /bin/sh pointing at it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as layer:
        _add(layer, tarfile.TarInfo("bin"), None, tarfile.DIRTYPE, 0o755)
        _add(layer, tarfile.TarInfo("bin/busybox"), busybox, tarfile.REGTYPE, 0o755)
        link = tarfile.TarInfo("bin/sh")
        link.linkname = "busybox"
        _add(layer, link, None, tarfile.SYMTYPE, 0o777)
    return buffer.getvalue()


def image_archive(busybox: bytes) -> bytes:
    """``docker save`` layout: manifest.json, the config and the layer, named by their digests."""
    layer = layer_bytes(busybox)
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
            "history": [{"created_by": "examples/hello-docker/build_image.py"}],
        },
        sort_keys=True,
    ).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [IMAGE_TAG], "Layers": [f"{layer_digest}/layer.tar"]}]).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _add(archive, tarfile.TarInfo(layer_digest), None, tarfile.DIRTYPE, 0o755)
        _add(archive, tarfile.TarInfo(f"{layer_digest}/layer.tar"), layer, tarfile.REGTYPE, 0o644)
        _add(archive, tarfile.TarInfo(config_name), config, tarfile.REGTYPE, 0o644)
        _add(archive, tarfile.TarInfo("manifest.json"), manifest, tarfile.REGTYPE, 0o644)
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, info: tarfile.TarInfo, data: bytes | None, kind: bytes, mode: int) -> None:
    info.type, info.mode, info.mtime, info.uid, info.gid = kind, mode, 0, 0, 0
    info.size = len(data) if data is not None else 0
    archive.addfile(info, io.BytesIO(data) if data is not None else None)


def busybox_from_deb(deb: Path) -> bytes:
    with tempfile.TemporaryDirectory() as unpacked:
        subprocess.run(["dpkg-deb", "-x", str(deb), unpacked], check=True)
        return (Path(unpacked) / "bin" / "busybox").read_bytes()


def downloaded_busybox() -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        downloaded = subprocess.run(
            ["apt-get", "download", "-q", "busybox-static"], cwd=directory, capture_output=True, text=True, check=False
        )
        found = sorted(Path(directory).glob("busybox-static_*.deb"))
        if downloaded.returncode != 0 or not found:
            raise SystemExit(f"build_image.py: apt-get download busybox-static failed: {downloaded.stderr.strip()}")
        return busybox_from_deb(found[-1])


def lab_busybox_deb() -> Path:
    from moorage.lab.aptrepo import ensure_apt_repo

    found = sorted(ensure_apt_repo().rglob("busybox-static_*.deb"))
    if not found:
        raise SystemExit("build_image.py: no busybox-static .deb in the lab's apt repository")
    return found[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--deb", type=Path, help="busybox-static .deb (default: the lab apt repository's)")
    source.add_argument("--download", action="store_true", help="download busybox-static from this host's Debian mirror")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "image.tar")
    arguments = parser.parse_args()
    busybox = downloaded_busybox() if arguments.download else busybox_from_deb(arguments.deb or lab_busybox_deb())
    arguments.output.write_bytes(image_archive(busybox))
    print(arguments.output)


if __name__ == "__main__":
    main()
