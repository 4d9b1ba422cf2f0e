"""The releases of a service in Consul KV (``moorage/services/NAME/releases/N``), oldest first.

Each record is a :class:`moorage.release.Release` (typed, with a schema version). The last
``KEEP`` records are kept, and the newest deployed one (a rollback target) even if older; the
hosts keep the same releases' files (the service role prunes them to the same number).
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import replace
from datetime import UTC, datetime

import consul

from moorage.deploy.keys import release_key, releases_prefix
from moorage.errors import BadInput, MoorageError
from moorage.plan import Plan
from moorage.release import Release, ReleaseStatus, interrupted, release_from_json
from moorage.spec.loader import SpecFile

KEEP = 5


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def draft(version: str, spec_hash: str, spec: SpecFile, plan: Plan) -> Release:
    """A release not recorded yet (number 0): what a deploy's preflight checks."""
    return Release(number=0, version=version, spec_hash=spec_hash, created="", by="", status="deploying", note="", spec=spec, plan=plan)


class ReleaseStore:
    """The releases of one service. Writers hold the service's deploy lock."""

    def __init__(self, client: consul.Consul, service: str) -> None:
        self.client = client
        self.service = service

    def all(self) -> list[Release]:
        """Oldest first."""
        _, entries = self.client.kv.get(releases_prefix(self.service), recurse=True)
        releases = [release_from_json(entry["Value"], entry["Key"]) for entry in entries or [] if entry["Value"]]
        return sorted(releases, key=lambda release: release.number)

    def get(self, number: int) -> Release:
        key = release_key(self.service, number)
        _, entry = self.client.kv.get(key)
        if entry is None or not entry["Value"]:
            kept = ", ".join(str(release.number) for release in self.all()) or "none"
            raise BadInput(f"{self.service}: no release {number} (kept: {kept})")
        return release_from_json(entry["Value"], key)

    def current(self) -> Release | None:
        """The newest release that is running everywhere (deployed), if any."""
        deployed = [release for release in self.all() if release.status == "deployed"]
        return deployed[-1] if deployed else None

    def latest(self) -> Release | None:
        """The newest release, whatever its status."""
        kept = self.all()
        return kept[-1] if kept else None

    def next_number(self) -> int:
        """The number the next release gets (the hosts are prepared with it before it is recorded)."""
        existing = self.all()
        return existing[-1].number + 1 if existing else 1

    def create(self, candidate: Release, status: ReleaseStatus, note: str = "") -> Release:
        """Record ``candidate`` under its number (the next one when it has none yet), as of now, by whoever runs this."""
        existing = self.all()
        number = candidate.number or (existing[-1].number + 1 if existing else 1)
        release = replace(
            candidate,
            number=number,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            by=who(),
            status=status,
            note=note,
        )
        # cas=0: only if the key does not exist yet (two writers never share a number).
        if not self.client.kv.put(release_key(self.service, number), release.to_json(), cas=0):
            raise MoorageError(f"{self.service}: release {number} was written by someone else meanwhile")
        self._prune([*existing, release])
        return release

    def mark(self, release: Release, status: ReleaseStatus, note: str | None = None, plan: Plan | None = None) -> Release:
        updated = replace(release, status=status, note=release.note if note is None else note, plan=release.plan if plan is None else plan)
        self.client.kv.put(release_key(self.service, release.number), updated.to_json())
        return updated

    def mark_interrupted(self) -> list[Release]:
        """Record every release left ``deploying`` as ``interrupted`` (only while holding the lock)."""
        left = [release for release in self.all() if release.status == "deploying"]
        for release in left:
            self.client.kv.put(release_key(self.service, release.number), interrupted(release).to_json())
        return [interrupted(release) for release in left]

    def _prune(self, releases: list[Release]) -> None:
        """Keep the newest ``KEEP``, and the newest deployed one (a rollback target) even if older."""
        deployed = [release.number for release in releases if release.status == "deployed"]
        keep = {release.number for release in releases[-KEEP:]} | set(deployed[-1:])
        for old in releases:
            if old.number not in keep:
                self.client.kv.delete(release_key(self.service, old.number))
