"""The deploy agent: switch a host's instances of a service to a prepared release, or remove them.

One place for what happens on a host when an instance changes (the ``moorage.platform.instance``
module and ``moorage deploy``'s fast path over SSH both run this). Per instance:

1. maintenance on, then wait until every lb host has acknowledged that it no longer routes to it
   (``routing.py``): new requests go elsewhere, requests in flight finish;
2. graceful stop (the runtime's stop signal, grace period, then kill);
3. start the release as prepared (``definition.py``: env file, files, unit or container);
4. the health gate: the spec's check probed directly until healthy for ``minHealthy`` within
   ``healthyDeadline`` (``health_gate.py``);
5. register in Consul with the release's meta, the check starting out passing (just verified);
6. maintenance off, then wait until every lb host has acknowledged that it routes to it.

A failure says why, with the app's last log lines. With ``autoRevert`` the instance goes back to
the release it ran before, the same way (a new instance is removed): the host does this itself,
so an instance is never left drained when the controller that asked is gone. An instance that
runs the release already (as defined, healthy) is left alone. One instance is switched by one
agent at a time (a lock file per instance).

``python3 -I AGENT instance switch|remove|status ...`` prints progress as JSON lines on stdout,
then one ``{"event": "result", ...}`` line; exit 0 when every instance succeeded, 1 when one
failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .acks import Want, describe_lacking, wait_for_acks
from .consul import DEFAULT_ADDRESS, ConsulClient, ConsulError, read_token
from .definition import InstanceDefinition, definition_from_json
from .files import locked, remove_path, write_atomic
from .health_gate import probe_once, wait_until_healthy
from .layout import CONFIG_ROOT, ROOT, UNITS_DIR, UNPACKED_MARKER, ServiceLayout
from .registration import deregister, in_maintenance, is_current, register, registered, set_maintenance
from .runtime import LOG_LINES, Runtime, RuntimeFailure, runtime_for

Emit = Callable[[dict[str, Any]], None]


@dataclass
class Outcome:
    """What became of one instance."""

    instance: str
    ok: bool
    changed: bool
    release: int | None  # the release it runs now (None: removed or not running)
    message: str = ""
    reverted: bool = False
    log_lines: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class InstanceState:
    """``ID.state``: the release an instance runs, and the last one it ran healthy before that."""

    release: int
    digest: str
    healthy: bool
    previous: int | None
    runtime: str = "systemd"

    @property
    def good_release(self) -> int | None:
        """The release to go back to: this one once healthy, else the one before."""
        return self.release if self.healthy else self.previous


class SwitchFailed(Exception):
    """A step of a switch failed; the message says which and why."""


class NotAcknowledged(Exception):
    """Some lb hosts did not acknowledge in time (the message names them)."""


def wait_for_lbs(client: ConsulClient, service: str, backend: str, lbs: Sequence[str], *, routed: bool, timeout: float) -> float:
    """Until every lb of ``lbs`` routes (``routed``) or no longer routes ``backend``; the seconds it took.

    NotAcknowledged naming the lbs when ``timeout`` runs out first.
    """
    started = time.monotonic()
    want = Want.ROUTED if routed else Want.DRAINED
    lacking = wait_for_acks(client, lbs, service, backend, want, timeout)
    if lacking:
        raise NotAcknowledged(describe_lacking(lacking, service, backend, want, timeout))
    return time.monotonic() - started


def _state(definition: InstanceDefinition, *, healthy: bool, previous: int | None) -> InstanceState:
    return InstanceState(definition.release, definition.digest, healthy, previous, definition.runtime)


def read_state(layout: ServiceLayout, instance: str) -> InstanceState | None:
    try:
        document = json.loads(layout.state_file(instance).read_text())
        previous = document.get("previous")
        return InstanceState(
            int(document["release"]), str(document["digest"]), bool(document["healthy"]), None if previous is None else int(previous)
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(layout: ServiceLayout, instance: str, state: InstanceState) -> None:
    write_atomic(layout.state_file(instance), json.dumps(asdict(state), sort_keys=True) + "\n", 0o600)


def load_definition(layout: ServiceLayout, release: int, instance: str) -> InstanceDefinition:
    path = layout.definition_file(release, instance)
    try:
        return definition_from_json(path.read_text())
    except FileNotFoundError:
        raise SwitchFailed(f"release {release} of {instance} is not prepared on this host ({path} is missing)") from None
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise SwitchFailed(f"{path}: unreadable definition ({err})") from None


class Agent:
    """Switches and removes one service's instances on this host."""

    def __init__(self, layout: ServiceLayout, client: ConsulClient, emit: Emit, host: str = "") -> None:
        self.layout = layout
        self.client = client
        self.emit = emit
        self.host = host or os.uname().nodename

    # --- switch ---------------------------------------------------------------------------

    def switch(self, instance: str, release: int, *, revert: bool | None = None) -> Outcome:
        """``instance`` to ``release`` (prepared on this host); ``revert``: None follows the definition's autoRevert."""
        with locked(self.layout.lock_file(instance)):
            return self._switch(instance, release, revert=revert)

    def _switch(self, instance: str, release: int, *, revert: bool | None) -> Outcome:
        started = time.monotonic()
        try:
            definition = load_definition(self.layout, release, instance)
        except SwitchFailed as err:
            return Outcome(instance, ok=False, changed=False, release=None, message=f"{instance} on {self.host}: {err}")
        runtime = runtime_for(definition.runtime, self.layout)
        state = read_state(self.layout, instance)
        try:
            if self._runs_already(definition, state, runtime):
                changed = self._keep_registered(definition)
                self._progress(instance, "unchanged" if not changed else "registered", started, f"release {release}")
                return Outcome(instance, ok=True, changed=changed, release=release)
        except (ConsulError, NotAcknowledged) as err:
            return Outcome(instance, ok=False, changed=False, release=release, message=f"{instance} on {self.host}: {err}")
        previous = None if state is None else state.good_release
        try:
            self._replace(definition, state, runtime, started)
        except (SwitchFailed, RuntimeFailure, ConsulError, NotAcknowledged) as err:
            lines = runtime.last_lines(instance, LOG_LINES)
            message = f"{instance} on {self.host} failed release {release}: {err} | last log lines: {' / '.join(lines)}"
            self._progress(instance, "failed", started, str(err))
            outcome = Outcome(instance, ok=False, changed=True, release=release, message=message, log_lines=lines)
            if definition.auto_revert if revert is None else revert:
                self._revert(outcome, previous, definition)
            return outcome
        self._progress(instance, "done", started, f"release {release}")
        return Outcome(instance, ok=True, changed=True, release=release)

    def _runs_already(self, definition: InstanceDefinition, state: InstanceState | None, runtime: Runtime) -> bool:
        return (
            state is not None
            and state.healthy
            and state.release == definition.release
            and state.digest == definition.digest
            and runtime.is_running(definition.instance)
        )

    def _keep_registered(self, definition: InstanceDefinition) -> bool:
        """An instance that runs its release: registered as defined and out of maintenance. Whether that took a change."""
        changed = False
        if not is_current(registered(self.client, definition.instance), definition.registration):
            passing = definition.probe is None or probe_once(definition.probe).passed
            register(self.client, definition.registration, passing=passing)
            changed = True
        if in_maintenance(self.client, definition.instance):
            set_maintenance(self.client, definition.instance, False)
            changed = True
        if changed and definition.routed:
            wait_for_lbs(self.client, definition.service, definition.backend, definition.lbs, routed=True, timeout=definition.drain_timeout)
        return changed

    def _replace(self, definition: InstanceDefinition, state: InstanceState | None, runtime: Runtime, started: float) -> None:
        instance = definition.instance
        old = registered(self.client, instance)
        if old is not None:
            set_maintenance(self.client, instance, True, f"moorage release {definition.release}")
            old_backend = f"{old.get('Address') or definition.address}:{old.get('Port')}"
            old_routed = any(str(tag).startswith("route=") for tag in old.get("Tags") or [])
            if old_routed and definition.lbs and runtime.is_running(instance):
                seconds = wait_for_lbs(
                    self.client, definition.service, old_backend, definition.lbs, routed=False, timeout=definition.drain_timeout
                )
                self._progress(instance, "drained", started, f"{old_backend} on {', '.join(definition.lbs)} ({seconds:.1f}s)")
        runtime.stop(instance, definition.stop_grace)
        self._progress(instance, "stopped", started)
        previous = None if state is None else state.good_release
        write_state(
            self.layout,
            instance,
            InstanceState(definition.release, definition.digest, healthy=False, previous=previous, runtime=definition.runtime),
        )
        runtime.install(definition)
        runtime.start(definition)
        self._progress(instance, "started", started, f"release {definition.release}")
        if definition.probe is not None:
            gate = wait_until_healthy(definition.probe, definition.min_healthy, definition.healthy_deadline, name=instance)
            if not gate.passed:
                raise SwitchFailed(gate.message)
            self._progress(instance, "healthy", started, f"{definition.min_healthy:g}s")
        register(self.client, definition.registration, passing=True)
        set_maintenance(self.client, instance, False)
        write_state(
            self.layout,
            instance,
            InstanceState(definition.release, definition.digest, healthy=True, previous=previous, runtime=definition.runtime),
        )
        if definition.routed:
            seconds = wait_for_lbs(
                self.client, definition.service, definition.backend, definition.lbs, routed=True, timeout=definition.drain_timeout
            )
            self._progress(instance, "routed", started, f"{definition.backend} on {', '.join(definition.lbs)} ({seconds:.1f}s)")

    def _revert(self, outcome: Outcome, previous: int | None, failed: InstanceDefinition) -> None:
        """Back to ``previous``; a new instance (nothing to go back to) is removed."""
        instance = outcome.instance
        if previous == failed.release:
            return  # it failed the very release it ran: nothing older to go back to, leave it as it is
        if previous is None:
            self.emit({"event": "progress", "instance": instance, "step": "removing", "detail": "a new instance: nothing to go back to"})
            removal = self._remove(instance, failed.lbs, failed.drain_timeout)
            outcome.reverted, outcome.release = removal.ok, None
            if not removal.ok:
                outcome.message += f"; and removing it failed too: {removal.message}"
            return
        self.emit({"event": "progress", "instance": instance, "step": "reverting", "detail": f"release {previous}"})
        back = self._switch(instance, previous, revert=False)
        outcome.reverted = back.ok
        outcome.release = previous if back.ok else outcome.release
        if not back.ok:
            outcome.message += f"; and going back to release {previous} failed too: {back.message}"

    # --- remove ---------------------------------------------------------------------------

    def remove(self, instance: str, lbs: Sequence[str] = (), drain_timeout: float = 60.0) -> Outcome:
        with locked(self.layout.lock_file(instance)):
            return self._remove(instance, lbs, drain_timeout)

    def _remove(self, instance: str, lbs: Sequence[str] = (), drain_timeout: float = 60.0) -> Outcome:
        started = time.monotonic()
        state = read_state(self.layout, instance)
        definition = None
        if state is not None:
            try:
                definition = load_definition(self.layout, state.release, instance)
            except SwitchFailed:
                definition = None
        lbs = tuple(lbs) or (definition.lbs if definition else ())
        runtime = runtime_for(
            definition.runtime if definition else ("systemd" if self.layout.unit_file(instance).exists() else "docker"), self.layout
        )
        grace = definition.stop_grace if definition else 30.0
        changed = False
        try:
            old = registered(self.client, instance)
            if old is not None:
                set_maintenance(self.client, instance, True, "moorage remove")
                backend = f"{old.get('Address')}:{old.get('Port')}"
                if lbs and runtime.is_running(instance) and any(str(tag).startswith("route=") for tag in old.get("Tags") or []):
                    seconds = wait_for_lbs(self.client, self.layout.service, backend, lbs, routed=False, timeout=drain_timeout)
                    self._progress(instance, "drained", started, f"{backend} ({seconds:.1f}s)")
                deregister(self.client, instance)
                changed = True
            running = runtime.is_running(instance)
            runtime.remove(instance, grace)
            changed = changed or running
            changed = remove_path(self.layout.state_file(instance)) or changed
        except (RuntimeFailure, ConsulError, NotAcknowledged) as err:
            return Outcome(instance, ok=False, changed=changed, release=None, message=f"removing {instance} on {self.host} failed: {err}")
        self._progress(instance, "removed", started)
        return Outcome(instance, ok=True, changed=changed, release=None)

    # --- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What runs here: per instance that ran a release, that release, whether it got healthy, runs, has its files."""
        rows = {}
        for instance in self.layout.instances_with_state():
            state = read_state(self.layout, instance)
            if state is None:
                continue
            files = state.runtime == "docker" or (self.layout.current_link(instance) / UNPACKED_MARKER).exists()
            rows[instance] = {
                "release": state.release,
                "healthy": state.healthy,
                "running": runtime_for(state.runtime, self.layout).is_running(instance),
                "files": files,
            }
        return {"service": self.layout.service, "host": self.host, "instances": rows}

    def _progress(self, instance: str, step: str, started: float, detail: str = "") -> None:
        self.emit(
            {"event": "progress", "instance": instance, "step": step, "detail": detail, "seconds": round(time.monotonic() - started, 2)}
        )


def in_parallel(work: Callable[[str], Outcome], instances: Sequence[str], max_parallel: int) -> list[Outcome]:
    """``work`` on each instance, ``max_parallel`` at a time; outcomes in the order given."""
    outcomes: dict[str, Outcome] = {}
    for start in range(0, len(instances), max(1, max_parallel)):
        chunk = instances[start : start + max(1, max_parallel)]
        threads = [threading.Thread(target=lambda name=name: outcomes.__setitem__(name, work(name))) for name in chunk]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if any(not outcomes[name].ok for name in chunk):
            break  # the next chunk would take out more instances while these failed
    return [outcomes[name] for name in instances if name in outcomes]


# --- the command line ---------------------------------------------------------------------


class _Lines:
    """JSON lines on stdout, one writer at a time; a reader gone (the controller died) is no error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            try:
                sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, OSError):
                pass


def add_host_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every host-agent command takes: where the service lives, its Consul agent, this host's name."""
    parser.add_argument("--root", default=ROOT, help=f"release files (default {ROOT})")
    parser.add_argument("--config-root", default=CONFIG_ROOT, help=f"definitions, env files, state (default {CONFIG_ROOT})")
    parser.add_argument("--units-dir", default=UNITS_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--consul", default=os.environ.get("CONSUL_HTTP_ADDR", DEFAULT_ADDRESS), help="the local Consul agent")
    parser.add_argument("--host", default="", help="this host's inventory name (for messages)")


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="moorage-agent instance", description="Switch or remove a service's instances on this host.")
    add_host_arguments(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    switch = commands.add_parser("switch", help="switch instances to a prepared release")
    switch.add_argument("service")
    switch.add_argument("release", type=int)
    switch.add_argument("instances", nargs="+")
    switch.add_argument("--max-parallel", type=int, default=0, help="instances at a time (default: all given)")
    switch.add_argument("--no-revert", action="store_true", help="leave a failed instance as it is (no autoRevert)")
    remove = commands.add_parser("remove", help="drain, deregister, stop and delete instances")
    remove.add_argument("service")
    remove.add_argument("instances", nargs="+")
    remove.add_argument("--lb", action="append", default=[], help="lb host that must stop routing it first (repeat)")
    status = commands.add_parser("status", help="what runs here (JSON)")
    status.add_argument("service")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    arguments = _arguments(argv)
    # The switch finishes even when the controller's connection goes: never stop half-way.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    emit = _Lines()
    layout = ServiceLayout(arguments.service, arguments.root, arguments.config_root, arguments.units_dir)
    token = ""
    try:
        token = read_token(os.environ, str(layout.token_file) if layout.token_file.exists() else "")
    except OSError as err:
        emit({"event": "result", "ok": False, "instances": [], "message": f"{layout.token_file}: {err}"})
        return 1
    agent = Agent(layout, ConsulClient(arguments.consul, token), emit, arguments.host)
    if arguments.command == "status":
        emit({"event": "result", "ok": True, **agent.status()})
        return 0
    if arguments.command == "switch":
        revert = False if arguments.no_revert else None
        outcomes = in_parallel(
            lambda name: agent.switch(name, arguments.release, revert=revert),
            arguments.instances,
            arguments.max_parallel or len(arguments.instances),
        )
    else:
        outcomes = in_parallel(lambda name: agent.remove(name, arguments.lb), arguments.instances, len(arguments.instances))
    ok = len(outcomes) == len(arguments.instances) and all(outcome.ok for outcome in outcomes)
    emit({"event": "result", "ok": ok, "host": agent.host, "instances": [outcome.as_dict() for outcome in outcomes]})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
