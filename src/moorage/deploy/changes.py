"""What a new plan changes against the release that runs now: per instance add, replace, keep or remove.

``moorage plan`` shows it; ``moorage deploy`` uses it to tell "no change" from a rollout, and to
know which instances to remove. An instance replaced start-first runs under its other identity
(``NAME-k`` <-> ``NAME-kb``, :func:`moorage.plan.other_side`) on the same host: that is a replace,
and the old identity goes in the same batch (:func:`replaced_beside`), not as a removal at the end.
Pure: releases and plans in, values out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from moorage.plan import Instance, Plan, other_side
from moorage.release import Release

Action = Literal["add", "replace", "keep", "remove"]


@dataclass(frozen=True)
class InstanceChange:
    host: str
    instance: str
    port: int | None
    action: Action

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "instance": self.instance, "port": self.port, "action": self.action}


@dataclass(frozen=True)
class Changes:
    """A candidate release (version, spec hash, plan) against the current one."""

    current: Release | None
    same_release: bool  # same version and spec hash as the current release
    instances: tuple[InstanceChange, ...]  # sorted by host, then instance

    @property
    def pending(self) -> bool:
        """Whether a deploy would make a release (anything but "keep", or another version or spec)."""
        return not self.same_release or any(change.action != "keep" for change in self.instances)

    @property
    def changing(self) -> tuple[InstanceChange, ...]:
        return tuple(change for change in self.instances if change.action != "keep")


def changes(current: Release | None, plan: Plan, version: str, spec_hash: str) -> Changes:
    """Per planned instance: add, replace (new release) or keep; per instance no longer planned: remove."""
    before = {instance.id: instance for instance in current.plan.instances} if current else {}
    same_release = current is not None and current.version == version and current.spec_hash == spec_hash
    rows = []
    for instance in plan.instances:
        old = before.pop(instance.id, None)
        beside = before.get(other_side(instance.id))
        if old is None and beside is not None and beside.host == instance.host:
            old = before.pop(beside.id)
        action: Action = "add" if old is None else ("keep" if same_release and old == instance else "replace")
        rows.append(InstanceChange(instance.host, instance.id, instance.port, action))
    rows += [InstanceChange(old.host, old.id, old.port, "remove") for old in before.values()]
    return Changes(current, same_release, tuple(sorted(rows, key=lambda row: (row.host, row.instance))))


def removed_instances(current: Release | None, plan: Plan) -> list[Instance]:
    """The current release's planned instances that ``plan`` no longer has (scaled down)."""
    if current is None:
        return []
    keep = {instance.id for instance in plan.instances}
    beside = set(replaced_beside(current, plan.instances).values())
    return [instance for instance in current.plan.instances if instance.id not in keep and instance not in beside]


def replaced_beside(current: Release | None, targets: Sequence[Instance]) -> dict[str, Instance]:
    """New instance id -> the instance of ``current`` it replaces start-first: the other identity
    of the same instance, on the same host (its batch starts the new one, then removes the old)."""
    if current is None:
        return {}
    running = {instance.id: instance for instance in current.plan.all_instances}
    pairs = {}
    for target in targets:
        old = running.get(other_side(target.id))
        if target.id not in running and old is not None and old.host == target.host:
            pairs[target.id] = old
    return pairs


def rollback_removals(current: Release | None, target_plan: Plan, canary: Release | None) -> list[Instance]:
    """What a rollback to ``target_plan`` removes: instances it no longer has, and the canaries of a
    canary release still out (those the target does not plan itself)."""
    planned = {instance.id for instance in target_plan.instances}
    canaries = [instance for instance in canary.plan.canaries if instance.id not in planned] if canary is not None else []
    scaled_away = removed_instances(current, target_plan)
    return [*scaled_away, *(instance for instance in canaries if instance.id not in {gone.id for gone in scaled_away})]
