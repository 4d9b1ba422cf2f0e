"""``moorage drill SITE``: can the site be rebuilt from nothing by following its scripts?

A site is a directory holding service specs (``*/moorage.yml``, ``moorage.yml``) and, optionally,
its inventory (``hosts.yml`` or ``inventory/``). The drill runs what a person rebuilding the
site would run, as separate ``moorage`` commands — the same front door, the same exit codes:

1. ``moorage lab up --hosts N`` on a lab of its own (``<MOORAGE_LAB>-drill``): N is the number
   of hosts in the site's inventory (at least 4, the lab's smallest full platform; at most the
   lab's limit), 4 without one. The lab gives the platform groups its own layout (docs/lab.md).
2. ``moorage platform up``.
3. ``moorage deploy SPEC`` for every spec, in name order (a deploy builds what needs building,
   docs/build.md). A spec that declares ``secrets`` gets throwaway values for this lab: random, in an Ansible Vault file under a
   0700 temporary directory, removed at the end (a drill never reads a site's real secrets).
4. The checks of :mod:`moorage.lab.checks` for every service: route through NGINX, Consul DNS,
   Prometheus targets.
5. ``moorage lab down`` (unless ``keep``), whatever happened before.

The report has the time of every step, the time to rebuild (lab up to the last deploy) and
every check; the drill failed if any step or check failed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from moorage.errors import BadInput
from moorage.inventory import load_inventory
from moorage.lab.checks import LabChecks, ServiceCheck
from moorage.lab.network import MAX_HOSTS
from moorage.lab.paths import inventory_path, lab_name
from moorage.lab.ssh import key_path
from moorage.lab.vault import password_file as lab_password_file
from moorage.reporting import Reporter
from moorage.spec.loader import SpecFile, load_spec

SMALLEST_PLATFORM = 4  # lb, monitoring + logging, app hosts and a docker host, as `moorage lab up` lays them out
SPEC_NAME = "moorage.yml"
STEP_TIMEOUT_SECONDS = 1800


@dataclass(frozen=True)
class DrillStep:
    name: str
    command: list[str]
    ok: bool
    seconds: float
    detail: str  # the command's one-line result or error

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "command": self.command, "ok": self.ok, "seconds": round(self.seconds, 1), "detail": self.detail}


@dataclass
class DrillReport:
    site: str
    lab: str
    hosts: int
    services: list[str]
    steps: list[DrillStep] = field(default_factory=list)
    checks: list[ServiceCheck] = field(default_factory=list)
    rebuild_seconds: float | None = None  # lab up .. last deploy, when every one of them passed

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps) and all(check.passed for check in self.checks) and bool(self.checks)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok, "site": self.site, "lab": self.lab, "hosts": self.hosts, "services": self.services,
            "rebuild_seconds": None if self.rebuild_seconds is None else round(self.rebuild_seconds, 1),
            "steps": [step.as_dict() for step in self.steps], "checks": [check.as_dict() for check in self.checks],
        }  # fmt: skip


@dataclass(frozen=True)
class Site:
    directory: Path
    specs: list[SpecFile]
    host_count: int


def read_site(directory: Path) -> Site:
    """The site's specs (each validated) and the lab size its inventory asks for; bad input is one line."""
    if not directory.is_dir():
        raise BadInput(f"{directory}: no such site directory (a directory with service specs and, optionally, hosts.yml)")
    spec_files = sorted({*directory.glob(SPEC_NAME), *directory.glob(f"*/{SPEC_NAME}")})
    if not spec_files:
        raise BadInput(f"{directory}: no service specs ({SPEC_NAME} or */{SPEC_NAME})")
    specs = [load_spec(path) for path in spec_files]
    inventory = next((path for path in (directory / "hosts.yml", directory / "inventory") if path.exists()), None)
    hosts = SMALLEST_PLATFORM if inventory is None else len(load_inventory(inventory).hosts("all"))
    return Site(directory, specs, min(max(hosts, SMALLEST_PLATFORM), MAX_HOSTS))


def drill_lab_name() -> str:
    return f"{lab_name()}-drill"


def run_drill(directory: Path, reporter: Reporter, *, keep: bool = False) -> DrillReport:
    site = read_site(directory)
    name = drill_lab_name()
    report = DrillReport(str(directory), name, site.host_count, [spec.name for spec in site.specs])
    environment = {**os.environ, "MOORAGE_LAB": name}
    environment.pop("MOORAGE_INVENTORY", None)
    step = _Stepper(report, reporter, environment)
    try:
        with _throwaway_secrets(site.specs) as secret_options:
            started = time.monotonic()
            rebuilt = step("lab up", ["lab", "up", "--hosts", str(site.host_count)]) and step("platform up", ["platform", "up"])
            for spec in site.specs:
                rebuilt = rebuilt and step(f"deploy {spec.name}", ["deploy", str(spec.file), *secret_options.get(spec.name, [])])
            if rebuilt:
                report.rebuild_seconds = time.monotonic() - started
                checks = LabChecks(load_inventory(inventory_path(name), [lab_password_file(name)]), key_path(name))
                for spec in site.specs:
                    with reporter.step(f"checks of {spec.name}"):
                        report.checks.extend(checks.service(spec))
    finally:
        if not keep:
            step("lab down", ["lab", "down"])
    return report


class _StepFailed(Exception):
    """A drill step's command exited non-zero (the report says how)."""


class _Stepper:
    """Runs one ``moorage`` command as a step of the drill, timed, its result kept in the report."""

    def __init__(self, report: DrillReport, reporter: Reporter, environment: dict[str, str]) -> None:
        self.report, self.reporter, self.environment = report, reporter, environment
        self.moorage = str(Path(sys.executable).parent / "moorage")

    def __call__(self, name: str, arguments: list[str]) -> bool:
        command = ["moorage", *arguments]
        started = time.monotonic()
        try:
            with self.reporter.step(name):  # shown as done only when the command succeeded
                run = subprocess.run(
                    [self.moorage, *arguments, "--output", "json"], env=self.environment, stdin=subprocess.DEVNULL,
                    capture_output=True, text=True, timeout=STEP_TIMEOUT_SECONDS, check=False,
                )  # fmt: skip
                if run.returncode != 0:
                    raise _StepFailed
        except _StepFailed:
            pass
        detail = _last_result(run.stdout) or _last_line(run.stderr) or f"exit {run.returncode}"
        self.report.steps.append(DrillStep(name, command, run.returncode == 0, time.monotonic() - started, detail))
        if run.returncode != 0:
            self.reporter.note(f"{name} failed (exit {run.returncode}): {detail}")
        return run.returncode == 0


def _last_result(stdout: str) -> str:
    """The ``result`` (or error) line of a command's JSON Lines, in words."""
    for line in reversed(stdout.splitlines()):
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict):
            words = document.get("message") or document.get("error")
            return str(words) if words else ("ok" if document.get("ok", True) else "failed")
    return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@contextmanager
def _throwaway_secrets(specs: list[SpecFile]) -> Iterator[dict[str, list[str]]]:
    """``--secrets FILE --vault-password-file P`` per spec that declares secrets: random values, this drill's only."""
    with tempfile.TemporaryDirectory(prefix="moorage-drill-") as directory:
        folder = Path(directory)
        folder.chmod(0o700)
        password = folder / "vault-password"
        _write_private(password, secrets.token_hex(32))
        options: dict[str, list[str]] = {}
        for spec in specs:
            names = list(spec.model.spec.secrets)
            if not names:
                continue
            vault_file = folder / f"{spec.name}.vault.yml"
            _write_private(vault_file, "".join(f"{name}: {secrets.token_hex(32)}\n" for name in names))
            _encrypt(vault_file, password)
            options[spec.name] = ["--secrets", str(vault_file), "--vault-password-file", str(password)]
        yield options


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def _encrypt(path: Path, password_file: Path) -> None:
    ansible_vault = str(Path(sys.executable).parent / "ansible-vault")
    subprocess.run([ansible_vault, "encrypt", "--vault-password-file", str(password_file), str(path)], capture_output=True, check=True)
