"""The ``moorage/v1`` ``Service`` spec as pydantic models.

YAML keys are camelCase (``maxPerHost``) and are the contract (docs/concepts.md); Python
attributes are snake_case. Defaults follow the anchors: probes like Kubernetes
(interval 10s, timeout 1s), updates like Nomad (maxParallel 1, minHealthy 10s,
healthyDeadline 5m) but with autoRevert on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from moorage.agents import routes
from moorage.spec.units import (
    Count,
    CpuQuantity,
    Duration,
    GracePeriod,
    MemoryQuantity,
    Port,
    PositiveCount,
    PositiveDuration,
)

API_VERSION = "moorage/v1"
KIND = "Service"

# Variables every instance gets; `${NAME}` may use these, env keys and secret names.
BUILTIN_VARIABLES = ("PORT", "MOORAGE_SERVICE", "MOORAGE_VERSION", "MOORAGE_RELEASE", "MOORAGE_INSTANCE")
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
ABSOLUTE_PATH = r"^/"
URL_PATH = r"^/[^\s]*$"
SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL")

ServiceName = Annotated[str, StringConstraints(min_length=2, max_length=63, pattern=DNS_LABEL)]
VolumeName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME)]
AbsolutePath = Annotated[str, StringConstraints(pattern=ABSOLUTE_PATH)]
UrlPath = Annotated[str, StringConstraints(pattern=URL_PATH)]


def _scalar_as_text(value: object) -> object:
    """YAML reads `DEBUG: 1` or `ON: true` as numbers or booleans; env values are text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


EnvValue = Annotated[
    str,
    BeforeValidator(_scalar_as_text),
    WithJsonSchema({"type": ["string", "number", "boolean"]}),
]


class SpecModel(BaseModel):
    """Strict about unknown keys (so misspellings are caught) and about types, camelCase in YAML.

    Strict like a Kubernetes API and like the JSON Schema generated from these models: ``"3"`` or
    ``true`` is no number and ``"yes"`` no boolean. A number is a whole number when JSON Schema says
    so (``3.0``); env values and quantities take numbers explicitly (see their types).
    """

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
    )


class Metadata(SpecModel):
    """Who the service is."""

    name: ServiceName = Field(description="RFC 1123 label, 2-63 characters.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels, copied to every instance.")


class Placement(SpecModel):
    """Where instances run."""

    group: Annotated[str, StringConstraints(min_length=1)] = Field(
        default="app", description="Inventory group whose hosts run the instances."
    )
    max_per_host: PositiveCount = Field(default=1, description="At most this many instances on one host.")


class Health(SpecModel):
    """The health check: exactly one of http, tcp or command."""

    http: UrlPath | None = Field(default=None, description="HTTP GET path that answers 2xx when healthy.")
    tcp: bool = Field(default=False, description="Healthy when the port accepts a connection.")
    command: list[str] | None = Field(default=None, min_length=1, description="Healthy when it exits 0.")
    interval: PositiveDuration = Field(default=timedelta(seconds=10), description="How often to check, e.g. 2s.")
    timeout: PositiveDuration = Field(default=timedelta(seconds=1), description="A check slower than this fails.")
    deregister_after: PositiveDuration = Field(
        default=timedelta(minutes=5), description="Remove an instance from Consul after failing this long."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Health:
        kinds = [name for name, on in (("http", self.http is not None), ("tcp", self.tcp), ("command", self.command is not None)) if on]
        if len(kinds) != 1:
            raise ValueError("set exactly one of http, tcp or command" + (f" (got {', '.join(kinds)})" if kinds else ""))
        if self.timeout > self.interval:
            raise ValueError("timeout must not be longer than interval")
        return self

    @property
    def kind(self) -> Literal["http", "tcp", "command"]:
        if self.http is not None:
            return "http"
        return "tcp" if self.tcp else "command"


def _route_rule(problem: Callable[[str], str | None]) -> Callable[[str], str]:
    """A validator from one of the shared route rules (moorage.agents.routes: the ingress applies the same)."""

    def check(value: str) -> str:
        reason = problem(value)
        if reason:
            raise ValueError(reason)
        return value

    return check


RouteHost = Annotated[
    str,
    AfterValidator(_route_rule(routes.host_problem)),
    WithJsonSchema({"type": "string", "maxLength": routes.MAX_HOST_LENGTH, "pattern": routes.HOST_PATTERN}),
]
RoutePath = Annotated[
    str,
    AfterValidator(_route_rule(routes.path_problem)),
    WithJsonSchema({"type": "string", "pattern": routes.PATH_PATTERN}),
]


class Route(SpecModel):
    """Traffic for this host name and path prefix goes to the service's instances."""

    host: RouteHost = Field(description="Host name the ingress answers for, e.g. hello.example.test (a DNS name; *.example.test works).")
    path: RoutePath = Field(default="/", description="Path prefix: / or /SEGMENT[/SEGMENT...], no trailing /.")


class Metrics(SpecModel):
    """Prometheus scrapes every instance."""

    path: UrlPath = Field(default="/metrics", description="Path of the Prometheus text endpoint.")


class Resources(SpecModel):
    """Limits per instance."""

    memory: MemoryQuantity | None = Field(default=None, description="Memory limit, e.g. 256Mi.")
    cpu: CpuQuantity | None = Field(default=None, description="CPU limit, e.g. 500m (half a core).")


class Volume(SpecModel):
    """A named directory on the host; a service with volumes stays on its hosts."""

    name: VolumeName = Field(description="Volume name (RFC 1123 label).")
    path: AbsolutePath = Field(description="Where the instance sees it (absolute path).")


class Update(SpecModel):
    """Rolling update: health-gated, reverted automatically on failure."""

    max_parallel: PositiveCount = Field(default=1, description="Instances replaced at the same time.")
    min_healthy: Duration = Field(default=timedelta(seconds=10), description="A new instance must stay healthy this long to count.")
    healthy_deadline: Duration = Field(default=timedelta(minutes=5), description="Give up on an instance not healthy by then.")
    auto_revert: bool = Field(default=True, description="Roll back to the last good release on failure.")
    canary: Count = Field(default=0, description="Instances of the new release to start before rolling on.")
    order: Literal["start-first", "stop-first"] | None = Field(
        default=None,
        description=(
            "How an instance is replaced. start-first: the new release starts beside the old one on the same host "
            "(another port, the same volumes) and the old one is drained and stopped once the new one is routed. "
            "stop-first: the old one is drained and stopped first (for files two processes cannot share). "
            "Default: start-first for a service with volumes, stop-first otherwise."
        ),
    )

    @model_validator(mode="after")
    def _deadline_covers_min_healthy(self) -> Update:
        if self.healthy_deadline <= self.min_healthy:
            raise ValueError("healthyDeadline must be longer than minHealthy")
        return self


class Stop(SpecModel):
    """How an instance is stopped."""

    signal: Literal[SIGNALS] = Field(default="SIGTERM", description="Signal sent first.")  # type: ignore[valid-type]
    grace_period: GracePeriod = Field(default=timedelta(seconds=30), description="Then SIGKILL after this long.")


class ServiceBody(SpecModel):
    """What runs, how many, and how it is reached, checked and updated."""

    runtime: Literal["systemd", "docker"] = Field(default="systemd", description="systemd unit or Docker container.")
    artifact: str | None = Field(default=None, description="systemd: directory or tarball, relative to the spec file.")
    command: list[str] | None = Field(
        default=None, min_length=1, description="Program and arguments; ${PORT} and env names are substituted."
    )
    image: str | None = Field(default=None, description="docker: image reference.")
    image_archive: str | None = Field(
        default=None, description="docker: image tarball for hosts without a registry, relative to the spec file."
    )
    replicas: Count = Field(default=1, description="Number of instances.")
    placement: Placement = Field(default_factory=Placement)
    port: Port | None = Field(
        default=None,
        description=(
            "Port the service listens on (given to it as PORT; instances sharing a host get port+1, ...). "
            "Leave it out for a free port per instance from the platform's range (moorage_dynamic_ports), kept across deploys."
        ),
    )
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, description="Environment variables.")
    secrets: list[EnvName] = Field(default_factory=list, description="Names of secrets; values come from Ansible Vault.")
    health: Health | None = None
    routes: list[Route] = Field(default_factory=list, description="Ingress routes (NGINX / Ingress).")
    metrics: Metrics | None = None
    resources: Resources = Field(default_factory=Resources)
    volumes: list[Volume] = Field(default_factory=list, description="Named host volumes.")
    update: Update = Field(default_factory=Update)
    stop: Stop = Field(default_factory=Stop)

    @property
    def starts_first(self) -> bool:
        """Whether an instance is replaced start-first (``update.order``; unset: start-first with volumes)."""
        return self.update.order == "start-first" or (self.update.order is None and bool(self.volumes))


class ServiceSpec(SpecModel):
    """A moorage service: one file, rendered to VMs (classic) or Kubernetes."""

    api_version: Literal["moorage/v1"] = Field(alias="apiVersion", description="Always moorage/v1.")
    kind: Literal["Service"] = Field(description="Always Service.")
    metadata: Metadata
    spec: ServiceBody

    @property
    def name(self) -> str:
        return self.metadata.name


Location = tuple[str | int, ...]


def semantic_errors(service: ServiceSpec) -> list[tuple[Location, str]]:
    """Checks that span several fields, each with the path of the field to blame."""
    body = service.spec
    errors: list[tuple[Location, str]] = []
    if body.runtime == "systemd":
        if body.artifact is None:
            errors.append((("spec",), "runtime systemd needs 'artifact' (a directory or tarball)"))
        if body.command is None:
            errors.append((("spec",), "runtime systemd needs 'command'"))
        for key, value in (("image", body.image), ("imageArchive", body.image_archive)):
            if value is not None:
                errors.append((("spec", key), "only for runtime docker"))
    else:
        if body.image is None:
            errors.append((("spec",), "runtime docker needs 'image'"))
        if body.artifact is not None:
            errors.append((("spec", "artifact"), "only for runtime systemd (use image or imageArchive)"))
    if body.volumes and body.placement.max_per_host > 1:
        errors.append((("spec", "placement", "maxPerHost"), "must be 1 for a service with volumes (each instance owns its host's volume)"))
    seen_volumes: set[str] = set()
    for index, volume in enumerate(body.volumes):
        if volume.name in seen_volumes:
            errors.append((("spec", "volumes", index, "name"), f"duplicate volume name {volume.name!r}"))
        seen_volumes.add(volume.name)
    seen_routes: set[tuple[str, str]] = set()
    for index, route in enumerate(body.routes):
        if (route.host, route.path) in seen_routes:
            errors.append((("spec", "routes", index), f"duplicate route {route.host}{route.path}"))
        seen_routes.add((route.host, route.path))
    for name in body.secrets:
        if name in body.env:
            errors.append((("spec", "secrets"), f"{name} is both in env and in secrets"))
    if body.update.canary > body.replicas:
        errors.append((("spec", "update", "canary"), f"canary {body.update.canary} is more than replicas {body.replicas}"))
    errors.extend(_placeholder_errors(service))
    return errors


def _placeholder_errors(service: ServiceSpec) -> list[tuple[Location, str]]:
    body = service.spec
    known = set(BUILTIN_VARIABLES) | set(body.env) | set(body.secrets)
    places: list[tuple[Location, str]] = []
    for index, arg in enumerate(body.command or []):
        places.append((("spec", "command", index), arg))
    for key, value in body.env.items():
        places.append((("spec", "env", key), value))
    if body.health is not None:
        for index, arg in enumerate(body.health.command or []):
            places.append((("spec", "health", "command", index), arg))
    errors: list[tuple[Location, str]] = []
    for location, text in places:
        for variable in PLACEHOLDER.findall(text):
            if variable not in known:
                errors.append((location, f"unknown placeholder ${{{variable}}} (known: {', '.join(sorted(known))})"))
    return errors
