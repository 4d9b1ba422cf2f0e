"""`moorage dev up|down FILE`: the same service file on a developer's machine, run by Docker Compose.

The project (compose.yaml, the image's build context, the secret files) lives in a directory of
its own per spec file (``moorage dev up`` prints it); docs/dev.md says what differs from production.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

import click

from moorage.commands.options import output_option
from moorage.deploy.secret_values import read_secret_values
from moorage.errors import MoorageError
from moorage.output import OutputFormat, console, emit_event, emit_result, err_console, is_structured
from moorage.ports import container_port
from moorage.spec.loader import image_archive_path, load_spec
from moorage.spec.model import ServiceSpec
from moorage.spec.units import format_duration
from moorage.targets import compose

POLL_SECONDS = 0.5


def dev_projects_dir() -> Path:
    """``MOORAGE_STATE_DIR/dev``; by default /var/lib/moorage for root, else the user's state directory."""
    configured = os.environ.get("MOORAGE_STATE_DIR")
    if configured:
        root = Path(configured)
    elif os.geteuid() == 0:
        root = Path("/var/lib/moorage")
    else:
        root = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "moorage"
    return root / "dev"


def project_dir(service: ServiceSpec, spec_file: Path) -> Path:
    """One directory per spec file: two checkouts of one service do not share a project."""
    return dev_projects_dir() / f"{service.name}-{hashlib.sha256(str(spec_file.resolve()).encode()).hexdigest()[:8]}"


def project_name(service: ServiceSpec) -> str:
    return f"moorage-{service.name}"


def compose_tool() -> list[str]:
    """``MOORAGE_COMPOSE`` (e.g. ``docker compose``), else Docker's compose plugin, else ``docker-compose``."""
    configured = os.environ.get("MOORAGE_COMPOSE")
    if configured:
        return shlex.split(configured)
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise MoorageError("no Docker Compose here: install docker-compose (Debian: apt-get install docker-compose) or Docker's compose plugin")


def check_engine() -> None:
    """One line instead of Compose's traceback when no Docker engine answers."""
    if shutil.which("docker"):  # the CLI knows the current context (Docker Desktop, rootless, DOCKER_HOST)
        probe = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            reason = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
            raise MoorageError(f"no Docker engine answers: {reason}")
        return
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        try:
            with socket.socket(socket.AF_UNIX) as engine:
                engine.connect(host.removeprefix("unix://"))
        except OSError as error:
            raise MoorageError(f"no Docker engine answers at {host}: {error.strerror}") from None


def _run_compose(tool: list[str], arguments: list[str], what: str) -> None:
    """Run Compose with its output on our stderr; a failure is one line with Compose's last words."""
    command = [*tool, *arguments]
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    except OSError as error:
        raise MoorageError(f"{shlex.join(tool)}: {error.strerror}") from None
    last_lines: deque[str] = deque(maxlen=5)
    assert process.stdout is not None
    for line in process.stdout:
        sys.stderr.write(line)
        if line.strip():
            last_lines.append(line.strip())
    if process.wait() != 0:
        raise MoorageError(f"{shlex.join(tool)} {what} failed (exit {process.returncode}): {last_lines[-1] if last_lines else 'no output'}")


def reachable_address(publish_address: str) -> str:
    """Where this machine reaches a port published on ``publish_address`` (a wildcard: loopback)."""
    return "127.0.0.1" if publish_address == "0.0.0.0" else publish_address


def _wait_healthy(service: ServiceSpec, address: str) -> bool | None:
    """Whether the published port answers the spec's health check by update.healthyDeadline (None: nothing to ask)."""
    body = service.spec
    if body.health is None or body.health.kind == "command":
        return None
    deadline = time.monotonic() + body.update.healthy_deadline.total_seconds()
    while time.monotonic() < deadline:
        if _answers(service, address):
            return True
        time.sleep(POLL_SECONDS)
    return False


def _answers(service: ServiceSpec, address: str) -> bool:
    body = service.spec
    assert body.health is not None
    port = container_port(body.port)
    timeout = body.health.timeout.total_seconds()
    try:
        if body.health.kind == "tcp":
            socket.create_connection((address, port), timeout=timeout).close()
            return True
        with urllib.request.urlopen(f"http://{address}:{port}{body.health.http}", timeout=timeout) as answer:
            status: int = answer.status
            return 200 <= status < 300
    except (OSError, urllib.error.URLError):
        return False


@click.group()
def dev() -> None:
    """Run a service file on this machine with Docker Compose (docs/dev.md)."""


@dev.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--secrets", "secrets_file", type=click.Path(path_type=Path), help="YAML NAME: value of the spec's secrets (may be a Vault).")
@click.option("--vault-password-file", type=click.Path(path_type=Path), help="Opens --secrets when it is an Ansible Vault.")
@click.option("--version", "release_version", default=compose.DEV_VERSION, show_default=True, help="MOORAGE_VERSION and the image tag.")
@click.option(
    "--base-image", default=compose.DEFAULT_BASE_IMAGE, show_default=True, help="runtime systemd: the image the artifact runs on."
)
@click.option(
    "--publish-address", default=compose.DEFAULT_PUBLISH_ADDRESS, show_default=True, help="The address of this machine the port is on."
)
@output_option
def up(
    file: Path,
    secrets_file: Path | None,
    vault_password_file: Path | None,
    release_version: str,
    base_image: str,
    publish_address: str,
    output_format: OutputFormat,
) -> None:
    """Build (runtime systemd) and start service FILE with Docker Compose; wait until its health check passes."""
    service = load_spec(file).model
    secret_values = read_secret_values(service.spec.secrets, secrets_file, vault_password_file)
    tool = compose_tool()
    check_engine()

    def say(message: str) -> None:
        if is_structured(output_format):
            emit_event({"event": "progress", "message": message})
        else:
            err_console.print(message, markup=False)

    artifact = compose.built_artifact(service, file, say)
    project = compose.render(
        service, artifact, version=release_version, publish_address=publish_address, base_image=base_image, source_name=file.name
    )
    directory = project_dir(service, file)
    compose_file = project.write(directory)
    compose.write_secret_files(directory, secret_values)
    say(f"{service.name}: Compose project {project_name(service)} in {directory}")
    archive = image_archive_path(service, file)
    if archive is not None:
        say(f"loading {archive}")
        _run_compose(["docker"], ["load", "--input", str(archive)], "load")
    _run_compose(tool, ["--project-name", project_name(service), "--file", str(compose_file), "up", "--detach", "--build"], "up")
    address = reachable_address(publish_address)
    healthy = _wait_healthy(service, address)
    if healthy is False:
        logs = f"{shlex.join(tool)} --project-name {project_name(service)} --file {compose_file} logs"
        deadline = format_duration(service.spec.update.healthy_deadline)
        raise MoorageError(f"{service.name} is not healthy after {deadline} (update.healthyDeadline); its output: {logs}")
    url = f"http://{address}:{container_port(service.spec.port)}/"
    if is_structured(output_format):
        emit_result(
            {
                "ok": True,
                "service": service.name,
                "project": project_name(service),
                "directory": str(directory),
                "compose_file": str(compose_file),
                "url": url,
                "healthy": healthy,
            }
        )
        return
    state = "healthy" if healthy else "started"
    console.print(f"{service.name} is up ({state}): {url}", markup=False)
    for route in service.spec.routes:
        console.print(f"  route {route.host}{route.path}: curl -H 'Host: {route.host}' {url}{route.path.lstrip('/')}", markup=False)


@dev.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--volumes", is_flag=True, help="Remove the service's volumes too (its data).")
@output_option
def down(file: Path, volumes: bool, output_format: OutputFormat) -> None:
    """Stop and remove what `moorage dev up FILE` started; volumes stay unless --volumes."""
    service = load_spec(file).model
    directory = project_dir(service, file)
    compose_file = directory / compose.COMPOSE_FILE
    stopped = compose_file.exists()
    if stopped:
        arguments = ["--project-name", project_name(service), "--file", str(compose_file), "down", *(["--volumes"] if volumes else [])]
        tool = compose_tool()
        check_engine()
        _run_compose(tool, arguments, "down")
        shutil.rmtree(directory / compose.SECRETS_DIR, ignore_errors=True)
    if is_structured(output_format):
        emit_result({"ok": True, "service": service.name, "stopped": stopped, "volumes_removed": volumes and stopped})
    elif stopped:
        console.print(f"{service.name}: stopped and removed" + (" with its volumes" if volumes else " (volumes kept)"), markup=False)
    else:
        console.print(f"{service.name}: nothing to stop (no dev project for {file})", markup=False)


COMMANDS: list[click.Command] = [dev]
