"""Put a release on a host before any instance switches to it: the ``moorage.platform.release`` module's work.

Two steps, so a deploy can check every host before it writes on any:

``check`` (reads only)
    Can this host take the release? Every instance of it here can be defined (its secrets have
    values, its routes follow the rules), its port is free unless the instance itself holds it,
    Docker answers for the docker runtime. Also says what the shipping needs: whether the
    release's archive is here already, and where it goes.
``ship``
    The release next to what runs: its files unpacked (``ROOT/NAME/releases/F``), an image
    loaded, each instance's definition written (0600), volumes and their user, the service's
    Consul token (created when missing), then releases beyond the newest ``keep`` pruned (never
    one an instance runs or would go back to). Nothing that runs changes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pwd
import sys
import tarfile
import tempfile
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .consul import DEFAULT_ADDRESS, ConsulClient, ConsulError
from .definition import DefinitionError, InstanceDefinition, ReleaseInput, define
from .files import ensure_dir, remove_path, unpack, write_atomic
from .instance import read_state
from .layout import CONFIG_ROOT, ROOT, UNPACKED_MARKER, ServiceLayout
from .routes import InvalidRoute
from .runtime import RuntimeFailure, run, runtime_for

LISTEN = "0A"  # TCP state of a listening socket in /proc/net/tcp
# Ansible's to_uuid namespace: the service token has been derived with it since moorage 0.1.
TOKEN_NAMESPACE = uuid.UUID("361E6D51-FAEC-444A-9079-341386DA8E2E")
INGRESS_READ_POLICY = "moorage-ingress-acks-read"
INGRESS_READ_RULES = 'key_prefix "moorage/ingress/" { policy = "read" }'


@dataclass(frozen=True)
class Archive:
    """A file shipped with the release: the files (systemd) or the image archive (docker)."""

    digest: str
    suffix: str  # .tar.gz, .tgz, .tar or .zip


@dataclass(frozen=True)
class HostRelease:
    """A release as one host gets it."""

    release: ReleaseInput
    instances: tuple[Mapping[str, Any], ...]  # this host's: {id, index, host, address, port}
    layout: ServiceLayout
    archive: Archive | None  # None: the files (of files_release) must be here already

    def definitions(self) -> list[InstanceDefinition]:
        return [define(self.release, instance, self.layout) for instance in self.instances]

    @property
    def archive_path(self) -> Path | None:
        return None if self.archive is None else self.layout.artifact(self.archive.digest, self.archive.suffix)


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    archive_present: bool = True
    archive_dest: str = ""
    running: dict[str, int | None] = field(default_factory=dict)  # instance -> release it runs (None: not running)


def check(host: HostRelease, host_name: str) -> CheckReport:
    report = CheckReport()
    try:
        definitions = host.definitions()
    except (DefinitionError, InvalidRoute, KeyError, TypeError, ValueError) as err:
        report.problems.append(f"service {host.release.name}: {err}")
        definitions = []
    listening = listening_ports()
    for definition in definitions:
        runtime = runtime_for(definition.runtime, host.layout)
        try:
            running = runtime.is_running(definition.instance)
        except RuntimeFailure:
            running = False
        state = read_state(host.layout, definition.instance)
        report.running[definition.instance] = state.release if running and state is not None else None
        if definition.port is not None and definition.port in listening and not running:
            report.problems.append(f"port {definition.port} on host {host_name} is already taken (needed by {definition.instance})")
    if host.instances and str(host.release.service["runtime"]) == "docker" and run(["docker", "version"], check=False).returncode != 0:
        report.problems.append(f"host {host_name}: docker does not answer (the docker runtime needs the platform's docker role)")
    if host.archive is not None and host.archive_path is not None and host.instances:
        report.archive_dest = str(host.archive_path)
        report.archive_present = host.archive_path.exists() or _unpacked_digest(host) == host.archive.digest
    return report


def ship(
    host: HostRelease,
    *,
    token: str = "",
    token_accessor: str = "",
    management_token: str = "",
    consul: ConsulClient | None = None,
    keep: int = 5,
) -> list[str]:
    """Write the release on this host; what changed (empty: nothing). DefinitionError, RuntimeFailure, ConsulError, OSError."""
    if not host.instances:
        return []
    layout = host.layout
    changes: list[str] = []
    definitions = host.definitions()
    for directory, mode in (
        (layout.service_dir, 0o755),
        (layout.releases_dir, 0o755),
        (layout.artifacts_dir, 0o755),
        (layout.config_dir, 0o700),
    ):
        if ensure_dir(directory, mode):
            changes.append(f"directory {directory}")
    changes += _volumes(host)
    changes += _files(host)
    target = layout.definitions_dir(host.release.release)
    ensure_dir(layout.definitions_root, 0o700)
    ensure_dir(target, 0o700)
    wanted = {f"{definition.instance}.json" for definition in definitions}
    for definition in definitions:
        if write_atomic(target / f"{definition.instance}.json", definition.to_json() + "\n", 0o600):
            changes.append(f"definition of {definition.instance}")
    for stale in target.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
            changes.append(f"stale definition {stale.name}")
    if token:
        if write_atomic(layout.token_file, token + "\n", 0o600):
            changes.append("consul token file")
        if (
            management_token
            and consul is not None
            and ensure_service_token(consul, host.release.name, token, token_accessor, management_token)
        ):
            changes.append("consul token")
    changes += prune(layout, keep, keep_release=host.release.release)
    return changes


def pending(host: HostRelease, token: str = "") -> list[str]:
    """What ``ship`` would write (check mode), without writing anything."""
    if not host.instances:
        return []
    layout = host.layout
    changes = [f"directory {path}" for path in (layout.service_dir, layout.config_dir) if not path.is_dir()]
    if str(host.release.service["runtime"]) == "systemd" and host.archive is not None and _unpacked_digest(host) != host.archive.digest:
        changes.append(f"files of release {host.release.files_release}")
    for definition in host.definitions():
        path = layout.definition_file(host.release.release, definition.instance)
        if not path.exists() or path.read_text() != definition.to_json() + "\n":
            changes.append(f"definition of {definition.instance}")
    if token and (not layout.token_file.exists() or layout.token_file.read_text() != token + "\n"):
        changes.append("consul token file")
    return changes


def _unpacked_digest(host: HostRelease) -> str:
    marker = host.layout.release_dir(host.release.files_release) / UNPACKED_MARKER
    try:
        return marker.read_text().strip()
    except OSError:
        return ""


def _files(host: HostRelease) -> list[str]:
    """The release's files unpacked (systemd) or its image loaded (docker)."""
    runtime = str(host.release.service["runtime"])
    layout = host.layout
    archive, path = host.archive, host.archive_path
    if runtime == "docker":
        image = str(host.release.service.get("image") or "")
        if run(["docker", "image", "inspect", image], check=False).returncode == 0:
            return []
        if archive is not None and path is not None and path.exists():
            run(["docker", "load", "--input", str(path)], timeout=600)
            return [f"image {image} loaded"]
        run(["docker", "pull", image], timeout=600)
        return [f"image {image} pulled"]
    files = layout.release_dir(host.release.files_release)
    if archive is None:
        if not (files / UNPACKED_MARKER).exists():
            raise RuntimeFailure(
                f"the files of release {host.release.files_release} are not on this host ({files}); deploy the service again"
            )
        return []
    if _unpacked_digest(host) == archive.digest:
        return []
    if path is None or not path.exists():
        raise RuntimeFailure(f"the release's archive {path} was not shipped")
    if zipfile.is_zipfile(path):
        _unzip(path, files)
    else:
        unpack(path, files)
    write_atomic(files / UNPACKED_MARKER, archive.digest + "\n", 0o644)
    return [f"files of release {host.release.files_release}"]


def _unzip(path: Path, destination: Path) -> None:
    """A zip artifact: as a tarball would be (members stay inside)."""
    with tempfile.TemporaryDirectory(dir=destination.parent) as staging:
        as_tar = Path(staging) / "artifact.tar"
        with zipfile.ZipFile(path) as archive, tarfile.open(as_tar, "w") as tar:
            for member in archive.infolist():
                info = tarfile.TarInfo(member.filename.rstrip("/"))
                if member.is_dir():
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    continue
                data = archive.read(member)
                info.size, info.mode = len(data), (member.external_attr >> 16) & 0o777 or 0o644
                tar.addfile(info, io.BytesIO(data))
        unpack(as_tar, destination)


def _volumes(host: HostRelease) -> list[str]:
    volumes = host.release.service.get("volumes") or []
    if not volumes or str(host.release.service["runtime"]) != "systemd":
        return []
    changes = []
    user = f"moorage-{host.release.name}"
    try:
        pwd.getpwnam(user)
    except KeyError:
        run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user])
        changes.append(f"user {user}")
    account = pwd.getpwnam(user)
    for volume in volumes:
        path = Path(str(volume["path"]))
        if ensure_dir(path, 0o750):
            changes.append(f"volume {path}")
        status = path.stat()
        if (status.st_uid, status.st_gid) != (account.pw_uid, account.pw_gid):
            os.chown(path, account.pw_uid, account.pw_gid)
            changes.append(f"volume {path} owner")
    return changes


def prune(layout: ServiceLayout, keep: int, keep_release: int) -> list[str]:
    """Definitions beyond the newest ``keep`` releases go, and files no kept release or instance uses.

    Kept always: ``keep_release``, every release an instance here runs or would go back to.
    """
    changes: list[str] = []
    in_use: set[int] = {keep_release}
    for instance in layout.instances_with_state():
        state = read_state(layout, instance)
        if state is not None:
            in_use |= {state.release, *([] if state.previous is None else [state.previous])}
    numbers = sorted(int(path.name) for path in _numbered(layout.definitions_root))
    kept = set(numbers[-keep:]) | in_use
    for number in numbers:
        if number not in kept:
            remove_path(layout.definitions_dir(number))
            changes.append(f"definitions of release {number}")
    used_files: set[int] = set()
    for number in kept:
        for definition in layout.definitions_dir(number).glob("*.json"):
            try:
                used_files.add(int(json.loads(definition.read_text())["files_release"]))
            except (OSError, ValueError, KeyError, TypeError):
                used_files.add(number)
    for link in layout.current_dir.glob("*") if layout.current_dir.is_dir() else []:
        if link.is_symlink():
            used_files.add(int(Path(link.readlink()).name) if Path(link.readlink()).name.isdigit() else -1)
    kept_digests = set()
    for files in _numbered(layout.releases_dir):
        if int(files.name) not in used_files:
            remove_path(files)
            changes.append(f"files of release {files.name}")
        else:
            marker = files / UNPACKED_MARKER
            kept_digests.add(marker.read_text().strip() if marker.exists() else "")
    artifacts = sorted(layout.artifacts_dir.glob("*"), key=lambda path: path.stat().st_mtime) if layout.artifacts_dir.is_dir() else []
    for artifact in artifacts[:-keep] if keep else artifacts:
        if artifact.name.split(".")[0] not in kept_digests:
            remove_path(artifact)
            changes.append(f"archive {artifact.name}")
    return changes


def _numbered(directory: Path) -> list[Path]:
    return [path for path in directory.glob("*") if path.is_dir() and path.name.isdigit()] if directory.is_dir() else []


def listening_ports() -> set[int]:
    """TCP ports something listens on in this host's network namespace."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def service_token(management_token: str, service: str) -> tuple[str, str]:
    """The service's ACL token (secret, accessor), derived from the management token and its name.

    Every run (and every controller holding the platform's secrets) finds the same token.
    """
    secret = str(uuid.uuid5(TOKEN_NAMESPACE, f"{management_token}/service/{service}"))
    return secret, str(uuid.uuid5(TOKEN_NAMESPACE, f"{secret}/accessor"))


def ensure_service_token(client: ConsulClient, service: str, token: str, accessor: str, management_token: str) -> bool:
    """The service's own ACL token exists (a service identity, and read on the ingress acknowledgments); True when made or changed."""
    manager = ConsulClient(client.address, management_token)
    mine: dict[str, Any] | None = None
    try:
        document = ConsulClient(client.address, token).get("/v1/acl/token/self", timeout=5).document
        mine = document if isinstance(document, dict) else None
    except ConsulError as err:
        if err.status not in (401, 403, 404):
            raise
    policies = {str(policy.get("Name")) for policy in (mine or {}).get("Policies") or []}
    if mine is not None and INGRESS_READ_POLICY in policies:
        return False
    _ensure_policy(manager)
    body = {
        "AccessorID": accessor,
        "SecretID": token,
        "Description": f"moorage service {service}",
        "ServiceIdentities": [{"ServiceName": service}],
        "Policies": [{"Name": INGRESS_READ_POLICY}],
    }
    if mine is not None:  # made before it could read the acknowledgments: it gets the policy
        existing = str(mine.get("AccessorID") or accessor)
        manager.put(f"/v1/acl/token/{existing}", body={**body, "AccessorID": existing})
        return True
    try:
        manager.put("/v1/acl/token", body=body)
    except ConsulError:
        # Another host of the same deploy made it meanwhile; fine if it is there now.
        ConsulClient(client.address, token).get("/v1/acl/token/self", timeout=5)
    return True


def _ensure_policy(manager: ConsulClient) -> None:
    try:
        manager.get(f"/v1/acl/policy/name/{INGRESS_READ_POLICY}", timeout=5)
        return
    except ConsulError as err:
        if err.status not in (403, 404):
            raise
    try:
        manager.put(
            "/v1/acl/policy",
            body={"Name": INGRESS_READ_POLICY, "Description": "moorage: read the ingress acknowledgments", "Rules": INGRESS_READ_RULES},
        )
    except ConsulError:
        manager.get(f"/v1/acl/policy/name/{INGRESS_READ_POLICY}", timeout=5)  # made by another host meanwhile


def run_step(params: Mapping[str, Any], *, check_mode: bool = False) -> dict[str, Any]:
    """One step (``params["step"]``: check or ship) as the module and the agent's command line run it.

    The result: ``ok``, ``changed``, ``msg`` and the step's own keys (check: ``archive_present``,
    ``archive_dest``, ``running``; ship: ``changes``).
    """
    service = params["service"]
    layout = ServiceLayout(str(service.get("name", "")), str(params.get("root") or ROOT), str(params.get("config_root") or CONFIG_ROOT))
    host_name = str(params.get("host") or "this host")
    token, accessor = str(params.get("token") or ""), str(params.get("token_accessor") or "")
    management_token = str(params.get("management_token") or "")
    if not token and management_token:
        token, accessor = service_token(management_token, layout.service)
    try:
        host = host_release(params, layout)
        if params["step"] == "check":
            report = check(host, host_name)
            return {
                "ok": not report.problems,
                "changed": False,
                "msg": "; ".join(report.problems),
                "archive_present": report.archive_present,
                "archive_dest": report.archive_dest,
                "running": report.running,
            }
        if check_mode:
            changes = pending(host, token)
        else:
            consul = ConsulClient(str(params.get("consul_addr") or DEFAULT_ADDRESS), token)
            changes = ship(
                host,
                token=token,
                token_accessor=accessor,
                management_token=management_token,
                consul=consul,
                keep=int(params.get("keep") or 5),
            )
    except (DefinitionError, InvalidRoute, RuntimeFailure, ConsulError, OSError, KeyError, ValueError) as err:
        return {"ok": False, "changed": False, "msg": f"release {params.get('release')} of {layout.service} on {host_name}: {err}"}
    return {"ok": True, "changed": bool(changes), "msg": "", "changes": changes}


def main(argv: list[str]) -> int:
    """``release check|ship``: the step's parameters as one JSON document on stdin, its result as a JSON line."""
    parser = argparse.ArgumentParser(prog="moorage-agent release", description="Check that a release can go on this host, or put it here.")
    parser.add_argument("step", choices=["check", "ship"])
    args = parser.parse_args(argv)
    try:
        params = json.load(sys.stdin)
    except ValueError as err:
        print(json.dumps({"event": "result", "ok": False, "changed": False, "msg": f"stdin: not a JSON document: {err}"}))
        return 2
    result = run_step({**params, "step": args.step})
    print(json.dumps({"event": "result", **result}, sort_keys=True))
    return 0 if result["ok"] else 1


def host_release(params: Mapping[str, Any], layout: ServiceLayout) -> HostRelease:
    """A HostRelease from the module's (or the agent's) parameters."""
    service = params["service"]
    archive = params.get("archive")
    return HostRelease(
        release=ReleaseInput(
            service=service,
            release=int(params["release"]),
            version=str(params["version"]),
            files_release=int(params.get("files_release") or params["release"]),
            secrets={str(key): str(value) for key, value in (params.get("secrets") or {}).items()},
            lbs=tuple(str(lb) for lb in params.get("lbs") or ()),
            drain_timeout=float(params.get("drain_timeout") or 60),
        ),
        instances=tuple(params.get("instances") or ()),
        layout=layout,
        archive=None if not archive else Archive(str(archive["digest"]), str(archive["suffix"])),
    )
