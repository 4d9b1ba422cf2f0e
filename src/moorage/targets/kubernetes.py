"""The kubernetes target: one spec becomes the manifests a cluster needs.

See docs/concepts.md for the field-by-field map. Secrets are referenced by name only (a
Secret called ``NAME-secrets`` that the cluster's operators create); values never appear.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import timedelta
from typing import Any

from moorage.errors import BadInput
from moorage.ports import container_port
from moorage.spec.model import PLACEHOLDER, Health, ServiceSpec
from moorage.spec.units import whole_seconds

Manifest = dict[str, Any]

PORT_NAME = "http"
MANAGED_BY = "moorage"
# The spec names volumes but gives no size; each instance's claim asks for this much.
DEFAULT_VOLUME_SIZE = "1Gi"
# A StatefulSet's pods carry `controller-revision-hash: NAME-<10 chars>`, a label value of
# at most 63 characters; and its headless Service `NAME-headless` is an RFC 1035 label too.
MAX_STATEFUL_NAME = 52
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
SHELL_SPECIAL_IN_DOUBLE_QUOTES = re.compile(r'([\\"`$])')


def render(service: ServiceSpec, version: str | None = None) -> list[Manifest]:
    """The manifests for ``service``, in the order ``kubectl apply`` wants them.

    ``version`` is the release being deployed: the image tag for runtime systemd (whose
    image is ``NAME:VERSION`` by convention) and ``MOORAGE_VERSION``; without it, a docker
    image's own tag is used, and runtime systemd uses ``latest``.
    """
    _check_names(service)
    body = service.spec
    release = version or _image_version(body.image) or "latest"
    stateful = bool(body.volumes)
    labels = _labels(service, release)
    manifests: list[Manifest] = []
    plain_env = {key: value for key, value in body.env.items() if not PLACEHOLDER.search(value)}
    if plain_env:
        manifests.append(_object("v1", "ConfigMap", _env_config_map_name(service), labels) | {"data": plain_env})
    manifests.append(_service(service, labels))
    if stateful:
        manifests.append(_headless_service(service, labels))
    workload = _stateful_set(service, labels, release) if stateful else _deployment(service, labels, release)
    manifests.append(workload)
    manifests.append(_disruption_budget(service, labels))
    manifests.extend(_ingresses(service, labels))
    return manifests


def secret_name(service: ServiceSpec) -> str:
    """The Secret whose keys are the spec's secret names (created by the cluster's operators)."""
    return f"{service.name}-secrets"


def headless_service_name(service: ServiceSpec) -> str:
    return f"{service.name}-headless"


def _env_config_map_name(service: ServiceSpec) -> str:
    return f"{service.name}-env"


def _check_names(service: ServiceSpec) -> None:
    if not service.name[0].isalpha():
        raise BadInput(
            f"metadata.name: {service.name!r} must start with a letter for the kubernetes target "
            "(a Kubernetes Service name is an RFC 1035 label)"
        )
    if service.spec.volumes and len(service.name) > MAX_STATEFUL_NAME:
        raise BadInput(
            f"metadata.name: at most {MAX_STATEFUL_NAME} characters for the kubernetes target when the "
            f"service has volumes (its StatefulSet's revision label must fit 63), got {len(service.name)}"
        )


def _image_version(image: str | None) -> str | None:
    """The tag (or digest) of an image reference: ``registry:5000/app:1.2`` -> ``1.2``."""
    if image is None:
        return None
    if "@" in image:
        return image.split("@", 1)[1]
    last_part = image.rsplit("/", 1)[-1]
    return last_part.split(":", 1)[1] if ":" in last_part else None


def _image(service: ServiceSpec, release: str) -> str:
    # Runtime systemd ships a directory to VMs; on Kubernetes the same program runs from an
    # image built from that directory, tagged NAME:VERSION (docs/concepts.md).
    return service.spec.image or f"{service.name}:{release}"


def _selector(service: ServiceSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": service.name, "app.kubernetes.io/instance": service.name}


def _labels(service: ServiceSpec, release: str) -> dict[str, str]:
    labels = {**service.metadata.labels, **_selector(service), "app.kubernetes.io/managed-by": MANAGED_BY}
    if LABEL_VALUE.match(release):
        labels["app.kubernetes.io/version"] = release
    return labels


def _object(api_version: str, kind: str, name: str, labels: dict[str, str]) -> Manifest:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "labels": dict(labels)}}


def _service(service: ServiceSpec, labels: dict[str, str]) -> Manifest:
    return _object("v1", "Service", service.name, labels) | {
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(service),
            "ports": [{"name": PORT_NAME, "port": container_port(service.spec.port), "targetPort": PORT_NAME, "protocol": "TCP"}],
        }
    }


def _headless_service(service: ServiceSpec, labels: dict[str, str]) -> Manifest:
    """Stable DNS names (NAME-0.NAME-headless) for a StatefulSet's pods."""
    spec: dict[str, Any] = {"clusterIP": "None", "selector": _selector(service)}
    spec["ports"] = [{"name": PORT_NAME, "port": container_port(service.spec.port), "targetPort": PORT_NAME, "protocol": "TCP"}]
    return _object("v1", "Service", headless_service_name(service), labels) | {"spec": spec}


def _deployment(service: ServiceSpec, labels: dict[str, str], release: str) -> Manifest:
    update = service.spec.update
    min_ready = _seconds(update.min_healthy)
    return _object("apps/v1", "Deployment", service.name, labels) | {
        "spec": {
            "replicas": service.spec.replicas,
            "selector": {"matchLabels": _selector(service)},
            "minReadySeconds": min_ready,
            "progressDeadlineSeconds": max(_seconds(update.healthy_deadline), min_ready + 1),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": _rolling_update(service)},
            "template": _pod_template(service, labels, release, release_label="pod-template-hash"),
        }
    }


def _rolling_update(service: ServiceSpec) -> dict[str, int]:
    """A Deployment's pace: start-first surges ``maxParallel`` new pods and takes none away until they
    are ready; stop-first takes ``maxParallel`` away and surges only the ``canary`` ones."""
    update = service.spec.update
    if service.spec.starts_first:
        return {"maxUnavailable": 0, "maxSurge": max(update.max_parallel, update.canary)}
    return {"maxUnavailable": update.max_parallel, "maxSurge": update.canary}


def _stateful_set(service: ServiceSpec, labels: dict[str, str], release: str) -> Manifest:
    body = service.spec
    rolling_update: dict[str, int] = {"maxUnavailable": body.update.max_parallel}
    if body.update.canary:
        # Only pods with an ordinal >= partition take the new template: the last `canary` ones.
        rolling_update["partition"] = body.replicas - body.update.canary
    return _object("apps/v1", "StatefulSet", service.name, labels) | {
        "spec": {
            "serviceName": headless_service_name(service),
            "replicas": body.replicas,
            "selector": {"matchLabels": _selector(service)},
            "minReadySeconds": _seconds(body.update.min_healthy),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": rolling_update},
            "template": _pod_template(service, labels, release, release_label="controller-revision-hash"),
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": volume.name, "labels": dict(labels)},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": DEFAULT_VOLUME_SIZE}},
                    },
                }
                for volume in body.volumes
            ],
        }
    }


def _pod_template(service: ServiceSpec, labels: dict[str, str], release: str, release_label: str) -> Manifest:
    body = service.spec
    annotations: dict[str, str] = {}
    if body.metrics is not None:
        annotations |= {
            "prometheus.io/scrape": "true",
            "prometheus.io/path": body.metrics.path,
            "prometheus.io/port": str(container_port(service.spec.port)),
        }
    if body.env:
        # A changed env changes the template, so pods roll like instances do on VMs.
        annotations["checksum/env"] = hashlib.sha256(json.dumps(body.env, sort_keys=True).encode()).hexdigest()
    metadata: dict[str, Any] = {"labels": dict(labels)}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "metadata": metadata,
        "spec": {
            "terminationGracePeriodSeconds": _seconds(body.stop.grace_period),
            "containers": [_container(service, release, release_label)],
        },
    }


def _container(service: ServiceSpec, release: str, release_label: str) -> Manifest:
    body = service.spec
    container: Manifest = {"name": service.name, "image": _image(service, release)}
    if body.command is not None:
        # runtime systemd: the command is the program; docker: it replaces the image's CMD.
        key = "command" if body.runtime == "systemd" else "args"
        container[key] = [_kubernetes_placeholders(arg) for arg in body.command]
    container["ports"] = [{"name": PORT_NAME, "containerPort": container_port(service.spec.port), "protocol": "TCP"}]
    container["env"] = _env(service, release, release_label)
    if any(not PLACEHOLDER.search(value) for value in body.env.values()):
        container["envFrom"] = [{"configMapRef": {"name": _env_config_map_name(service)}}]
    resources = {key: value for key, value in (("memory", body.resources.memory), ("cpu", body.resources.cpu)) if value}
    if resources:
        container["resources"] = {"limits": resources, "requests": dict(resources)}
    if body.health is not None:
        container |= _probes(body.health, body.update.healthy_deadline)
    if body.volumes:
        container["volumeMounts"] = [{"name": volume.name, "mountPath": volume.path} for volume in body.volumes]
    return container


def _env(service: ServiceSpec, release: str, release_label: str) -> list[Manifest]:
    """Built-in variables, then secrets, then env values that use ${...} (in spec order)."""
    body = service.spec
    env: list[Manifest] = []
    env.append({"name": "PORT", "value": str(container_port(service.spec.port))})
    env += [
        {"name": "MOORAGE_SERVICE", "value": service.name},
        {"name": "MOORAGE_VERSION", "value": release},
        {"name": "MOORAGE_INSTANCE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MOORAGE_RELEASE", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{release_label}']"}}},
    ]
    env += [{"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name(service), "key": name}}} for name in body.secrets]
    env += [{"name": key, "value": _kubernetes_placeholders(value)} for key, value in body.env.items() if PLACEHOLDER.search(value)]
    return env


def _kubernetes_placeholders(text: str) -> str:
    """``${VAR}`` -> ``$(VAR)``; a literal ``$(`` is escaped as ``$$(`` so Kubernetes keeps it."""
    parts = PLACEHOLDER.split(text)  # literal, name, literal, name, ..., literal
    return "".join(f"$({part})" if position % 2 else part.replace("$(", "$$(") for position, part in enumerate(parts))


def _probes(health: Health, healthy_deadline: timedelta) -> dict[str, Manifest]:
    period = whole_seconds(health.interval)
    timing = {"periodSeconds": period, "timeoutSeconds": whole_seconds(health.timeout)}
    # Until first healthy, a pod gets as long as update.healthyDeadline; then liveness takes over.
    startup_failures = max(1, math.ceil(healthy_deadline.total_seconds() / period))
    return {
        "startupProbe": _probe_handler(health) | timing | {"failureThreshold": startup_failures},
        "readinessProbe": _probe_handler(health) | timing,
        "livenessProbe": _probe_handler(health) | timing,
    }


def _probe_handler(health: Health) -> Manifest:
    if health.kind == "http":
        return {"httpGet": {"path": health.http, "port": PORT_NAME}}
    if health.kind == "tcp":
        return {"tcpSocket": {"port": PORT_NAME}}
    return {"exec": {"command": _exec_command(health.command or [])}}


def _exec_command(command: list[str]) -> list[str]:
    """Probes' exec does no variable expansion: with ${VAR} in it, a shell expands them."""
    if not any(PLACEHOLDER.search(arg) for arg in command):
        return list(command)
    return ["sh", "-c", "exec " + " ".join(_shell_word(arg) for arg in command)]


def _shell_word(arg: str) -> str:
    """``arg`` double-quoted for sh, its ${VAR} placeholders left for the shell to expand."""
    parts = PLACEHOLDER.split(arg)
    return (
        '"'
        + "".join(
            f"${{{part}}}" if position % 2 else SHELL_SPECIAL_IN_DOUBLE_QUOTES.sub(r"\\\1", part) for position, part in enumerate(parts)
        )
        + '"'
    )


def _disruption_budget(service: ServiceSpec, labels: dict[str, str]) -> Manifest:
    return _object("policy/v1", "PodDisruptionBudget", service.name, labels) | {
        "spec": {"maxUnavailable": service.spec.update.max_parallel, "selector": {"matchLabels": _selector(service)}}
    }


def _ingresses(service: ServiceSpec, labels: dict[str, str]) -> list[Manifest]:
    paths_by_host: dict[str, list[str]] = {}
    for route in service.spec.routes:
        paths_by_host.setdefault(route.host, []).append(route.path)
    return [
        _object("networking.k8s.io/v1", "Ingress", _ingress_name(service, host), labels)
        | {
            "spec": {
                "rules": [
                    {
                        "host": host,
                        "http": {"paths": [{"path": path, "pathType": "Prefix", "backend": _backend(service)} for path in paths]},
                    }
                ]
            }
        }
        for host, paths in paths_by_host.items()
    ]


def _backend(service: ServiceSpec) -> Manifest:
    return {"service": {"name": service.name, "port": {"name": PORT_NAME}}}


def _ingress_name(service: ServiceSpec, host: str) -> str:
    name = f"{service.name}-{host.replace('*', 'wildcard')}"
    if len(name) > 253:  # an object name is a DNS subdomain
        name = f"{service.name}-{hashlib.sha256(host.encode()).hexdigest()[:16]}"
    return name


def _seconds(value: timedelta) -> int:
    """Whole seconds, rounded up (0 stays 0)."""
    return math.ceil(value.total_seconds())
