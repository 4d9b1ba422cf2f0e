"""Releases: each deploy is a numbered record in Consul KV (``moorage/services/NAME/releases/N``).

A record holds what a person asks about (version, spec hash, time, who, status) and what a
rollback needs (the rendered deploy variables). The last ``KEEP`` records are kept; the
hosts keep the same releases' files (the service role prunes them to the same number).
"""

from __future__ import annotations

import getpass
import json
import socket
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import consul

from moorage.deploy.keys import release_key, releases_prefix
from moorage.errors import BadInput

KEEP = 5

ReleaseStatus = Literal["deploying", "canary", "deployed", "failed", "reverted"]


@dataclass(frozen=True)
class Release:
    number: int
    version: str
    spec_hash: str
    created: str  # ISO 8601, UTC
    by: str  # user@host of whoever deployed
    status: ReleaseStatus
    variables: dict[str, Any] = field(repr=False)  # moorage_service + moorage_instances as deployed
    note: str = ""  # e.g. "rollback to 1", "scale to 5", the failure reason

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Release:
        return cls(**json.loads(text))

    def summary(self) -> dict[str, Any]:
        """Everything but the variables: what ``moorage releases`` shows."""
        return {key: value for key, value in asdict(self).items() if key != "variables"}


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


class ReleaseStore:
    """The releases of one service. Writers hold the service's deploy lock."""

    def __init__(self, client: consul.Consul, service: str) -> None:
        self.client = client
        self.service = service

    def all(self) -> list[Release]:
        """Oldest first."""
        _, entries = self.client.kv.get(releases_prefix(self.service), recurse=True)
        releases = [Release.from_json(entry["Value"]) for entry in entries or [] if entry["Value"]]
        return sorted(releases, key=lambda release: release.number)

    def get(self, number: int) -> Release:
        _, entry = self.client.kv.get(release_key(self.service, number))
        if entry is None or not entry["Value"]:
            kept = ", ".join(str(release.number) for release in self.all()) or "none"
            raise BadInput(f"{self.service}: no release {number} (kept: {kept})")
        return Release.from_json(entry["Value"])

    def current(self) -> Release | None:
        """The newest release that is running everywhere (deployed), if any."""
        deployed = [release for release in self.all() if release.status == "deployed"]
        return deployed[-1] if deployed else None

    def create(self, version: str, spec_hash: str, variables: dict[str, Any], status: ReleaseStatus, note: str = "") -> Release:
        existing = self.all()
        number = existing[-1].number + 1 if existing else 1
        release = Release(
            number=number,
            version=version,
            spec_hash=spec_hash,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            by=who(),
            status=status,
            variables=variables,
            note=note,
        )
        # cas=0: only if the key does not exist yet (two writers never share a number).
        if not self.client.kv.put(release_key(self.service, number), release.to_json(), cas=0):
            raise RuntimeError(f"{self.service}: release {number} was written by someone else meanwhile")
        self._prune([*existing, release])
        return release

    def latest(self) -> Release | None:
        """The newest release, whatever its status."""
        kept = self.all()
        return kept[-1] if kept else None

    def mark(self, release: Release, status: ReleaseStatus, note: str | None = None, variables: dict[str, Any] | None = None) -> Release:
        updated = replace(
            release,
            status=status,
            note=release.note if note is None else note,
            variables=release.variables if variables is None else variables,
        )
        self.client.kv.put(release_key(self.service, release.number), updated.to_json())
        return updated

    def _prune(self, releases: list[Release]) -> None:
        """Keep the newest ``KEEP``, and the newest deployed one (a rollback target) even if older."""
        deployed = [release.number for release in releases if release.status == "deployed"]
        keep = {release.number for release in releases[-KEEP:]} | set(deployed[-1:])
        for old in releases:
            if old.number not in keep:
                self.client.kv.delete(release_key(self.service, old.number))
