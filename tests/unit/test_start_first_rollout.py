"""The start-first rollout (moorage.deploy.rollout.roll): which deploy-agent commands go to which host, in which order.

The hosts' side (starting, health-gating, draining, removing an instance) is the deploy agent's,
tested on the lab end to end (tests/e2e/test_notes_api.py); here the agent is a recorder standing
in for SSH, so what is checked is the controller's order of work a user relies on: the new
instance is switched (started, healthy, routed) before the old one is removed; a new instance that
fails leaves the old one serving and is removed; a later batch's failure brings the earlier
batches' old instances back before their new ones go.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from moorage.deploy.agent import HostRun
from moorage.deploy.releases import draft
from moorage.deploy.rollout import DeployContext, roll
from moorage.inventory import Inventory, InventoryHost
from moorage.plan import Plan, plan_service, start_beside
from moorage.ports import PortBook
from moorage.release import Release
from moorage.reporting import QuietReporter, Reporter
from moorage.spec.loader import SpecFile
from moorage.spec.model import ServiceSpec

HOSTS = (InventoryHost("lab-1", "10.66.0.11"), InventoryHost("lab-2", "10.66.0.12"))
LB = (InventoryHost("lab-9", "10.66.0.19"),)


def service(replicas: int = 1, order: str | None = None) -> ServiceSpec:
    update: dict[str, object] = {"minHealthy": "2s", "healthyDeadline": "30s"} | ({"order": order} if order else {})
    return ServiceSpec.model_validate(
        {
            "apiVersion": "moorage/v1",
            "kind": "Service",
            "metadata": {"name": "notes"},
            "spec": {
                "artifact": "./app",
                "command": ["python3", "app.py"],
                "replicas": replicas,
                "port": 8060,
                "health": {"http": "/healthz"},
                "routes": [{"host": "notes.example.test"}],
                "volumes": [{"name": "data", "path": "/var/lib/notes"}],
                "update": update,
            },
        }
    )


class RecordingAgents:
    """The deploy agents of the hosts: every command in order; ``failing``: instance ids whose switch fails."""

    def __init__(self, failing: Sequence[str] = ()) -> None:
        self.failing = set(failing)
        self.commands: list[tuple[str, str, int | None, tuple[str, ...]]] = []  # (verb, host, release, instances)

    def run(self, calls: Mapping[str, Sequence[str]], reporter: Reporter | None = None, stdin: object = None) -> dict[str, HostRun]:
        runs = {}
        for host, args in sorted(calls.items()):
            verb = args[3]
            if verb == "switch":
                release, names = int(args[5]), tuple(args[6 : args.index("--max-parallel")])
            else:
                release, names = None, tuple(arg for arg in args[5:] if arg not in ("--lb", *(lb.name for lb in LB)))
            self.commands.append((verb, host, release, names))
            outcomes = [
                {"instance": name, "ok": not (verb == "switch" and name in self.failing), "changed": True, "release": release}
                for name in names
            ]
            runs[host] = HostRun(host, document={"ok": all(item["ok"] for item in outcomes), "instances": outcomes})
        return runs


def context(agents: RecordingAgents) -> DeployContext:
    inventory = Inventory(Path("hosts.yml"), {"app": HOSTS, "lb": LB}, {})
    made = DeployContext(inventory=inventory, reporter=QuietReporter(), connections=None, management_token="")  # type: ignore[arg-type]
    made.__dict__["agents"] = agents  # the cached property, as the command would build it over SSH
    return made


def releases(replicas: int = 1, order: str | None = None) -> tuple[Release, Release]:
    """Release 1 as it runs, and release 2 planned the way a deploy plans it (start-first: beside)."""
    model = service(replicas, order)
    spec = SpecFile(model, Path("notes.yml"), "", None, None)
    first = plan_service(model, HOSTS)
    book = PortBook(previous={instance.id: (instance.host, instance.port) for instance in first.instances})
    second = start_beside(model, plan_service(model, HOSTS, ports=book), HOSTS, book)
    return replace(draft("1", "s1", spec, first), number=1), replace(draft("2", "s2", spec, second), number=2)


def host_of(plan: Plan, instance: str) -> str:
    return next(item.host for item in plan.all_instances if item.id == instance)


def test_the_new_instance_is_switched_beside_the_old_one_before_the_old_one_is_removed() -> None:
    old, new = releases()
    agents = RecordingAgents()
    report = roll(context(agents), new, old, new.plan.instances, [])
    host = host_of(new.plan, "notes-1b")
    assert host == host_of(old.plan, "notes-1")
    assert agents.commands == [("switch", host, 2, ("notes-1b",)), ("remove", host, None, ("notes-1",))]
    assert (report.failure, report.switched, report.removed) == (None, ["notes-1b"], ["notes-1"])


def test_the_report_names_every_instance_removed_the_old_ones_beside_and_the_ones_planned_away() -> None:
    # A promote: the old instance goes once its replacement beside it is routed, the canary at the end.
    old, new = releases(replicas=2)
    agents = RecordingAgents()
    canary = old.plan.instances[1]
    report = roll(context(agents), new, old, new.plan.instances[:1], [canary])
    assert report.failure is None and report.switched == ["notes-1b"]
    assert report.removed == ["notes-1", canary.id]


def test_a_new_instance_that_fails_its_gate_leaves_the_old_one_serving_and_is_removed() -> None:
    old, new = releases()
    agents = RecordingAgents(failing=["notes-1b"])
    report = roll(context(agents), new, old, new.plan.instances, [])
    host = host_of(new.plan, "notes-1b")
    assert agents.commands == [
        ("switch", host, 2, ("notes-1b",)),
        ("switch", host, 1, ("notes-1",)),  # the old one: it runs release 1 already, so the agent leaves it as it is
        ("remove", host, None, ("notes-1b",)),
    ]
    assert ("remove", host, None, ("notes-1",)) not in agents.commands
    assert report.failure is not None and sorted(report.reverted) == ["notes-1", "notes-1b"] and report.not_reverted == []


def test_a_later_batch_failing_brings_the_earlier_old_instances_back_before_the_new_ones_go() -> None:
    old, new = releases(replicas=2)
    agents = RecordingAgents(failing=["notes-2b"])
    report = roll(context(agents), new, old, new.plan.instances, [])
    first, second = host_of(new.plan, "notes-1b"), host_of(new.plan, "notes-2b")
    assert agents.commands[:3] == [
        ("switch", first, 2, ("notes-1b",)),
        ("remove", first, None, ("notes-1",)),
        ("switch", second, 2, ("notes-2b",)),
    ]
    back = [command for command in agents.commands[3:] if command[0] == "switch"]
    gone = [command for command in agents.commands[3:] if command[0] == "remove"]
    assert {(command[1], command[3]) for command in back} == {(first, ("notes-1",)), (second, ("notes-2",))}
    assert all(command[2] == 1 for command in back)
    assert {name for command in gone for name in command[3]} == {"notes-1b", "notes-2b"}
    assert agents.commands.index(back[-1]) < agents.commands.index(gone[0])  # back first: never a moment without an instance
    assert report.failure is not None and report.not_reverted == []


def test_stop_first_replaces_the_instance_in_place_and_removes_nothing() -> None:
    old, new = releases(order="stop-first")
    agents = RecordingAgents()
    report = roll(context(agents), new, old, new.plan.instances, [])
    assert agents.commands == [("switch", host_of(new.plan, "notes-1"), 2, ("notes-1",))]
    assert (report.failure, report.switched, report.removed) == (None, ["notes-1"], [])
