"""The Consul -> Prometheus file_sd bridge (moorage.agents.prometheus_targets): how catalog entries become targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moorage.agents import prometheus_targets as bridge


def entry(
    node: str, service_id: str, port: int, statuses: list[str], *, address: str = "", meta: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "Node": {"Node": node, "Address": f"10.0.0.{node[-1]}"},
        "Service": {"ID": service_id, "Address": address, "Port": port, "Meta": meta},
        "Checks": [{"Status": status} for status in statuses],
    }


def test_every_instance_becomes_a_target_labelled_with_its_worst_check() -> None:
    groups = bridge.targets_for(
        "hello",
        [
            entry("lab-2", "hello-2", 8081, ["passing", "critical"]),
            entry("lab-1", "hello-1", 8080, ["passing", "warning"], address="10.9.9.9"),
        ],
    )
    assert groups == [
        {
            "targets": ["10.9.9.9:8080"],
            "labels": {"job": "hello", "node": "lab-1", "consul_service_id": "hello-1", "consul_health": "warning"},
        },
        {
            "targets": ["10.0.0.2:8081"],
            "labels": {"job": "hello", "node": "lab-2", "consul_service_id": "hello-2", "consul_health": "critical"},
        },
    ]


def test_the_metrics_path_meta_sets_the_scrape_path() -> None:
    [group] = bridge.targets_for("api", [entry("lab-1", "api-1", 9000, ["passing"], meta={"metrics_path": "/internal/metrics"})])
    assert group["labels"]["__metrics_path__"] == "/internal/metrics"


def test_an_instance_without_checks_counts_as_passing() -> None:
    assert bridge.worst_health([]) == "passing"


def test_the_file_is_rewritten_only_when_the_targets_change(tmp_path: Path) -> None:
    output = tmp_path / "consul.json"
    groups = bridge.targets_for("web", [entry("lab-1", "web-1", 80, ["passing"])])
    assert bridge.write_if_changed(output, groups) is True
    assert json.loads(output.read_text()) == groups
    assert bridge.write_if_changed(output, groups) is False
    assert list(tmp_path.iterdir()) == [output], "no temporary file is left behind"
