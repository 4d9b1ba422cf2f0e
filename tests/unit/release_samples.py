"""Releases for tests: a current record of examples/hello placed on three hosts, and a record as moorage 0.1 wrote it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from moorage.deploy.releases import draft
from moorage.inventory import InventoryHost
from moorage.plan import plan_service
from moorage.release import Release
from moorage.spec.loader import load_spec

REPO = Path(__file__).resolve().parents[2]
HELLO_SPEC = REPO / "examples" / "hello" / "moorage.yml"
HOSTS = tuple(InventoryHost(f"app{number}", f"10.66.0.{10 + number}") for number in (1, 2, 3))


def sample_release(version: str = "1", replicas: int | None = None, canaries: int = 0, number: int = 0) -> Release:
    """examples/hello (3 replicas, maxPerHost 2) on app1..app3, not recorded yet unless ``number``."""
    spec = load_spec(HELLO_SPEC)
    if replicas is not None:
        spec = replace(spec, model=spec.model.model_copy(update={"spec": spec.model.spec.model_copy(update={"replicas": replicas})}))
    release = draft(version, "h" + version, spec, plan_service(spec.model, HOSTS, canaries))
    return replace(release, number=number) if number else release


def _instance(index: int, host: str, port: int) -> dict[str, Any]:
    return {"id": f"hello-{index}", "index": index, "host": host, "address": f"10.66.0.1{host[-1]}", "port": port}


# What moorage 0.1 stored for release 3 of hello: a rollback to release 2's files after a scale to 2.
LEGACY_RECORD: dict[str, Any] = {
    "number": 3,
    "version": "1",
    "spec_hash": "0123456789ab",
    "created": "2025-01-01T00:00:00+00:00",
    "by": "root@controller",
    "status": "deployed",
    "note": "rollback to 2",
    "variables": {
        "moorage_service": {
            "name": "hello",
            "labels": {},
            "runtime": "systemd",
            "artifact": "/srv/hello/app",
            "command": ["python3", "app.py", "--port", "${PORT}"],
            "image": None,
            "image_archive": None,
            "replicas": 2,
            "group": "app",
            "port": 8080,
            "env": {"GREETING": "hi"},
            "secrets": [],
            "health": {
                "kind": "http",
                "http": "/healthz",
                "tcp": False,
                "command": None,
                "interval": "2s",
                "interval_seconds": 2,
                "timeout": "1s",
                "timeout_seconds": 1,
                "deregister_after": "5m",
                "deregister_after_seconds": 300,
            },
            "routes": [{"host": "hello.example.test", "path": "/"}],
            "metrics": {"path": "/metrics"},
            "resources": {"memory": "256Mi", "memory_max": 268435456, "cpu": "500m", "cpu_quota": "50%", "cpus": 0.5},
            "volumes": [],
            "update": {
                "max_parallel": 1,
                "min_healthy": "3s",
                "min_healthy_seconds": 3,
                "healthy_deadline": "1m",
                "healthy_deadline_seconds": 60,
                "auto_revert": True,
                "canary": 0,
            },
            "stop": {"signal": "SIGTERM", "grace_period": "30s", "grace_period_seconds": 30},
        },
        "moorage_instances": [_instance(1, "app2", 8080), _instance(2, "app1", 8080)],
        "spec_text": HELLO_SPEC.read_text(),
        "spec_file": "/srv/hello/moorage.yml",
        "canary_instances": [],
        "files_release": 2,
    },
}
