"""One instance as one release defines it: everything the host needs to run, check and register it.

The service role's prepare step (``moorage.platform.release``) writes a definition per instance
and release (``CONFIG/NAME/releases/N/ID.json``, 0600: the env holds secret values); the switch
(``instance.py``) reads it. A definition is derived from the service as ``moorage render --target
classic`` gives it (``moorage_service``), the instance (``{id, index, host, address, port}``) and
the release; nothing here knows the spec model, so this module runs on any host.

Placeholders: ``${PORT}``, ``${MOORAGE_SERVICE}``, ``${MOORAGE_VERSION}``, ``${MOORAGE_RELEASE}``
and ``${MOORAGE_INSTANCE}`` everywhere; in an env value also the env entries before it and the
secrets; in a health command also the env entries (never a secret: the check is visible in
Consul). In ``command`` systemd expands them from the environment at start; for Docker they are
expanded here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .health_gate import Probe
from .layout import ServiceLayout
from .registration import registration_body

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_DRAIN_TIMEOUT = 60.0


class DefinitionError(ValueError):
    """The release's input cannot define an instance (one line naming the field)."""


@dataclass(frozen=True)
class DockerRun:
    """How ``docker run`` starts the instance's container."""

    image: str
    command: tuple[str, ...]
    ports: tuple[str, ...]  # HOST:CONTAINER
    volumes: tuple[str, ...]  # HOST:CONTAINER
    memory: int | None
    cpus: float | None
    stop_signal: str
    stop_grace: float


@dataclass(frozen=True)
class InstanceDefinition:
    service: str
    instance: str
    host: str
    release: int
    version: str
    files_release: int
    runtime: str  # systemd | docker
    address: str
    port: int | None
    env: tuple[tuple[str, str], ...]  # in file order; holds secret values
    unit: str  # the systemd unit's text ("" for docker)
    docker: DockerRun | None
    registration: dict[str, Any]  # the Consul agent's service registration body
    probe: Probe | None  # None: no health check, no gate
    min_healthy: float
    healthy_deadline: float
    stop_grace: float
    auto_revert: bool
    lbs: tuple[str, ...]  # Consul node names of the lb hosts that route it
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    routes: tuple[str, ...] = field(default=())  # route=... tags, for reports

    @property
    def routed(self) -> bool:
        """Whether lb hosts send it traffic (so draining and routing are waited for)."""
        return bool(self.routes) and self.port is not None and bool(self.lbs)

    @property
    def backend(self) -> str:
        return f"{self.address}:{self.port}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def digest(self) -> str:
        """Identifies the definition's content (the state file keeps it, never the content)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def env_text(self) -> str:
        lines = [f"# moorage {self.service} {self.instance}, release {self.release}"]
        lines += [f"{name}={value}" for name, value in self.env]
        return "\n".join(lines) + "\n"


def definition_from_json(text: str) -> InstanceDefinition:
    document = json.loads(text)
    probe = document.pop("probe")
    docker = document.pop("docker")
    return InstanceDefinition(
        **{
            **document,
            "env": tuple((str(name), str(value)) for name, value in document["env"]),
            "lbs": tuple(document["lbs"]),
            "routes": tuple(document.get("routes", ())),
        },
        probe=None if probe is None else Probe(**{**probe, "command": tuple(probe["command"])}),
        docker=None if docker is None else DockerRun(**{**docker, **{key: tuple(docker[key]) for key in ("command", "ports", "volumes")}}),
    )


@dataclass(frozen=True)
class ReleaseInput:
    """What a host gets to define a release's instances: the rendered service and the release."""

    service: Mapping[str, Any]  # moorage_service (moorage.targets.classic.service_variables)
    release: int
    version: str
    files_release: int
    secrets: Mapping[str, str]
    lbs: tuple[str, ...]
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT

    @property
    def name(self) -> str:
        return str(self.service["name"])


def define(release: ReleaseInput, instance: Mapping[str, Any], layout: ServiceLayout) -> InstanceDefinition:
    """``instance`` (``{id, index, host, address, port}``) as ``release`` defines it."""
    service = release.service
    name = release.name
    instance_id = str(instance["id"])
    port = None if instance.get("port") in (None, "", 0) else int(instance["port"])
    address = str(instance["address"])
    builtins = {
        "PORT": "" if port is None else str(port),
        "MOORAGE_SERVICE": name,
        "MOORAGE_VERSION": release.version,
        "MOORAGE_RELEASE": str(release.release),
        "MOORAGE_INSTANCE": instance_id,
    }
    env = _environment(builtins, service.get("env") or {}, service.get("secrets") or [], release.secrets)
    visible = _without_secrets(builtins, service.get("env") or {}, service.get("secrets") or [])
    health = service.get("health")
    update = service["update"]
    stop = service["stop"]
    routes = [{"host": str(item["host"]), "path": str(item.get("path") or "/")} for item in service.get("routes") or []]
    metrics = service.get("metrics")
    runtime = str(service["runtime"])
    check_command = [expand(str(arg), visible) for arg in (health or {}).get("command") or []]
    registration = registration_body(
        instance_id=instance_id,
        name=name,
        address=address,
        port=port or 0,
        routes=routes,
        metrics_path=None if not metrics else str(metrics["path"]),
        health=None if not health else {**health, "command": check_command},
        meta={
            "version": release.version,
            "release": str(release.release),
            "instance": instance_id,
            "host": str(instance["host"]),
            "runtime": runtime,
        },
    )
    probe = None
    if health:
        probe = Probe(
            kind=str(health["kind"]),
            address=address,
            port=port or 0,
            path=str(health.get("http") or "/"),
            command=tuple(check_command),
            timeout=float(health["timeout_seconds"]),
        )
    stop_grace = float(stop["grace_period_seconds"])
    return InstanceDefinition(
        service=name,
        instance=instance_id,
        host=str(instance["host"]),
        release=release.release,
        version=release.version,
        files_release=release.files_release,
        runtime=runtime,
        address=address,
        port=port,
        env=env,
        unit=systemd_unit(service, instance_id, layout) if runtime == "systemd" else "",
        docker=_docker_run(service, port, builtins, stop_grace) if runtime == "docker" else None,
        registration=registration,
        probe=probe,
        min_healthy=float(update["min_healthy_seconds"]),
        healthy_deadline=float(update["healthy_deadline_seconds"]),
        stop_grace=stop_grace,
        auto_revert=bool(update["auto_revert"]),
        lbs=tuple(release.lbs),
        drain_timeout=release.drain_timeout,
        routes=tuple(tag for tag in registration["Tags"] if tag.startswith("route=")),
    )


def expand(text: str, values: Mapping[str, str]) -> str:
    """``${NAME}`` replaced by ``values[NAME]``; unknown names stay as written."""
    return PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), text)


def _environment(
    builtins: Mapping[str, str], env: Mapping[str, Any], secret_names: Sequence[str], secret_values: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    missing = [secret for secret in secret_names if secret not in secret_values]
    if missing:
        raise DefinitionError(f"secrets {', '.join(missing)} have no value: pass --secrets FILE --vault-password-file P")
    values = {**builtins, **{secret: str(secret_values[secret]) for secret in secret_names}}
    entries = list(builtins.items())
    for key, raw in env.items():
        value = expand(str(raw), values)
        values[str(key)] = value
        entries.append((str(key), value))
    entries += [(secret, str(secret_values[secret])) for secret in secret_names]
    for key, value in entries:
        if "\n" in value or "\r" in value:
            raise DefinitionError(f"env {key}: a value must be one line (an env file holds one variable per line)")
    return tuple(entries)


def _without_secrets(builtins: Mapping[str, str], env: Mapping[str, Any], secret_names: Sequence[str]) -> dict[str, str]:
    """The values a health check may show: built-ins and the env entries that use no secret."""
    values = dict(builtins)
    for key, raw in env.items():
        used = set(PLACEHOLDER.findall(str(raw)))
        if not used & set(secret_names) and not used - set(values):
            values[str(key)] = expand(str(raw), values)
    return values


def systemd_unit(service: Mapping[str, Any], instance_id: str, layout: ServiceLayout) -> str:
    """The unit of ``instance_id``: the same for every release (it names no release and no version)."""
    name = str(service["name"])
    stop = service["stop"]
    resources = service.get("resources") or {}
    volumes = [str(volume["path"]) for volume in service.get("volumes") or []]
    command = service.get("command") or []
    if not command:
        raise DefinitionError("spec.command: the systemd runtime needs a command")
    lines = [
        "# Written by moorage's deploy agent; the release comes from the env file and the current link.",
        "[Unit]",
        f"Description=moorage {name} instance {instance_id}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={layout.current_link(instance_id)}",
        f"EnvironmentFile={layout.env_file(instance_id)}",
        "ExecStart=" + " ".join(_unit_quoted(str(arg)) for arg in command),
        f"SyslogIdentifier={name}",
        "Restart=on-failure",
        "RestartSec=1",
        f"KillSignal={stop['signal']}",
        f"TimeoutStopSec={_seconds(stop['grace_period_seconds'])}",
    ]
    if resources.get("memory_max"):
        lines.append(f"MemoryMax={resources['memory_max']}")
    if resources.get("cpu_quota"):
        lines.append(f"CPUQuota={resources['cpu_quota']}")
    if volumes:
        lines += [
            "# Volumes are owned by a fixed user so data survives releases.",
            f"User=moorage-{name}",
            f"ReadWritePaths={' '.join(volumes)}",
        ]
    else:
        lines.append("DynamicUser=yes")
    lines += [
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def _unit_quoted(arg: str) -> str:
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _seconds(value: object) -> str:
    number = float(str(value))
    return str(int(number)) if number.is_integer() else f"{number:g}"


def _docker_run(service: Mapping[str, Any], port: int | None, builtins: Mapping[str, str], stop_grace: float) -> DockerRun:
    image = service.get("image")
    if not image:
        raise DefinitionError("spec.image: the docker runtime needs an image")
    resources = service.get("resources") or {}
    volumes = [str(volume["path"]) for volume in service.get("volumes") or []]
    return DockerRun(
        image=str(image),
        command=tuple(expand(str(arg), builtins) for arg in service.get("command") or []),
        ports=() if port is None else (f"{port}:{port}",),
        volumes=tuple(f"{path}:{path}" for path in volumes),
        memory=None if not resources.get("memory_max") else int(resources["memory_max"]),
        cpus=None if not resources.get("cpus") else float(resources["cpus"]),
        stop_signal=str(service["stop"]["signal"]),
        stop_grace=stop_grace,
    )
