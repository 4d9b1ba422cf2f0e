"""The compose target: one spec becomes a Docker Compose project for a developer's machine.

One service, one replica, on a published port of this machine; no Consul, no ingress (docs/dev.md).
Runtime docker runs the spec's image. Runtime systemd runs the built artifact (``moorage build``)
in an image made from a generated build context: the tarball unpacked on a Python base image and
a small entrypoint that does what a systemd unit does on a host (secrets into the environment,
the command as an unprivileged user). Every value is literal: a ``$`` is written ``$$`` so that
Compose interpolates nothing from the developer's shell.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from moorage.build import build_artifact, controller_cache_dir
from moorage.errors import BadInput
from moorage.ports import container_port
from moorage.spec.loader import artifact_path
from moorage.spec.model import PLACEHOLDER, Health, ServiceSpec
from moorage.spec.units import cpu_millicores, format_duration, memory_bytes

Document = dict[str, Any]

COMPOSE_FILE = "compose.yaml"
BUILD_DIR = "build"
SECRETS_DIR = "secrets"
ARTIFACT_FILE = "artifact.tar.gz"
ENTRYPOINT_FILE = "moorage-entrypoint"
# A Debian 12 based image with python3 (3.11, the interpreter `moorage build` installs wheels for),
# /bin/sh and setpriv (util-linux); override with --base-image, e.g. an image made by `docker import`.
DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"
DEFAULT_PUBLISH_ADDRESS = "127.0.0.1"
DEV_VERSION = "dev"
RUN_AS_ID = 10001  # the unprivileged user and group the command runs as (a systemd unit's User=)
APP_DIR = "/srv/app"

# What the entrypoint of a generated image does (POSIX sh): read each secret named in
# MOORAGE_SECRETS from its file into the variable of that name, then run the command as RUN_AS.
# The docker runtime gets the same loop inline, without the user switch (the image chose its user).
_SECRETS_LOOP = """\
secrets_dir=${MOORAGE_SECRETS_DIR:-/run/secrets}
for name in ${MOORAGE_SECRETS:-}; do
  if ! value=$(cat "$secrets_dir/$name"); then
    echo "moorage-entrypoint: cannot read secret $name from $secrets_dir/$name" >&2
    exit 78
  fi
  export "$name=$value"
done
"""
ENTRYPOINT_SCRIPT = (
    "#!/bin/sh\n"
    "# moorage: start the command as a systemd instance starts on a host: its secrets in the environment,\n"
    "# as an unprivileged user. Compose mounts each secret as a file under /run/secrets.\n"
    "set -eu\n" + _SECRETS_LOOP + f'exec setpriv --reuid={RUN_AS_ID} --regid={RUN_AS_ID} --clear-groups -- "$@"\n'
)
INLINE_ENTRYPOINT = "set -eu\n" + _SECRETS_LOOP + 'exec "$@"\n'


@dataclass(frozen=True)
class ComposeProject:
    """A Compose file and what it needs beside it: the build context of a systemd service."""

    service: str
    document: Document  # compose.yaml; secret files relative to its directory
    context_files: Mapping[str, str]  # file name in the build context -> text (runtime systemd)
    artifact: Path | None  # the built tarball, copied into the build context as ARTIFACT_FILE (runtime systemd)
    secrets: tuple[str, ...]  # names; their values go to SECRETS_DIR/NAME, never into the document

    def write_context(self, directory: Path) -> None:
        """The build context of a systemd service's image (nothing for runtime docker)."""
        if self.artifact is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.artifact, directory / ARTIFACT_FILE)
        for name, text in self.context_files.items():
            (directory / name).write_text(text)

    def write(self, directory: Path) -> Path:
        """compose.yaml, and the build context in BUILD_DIR beside it (render with ``context=None``); the compose file."""
        directory.mkdir(parents=True, exist_ok=True)
        self.write_context(directory / BUILD_DIR)
        if self.secrets:
            (directory / SECRETS_DIR).mkdir(mode=0o700, exist_ok=True)
        compose_file = directory / COMPOSE_FILE
        compose_file.write_text(to_yaml(self.document))
        return compose_file


def built_artifact(service: ServiceSpec, spec_file: Path, say: Callable[[str], None]) -> Path | None:
    """The tarball a systemd service's image is made from: ``moorage build``'s, or the spec's own tarball."""
    source = artifact_path(service, spec_file)
    if service.spec.runtime != "systemd" or source is None:
        return None
    if source.is_dir():
        return build_artifact(service.name, source, say=say).path
    if not source.name.endswith((".tar", ".tar.gz", ".tgz")):
        raise BadInput(f"spec.artifact: {service.spec.artifact}: the compose target needs a directory or a tarball (.tar, .tar.gz, .tgz)")
    return source


def context_cache_dir(artifact: Path) -> Path:
    """Where a printed Compose file's build context lives: the build cache, named by the tarball's bytes."""
    return controller_cache_dir() / "compose" / hashlib.sha256(artifact.read_bytes()).hexdigest()[:16]


def render(
    service: ServiceSpec,
    artifact: Path | None,
    *,
    version: str = DEV_VERSION,
    publish_address: str = DEFAULT_PUBLISH_ADDRESS,
    base_image: str = DEFAULT_BASE_IMAGE,
    context: Path | None = None,
    source_name: str = "moorage.yml",
) -> ComposeProject:
    """The Compose project of ``service``; ``artifact`` is its built tarball (runtime systemd, else None).

    The image's build context is BUILD_DIR beside the compose file, or the directory ``context``.
    """
    body = service.spec
    if body.runtime == "systemd" and artifact is None:
        raise ValueError("runtime systemd renders from a built artifact")
    values = _values(service, version)
    _check_no_secret_in_arguments(service)
    container: Document = {}
    context_files: dict[str, str] = {}
    if body.runtime == "systemd":
        container["build"] = {"context": str(context) if context else f"./{BUILD_DIR}", "args": {"BASE_IMAGE": base_image}}
        container["image"] = f"{service.name}:{version}"
        context_files = {"Dockerfile": _dockerfile(service, source_name), ENTRYPOINT_FILE: ENTRYPOINT_SCRIPT}
    else:
        container["image"] = body.image
        if body.secrets:
            if body.command is None:
                raise BadInput(
                    "spec.command: the compose target needs it with runtime docker and secrets "
                    "(an entrypoint that reads the secret files runs it)"
                )
            container["entrypoint"] = ["/bin/sh", "-c", INLINE_ENTRYPOINT, ENTRYPOINT_FILE]
    if body.command is not None:
        container["command"] = [_substitute(argument, values) for argument in body.command]
    container["environment"] = _environment(service, values)
    port = container_port(body.port)
    container["ports"] = [f"{publish_address}:{port}:{port}"]
    if body.secrets:
        container["secrets"] = [{"source": name, "target": name} for name in body.secrets]
    if body.volumes:
        container["volumes"] = [{"type": "volume", "source": volume.name, "target": volume.path} for volume in body.volumes]
    if body.health is not None:
        container["healthcheck"] = _healthcheck(service, body.health, values)
    container["restart"] = "on-failure"  # the unit's Restart=on-failure
    container["stop_signal"] = body.stop.signal
    container["stop_grace_period"] = format_duration(body.stop.grace_period)
    if body.resources.memory is not None:
        container["mem_limit"] = memory_bytes(body.resources.memory)
    if body.resources.cpu is not None:
        container["cpus"] = cpu_millicores(body.resources.cpu) / 1000
    container["labels"] = _labels(service)
    document: Document = {"services": {service.name: _literal(container)}}
    if body.secrets:
        document["secrets"] = {name: {"file": f"./{SECRETS_DIR}/{name}"} for name in body.secrets}
    if body.volumes:
        document["volumes"] = {volume.name: {} for volume in body.volumes}
    return ComposeProject(service.name, document, context_files, artifact, tuple(body.secrets))


def _values(service: ServiceSpec, version: str) -> dict[str, str]:
    """What ``${NAME}`` stands for in one local instance: the built-in variables, then env values."""
    body = service.spec
    builtins = {
        "PORT": str(container_port(body.port)),
        "MOORAGE_SERVICE": service.name,
        "MOORAGE_VERSION": version,
        "MOORAGE_RELEASE": version,
        "MOORAGE_INSTANCE": f"{service.name}-1",
    }
    # As on a host (the service role's env file): env values may use the built-in variables.
    return builtins | {key: _substitute(value, builtins) for key, value in body.env.items()}


def _substitute(text: str, values: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda match: values.get(match[1], match[0]), text)


def _check_no_secret_in_arguments(service: ServiceSpec) -> None:
    """A secret's value is known only when the container starts: it cannot be written into arguments."""
    body = service.spec
    places = [("spec.command", argument) for argument in body.command or []]
    if body.health is not None:
        places += [("spec.health.command", argument) for argument in body.health.command or []]
    for field, argument in places:
        for name in PLACEHOLDER.findall(argument):
            if name in body.secrets:
                raise BadInput(f"{field}: ${{{name}}} is a secret: the compose target passes secrets in the environment only")


def _environment(service: ServiceSpec, values: Mapping[str, str]) -> dict[str, str]:
    environment = dict(values)
    if service.spec.secrets:
        environment["MOORAGE_SECRETS"] = " ".join(service.spec.secrets)  # read by the entrypoint
    return environment


def _healthcheck(service: ServiceSpec, health: Health, values: Mapping[str, str]) -> Document:
    port = container_port(service.spec.port)
    python = service.spec.runtime == "systemd"  # the generated image has python3; any other image maybe not
    if health.kind == "http":
        url = f"http://127.0.0.1:{port}{health.http}"
        timeout = health.timeout.total_seconds()
        test = (
            ["CMD", "python3", "-c", f"import urllib.request; urllib.request.urlopen({url!r}, timeout={timeout:g})"]
            if python
            else ["CMD-SHELL", f"wget -q -O /dev/null {url} || curl -fsS -o /dev/null {url}"]
        )
    elif health.kind == "tcp":
        test = (
            ["CMD", "python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1).close()"]
            if python
            else ["CMD-SHELL", f"nc -z 127.0.0.1 {port}"]
        )
    else:
        test = ["CMD", *(_substitute(argument, values) for argument in health.command or [])]
    return {
        "test": test,
        "interval": format_duration(health.interval),
        "timeout": format_duration(health.timeout),
        "retries": 3,
        # Until first healthy, an instance has update.healthyDeadline (a Kubernetes startup probe).
        "start_period": format_duration(service.spec.update.healthy_deadline),
    }


def _labels(service: ServiceSpec) -> dict[str, str]:
    body = service.spec
    labels = {**service.metadata.labels, "moorage.service": service.name}
    if body.routes:
        labels["moorage.routes"] = " ".join(f"{route.host}{route.path}" for route in body.routes)
    if body.metrics is not None:
        labels["moorage.metrics"] = body.metrics.path
    return labels


def _dockerfile(service: ServiceSpec, source_name: str) -> str:
    lines = [
        f"# Generated by moorage from {source_name}: the built artifact of {service.name}, run as a systemd unit runs it.",
        "# BASE_IMAGE needs python3 (the version the artifact was built for), /bin/sh and setpriv (util-linux).",
        f"ARG BASE_IMAGE={DEFAULT_BASE_IMAGE}",
        "FROM ${BASE_IMAGE}",
        f"ADD {ARTIFACT_FILE} {APP_DIR}/",
        f"COPY {ENTRYPOINT_FILE} /usr/local/bin/{ENTRYPOINT_FILE}",
    ]
    if service.spec.volumes:
        # A new named volume starts as a copy of this directory: owned by the user the command runs as.
        paths = " ".join(volume.path for volume in service.spec.volumes)
        lines.append(f"RUN mkdir -p {paths} && chown {RUN_AS_ID}:{RUN_AS_ID} {paths}")
    lines += [
        f"WORKDIR {APP_DIR}",
        f'ENTRYPOINT ["/bin/sh", "/usr/local/bin/{ENTRYPOINT_FILE}"]',
    ]
    return "\n".join(lines) + "\n"


def _literal(value: Any) -> Any:
    """Every string with ``$`` doubled: Compose reads ``$$`` as one ``$`` and interpolates nothing."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_literal(item) for item in value]
    if isinstance(value, dict):
        return {key: _literal(item) for key, item in value.items()}
    return value


def to_yaml(document: Document) -> str:
    return str(yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True))


def write_secret_files(directory: Path, values: Mapping[str, str]) -> None:
    """``directory/secrets/NAME`` for each value: 0600 files in a 0700 directory, written whole."""
    secrets = directory / SECRETS_DIR
    secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
    secrets.chmod(0o700)
    for name, value in values.items():
        path = secrets / name
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(value)
        path.chmod(0o600)
