"""One rule for types: the loader and the JSON Schema (`moorage schema`) accept the same scalars.

Both come from the same models. The types are a Kubernetes API's: a count is a whole number
(``3`` or ``3.0``, never ``"3"`` or ``true``), a flag is true or false, a duration or a name is
text; quantities and env values take numbers too, as Kubernetes' quantities and YAML users expect.
Each case is one field of a valid spec set to one YAML value, checked by the loader and by the
schema (on the same YAML as an editor reads it), against what a user of a Kubernetes-like API expects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from moorage.cli import cli
from moorage.spec.loader import SpecInvalid, load_spec

WriteSpec = Callable[..., Path]
BASE = """\
apiVersion: moorage/v1
kind: Service
metadata:
  name: hello
  labels: {tier: web}
spec:
  runtime: systemd
  artifact: ./app
  command: [python3, app.py]
  replicas: 3
  placement: {group: app, maxPerHost: 1}
  port: 8080
  env: {GREETING: hi}
  secrets: [TOKEN]
  health: {tcp: true, interval: 2s, timeout: 1s, deregisterAfter: 5m}
  routes:
    - {host: hello.example.test, path: /}
  resources: {memory: 256Mi, cpu: 500m}
  volumes:
    - {name: data, path: /var/lib/hello}
  update: {maxParallel: 1, minHealthy: 5s, healthyDeadline: 60s, autoRevert: true, canary: 0}
  stop: {signal: SIGTERM, gracePeriod: 30s}
"""
OK, REFUSED = True, False
# (the text in BASE to replace, its replacement, what both must say)
CASES = [
    ("replicas: 3", "replicas: 2", OK),
    ("replicas: 3", "replicas: 2.0", OK),
    ("replicas: 3", "replicas: 1e1", OK),
    ("replicas: 3", 'replicas: "3"', REFUSED),
    ("replicas: 3", "replicas: true", REFUSED),
    ("replicas: 3", "replicas: 2.5", REFUSED),
    ("replicas: 3", "replicas: null", REFUSED),
    ("replicas: 3", "replicas: [3]", REFUSED),
    ("replicas: 3", "replicas: -1", REFUSED),
    ("replicas: 3", "replicas: 2147483648", REFUSED),
    ("port: 8080", "port: 8080.0", OK),
    ("port: 8080", 'port: "8080"', REFUSED),
    ("port: 8080", "port: 0", REFUSED),
    ("port: 8080", "port: 65536", REFUSED),
    ("port: 8080", "port: false", REFUSED),
    ("maxPerHost: 1", 'maxPerHost: "1"', REFUSED),
    ("maxPerHost: 1", "maxPerHost: true", REFUSED),
    ("maxPerHost: 1", "maxPerHost: 0", REFUSED),
    ("maxParallel: 1", "maxParallel: 2", OK),
    ("maxParallel: 1", "maxParallel: yes", REFUSED),
    ("canary: 0", "canary: 1.0", OK),
    ("canary: 0", "canary: false", REFUSED),
    ("canary: 0", 'canary: "0"', REFUSED),
    ("tcp: true", "tcp: false, command: [check]", OK),
    ("tcp: true", 'tcp: "true"', REFUSED),
    ("tcp: true", "tcp: 1", REFUSED),
    ("tcp: true", "tcp: yes", REFUSED),
    ("tcp: true", "tcp: null", REFUSED),
    ("autoRevert: true", "autoRevert: false", OK),
    ("autoRevert: true", "autoRevert: 0", REFUSED),
    ("autoRevert: true", "autoRevert: on", REFUSED),
    ("interval: 2s", "interval: 1m30s", OK),
    ("interval: 2s", "interval: 2", REFUSED),
    ("interval: 2s", 'interval: "2"', REFUSED),
    ("interval: 2s", 'interval: " 2s"', REFUSED),
    ("interval: 2s", "interval: ٢s", REFUSED),
    ("interval: 2s", "interval: true", REFUSED),
    ("gracePeriod: 30s", "gracePeriod: 30", REFUSED),
    ("memory: 256Mi", "memory: 268435456", OK),
    ("memory: 256Mi", "memory: 1.5e9", OK),
    ("memory: 256Mi", 'memory: "1Gi"', OK),
    ("memory: 256Mi", "memory: lots", REFUSED),
    ("memory: 256Mi", "memory: 1e20", REFUSED),
    ("memory: 256Mi", "memory: 1024", REFUSED),
    ("memory: 256Mi", "memory: true", REFUSED),
    ("memory: 256Mi", "memory: [256Mi]", REFUSED),
    ("cpu: 500m", "cpu: 2", OK),
    ("cpu: 500m", "cpu: 0.5", OK),
    ("cpu: 500m", 'cpu: "0.25"', OK),
    ("cpu: 500m", "cpu: 0.001", REFUSED),
    ("cpu: 500m", "cpu: 2000", REFUSED),
    ("cpu: 500m", "cpu: true", REFUSED),
    ("cpu: 500m", "cpu: 2 cores", REFUSED),
    ("GREETING: hi", "GREETING: 1", OK),
    ("GREETING: hi", "GREETING: true", OK),
    ("GREETING: hi", "GREETING: 0.5", OK),
    ("GREETING: hi", "GREETING: null", REFUSED),
    ("GREETING: hi", "GREETING: [hi]", REFUSED),
    ("GREETING: hi", "GREETING: {a: b}", REFUSED),
    ("GREETING: hi", "1GREETING: hi", REFUSED),
    ("tier: web", "tier: 1", REFUSED),
    ("tier: web", "tier: true", REFUSED),
    ("name: hello", "name: 123", REFUSED),
    ("name: hello", "name: true", REFUSED),
    ("command: [python3, app.py]", "command: python3 app.py", REFUSED),
    ("command: [python3, app.py]", "command: [python3, 1]", REFUSED),
    ("command: [python3, app.py]", "command: []", REFUSED),
    ("secrets: [TOKEN]", "secrets: TOKEN", REFUSED),
    ("secrets: [TOKEN]", "secrets: [1]", REFUSED),
    ("host: hello.example.test", "host: 1", REFUSED),
    ("path: /}", "path: 1}", REFUSED),
    ("name: data", "name: true", REFUSED),
    ("signal: SIGTERM", "signal: 15", REFUSED),
    ("runtime: systemd", "runtime: 1", REFUSED),
    ("kind: Service", "kind: 1", REFUSED),
]


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.Draft202012Validator:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    return jsonschema.Draft202012Validator(json.loads(result.stdout))


def loader_accepts(path: Path) -> bool:
    try:
        load_spec(path)
    except SpecInvalid:
        return False
    return True


def schema_accepts(validator: jsonschema.Draft202012Validator, text: str) -> bool:
    data: Any = YAML(typ="safe").load(text)  # the values an editor's YAML parser hands the schema
    return validator.is_valid(data)


def test_the_base_spec_is_accepted_by_both(write_spec: WriteSpec, schema_validator: jsonschema.Draft202012Validator) -> None:
    assert loader_accepts(write_spec(BASE)) and schema_accepts(schema_validator, BASE)


@pytest.mark.parametrize(("old", "new", "expected"), CASES, ids=[new for _, new, _ in CASES])
def test_loader_and_schema_agree_on_each_typed_value(
    write_spec: WriteSpec, schema_validator: jsonschema.Draft202012Validator, old: str, new: str, expected: bool
) -> None:
    assert BASE.count(old) == 1
    text = BASE.replace(old, new)

    verdicts = {"loader": loader_accepts(write_spec(text)), "schema": schema_accepts(schema_validator, text)}

    assert verdicts == {"loader": expected, "schema": expected}
