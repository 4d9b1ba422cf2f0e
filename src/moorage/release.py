"""A release: what one deploy (or rollback, scale, promote) put on the hosts, as kept in Consul KV.

The record is typed and versioned (``schema_version``). It holds what a person asks about
(number, version, when, who, status, note), what the hosts run (the spec as deployed, the plan,
and whose files the instances run) and the canaries beside the planned instances. Everything the
classic target hands to Ansible is derived from it (``moorage.targets.classic``); nothing in it is
an Ansible variable.

Schema versions:

- 1 (moorage 0.1, no ``schema_version`` key): the deploy playbook's variables under ``variables``
  (``moorage_service``, ``moorage_instances``, ``spec_text``, ``spec_file``, ``canary_instances``,
  ``files_release``). Still read: :func:`release_from_json` converts such a record when it reads it
  (the spec from ``spec_text``, the plan from the instances); a record it cannot convert is one line
  naming the release and what to do.
- 2: this module's :class:`Release` (``files_digest`` added later; a record without it reads as None).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast, get_args

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from moorage.errors import MoorageError
from moorage.plan import Instance, Plan, with_replicas
from moorage.spec.loader import SpecFile
from moorage.spec.model import ServiceSpec

SCHEMA_VERSION = 2

# deploying: its command works on it now (and holds the service's lock); interrupted: it was left
# deploying by a command that stopped before finishing (killed, its machine gone): see interrupted().
ReleaseStatus = Literal["deploying", "canary", "deployed", "failed", "reverted", "interrupted"]
RELEASE_STATUSES: tuple[str, ...] = get_args(ReleaseStatus)


@dataclass(frozen=True)
class Release:
    number: int  # 0 for a release not recorded yet (the preflight of a deploy)
    version: str  # MOORAGE_VERSION: --version, else a hash of artifact/image archive and spec
    spec_hash: str  # moorage.deploy.identity.spec_hash of the spec as deployed
    created: str  # ISO 8601, UTC
    by: str  # user@host of whoever deployed
    status: ReleaseStatus
    note: str  # e.g. "rollback to 1", "scale to 5", the failure reason
    spec: SpecFile  # the spec as deployed (``scale`` changes only its replicas; the text stays as written)
    plan: Plan
    files_release: int | None = None  # whose files the instances run: None for its own, an older number after a rollback
    files_digest: str | None = None  # sha256 of the archive those files were shipped in (None: not known, moorage <= 0.2)
    commit: str | None = None  # the source commit (--commit), when known; absent in records written before it existed

    @property
    def service(self) -> ServiceSpec:
        return self.spec.model

    @property
    def files_number(self) -> int:
        """The release whose files (``/opt/moorage/NAME/releases/N``) the instances run."""
        return self.number if self.files_release is None else self.files_release

    def summary(self) -> dict[str, Any]:
        """What ``moorage releases`` shows."""
        return {
            "number": self.number,
            "version": self.version,
            "spec_hash": self.spec_hash,
            "created": self.created,
            "by": self.by,
            "status": self.status,
            "note": self.note,
            "commit": self.commit,
        }

    def to_json(self) -> str:
        document = {
            "schema_version": SCHEMA_VERSION,
            **self.summary(),
            "files_release": self.files_number,
            "files_digest": self.files_digest,
            "spec": {
                "file": str(self.spec.file),
                "text": self.spec.text,
                "model": self.spec.model.model_dump(mode="json", by_alias=True),
                "artifact": _text(self.spec.artifact),
                "image_archive": _text(self.spec.image_archive),
            },
            "plan": {
                "group": self.plan.group,
                "instances": [_instance_json(instance) for instance in self.plan.instances],
                "canaries": [_instance_json(instance) for instance in self.plan.canaries],
            },
        }
        return json.dumps(document, sort_keys=True)


class UnreadableRelease(MoorageError):
    """A record in Consul this moorage cannot read (exit 1)."""


def release_from_json(text: str | bytes, key: str) -> Release:
    """The record stored at Consul KV ``key``, whatever schema version it was written in."""
    try:
        document = json.loads(text)
        if not isinstance(document, dict):
            raise TypeError("not a JSON object")
        version = document.get("schema_version")
        if version is None and "variables" in document:
            return _from_schema_1(document)
        if version == SCHEMA_VERSION:
            return _from_schema_2(document)
    except (ValueError, TypeError, KeyError, ValidationError, YAMLError) as error:
        why = " ".join(str(error).split())[:200]
        raise UnreadableRelease(
            f"{key}: cannot read this release record ({type(error).__name__}: {why}); "
            "deploy the service again with 'moorage deploy FILE' to record a current release"
        ) from None
    raise UnreadableRelease(
        f"{key}: release record of schema version {version!r}, this moorage reads {SCHEMA_VERSION} and older: use a newer moorage"
    )


def _from_schema_2(document: dict[str, Any]) -> Release:
    spec = document["spec"]
    plan = document["plan"]
    model = ServiceSpec.model_validate(spec["model"])
    number = int(document["number"])
    return Release(
        number=number,
        version=str(document["version"]),
        spec_hash=str(document["spec_hash"]),
        created=str(document["created"]),
        by=str(document["by"]),
        status=_status(document["status"]),
        note=str(document["note"]),
        spec=SpecFile(model, Path(spec["file"]), str(spec["text"]), _path(spec["artifact"]), _path(spec["image_archive"])),
        plan=Plan(
            group=str(plan["group"]),
            instances=tuple(_instance(item) for item in plan["instances"]),
            canaries=tuple(_instance(item) for item in plan["canaries"]),
        ),
        files_release=_files_release(number, document["files_release"]),
        files_digest=None if document.get("files_digest") is None else str(document["files_digest"]),
        commit=None if document.get("commit") is None else str(document["commit"]),
    )


def _from_schema_1(document: dict[str, Any]) -> Release:
    """moorage 0.1's record: the deploy variables, the spec's text beside them."""
    variables = document["variables"]
    service = variables["moorage_service"]
    parsed = YAML(typ="safe").load(variables["spec_text"])
    # The text is the spec as written; scale changed only the rendered replica count.
    model = with_replicas(ServiceSpec.model_validate(parsed), int(service["replicas"]))
    number = int(document["number"])
    return Release(
        number=number,
        version=str(document["version"]),
        spec_hash=str(document["spec_hash"]),
        created=str(document["created"]),
        by=str(document["by"]),
        status=_status(document["status"]),
        note=str(document.get("note", "")),
        spec=SpecFile(
            model, Path(variables.get("spec_file", "")), variables["spec_text"], _path(service["artifact"]), _path(service["image_archive"])
        ),
        plan=Plan(
            group=str(service["group"]),
            instances=tuple(_instance(item) for item in variables["moorage_instances"]),
            canaries=tuple(_instance(item) for item in variables.get("canary_instances") or []),
        ),
        files_release=_files_release(number, variables.get("files_release", number)),
    )


def _files_release(number: int, stored: object) -> int | None:
    files = int(str(stored))
    return None if files == number else files


def _status(value: object) -> ReleaseStatus:
    if value not in RELEASE_STATUSES:
        raise ValueError(f"unknown status {value!r}")
    return cast(ReleaseStatus, value)


def _instance(item: dict[str, Any]) -> Instance:
    port = item["port"]
    return Instance(
        id=str(item["id"]),
        index=int(item["index"]),
        host=str(item["host"]),
        address=str(item["address"]),
        port=None if port is None else int(port),
    )


def _instance_json(instance: Instance) -> dict[str, Any]:
    return {"id": instance.id, "index": instance.index, "host": instance.host, "address": instance.address, "port": instance.port}


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def interrupted(release: Release) -> Release:
    """A release whose command stopped before finishing, as it is shown and recorded.

    Only the holder of the service's deploy lock writes a release while it is ``deploying``, and the
    lock goes when its command goes (its Consul session expires). So a ``deploying`` release while
    nobody holds the lock was left by a command that never finished: ``moorage releases`` shows it
    as ``interrupted``, and the next command that takes the lock records it so.
    """
    if release.status != "deploying":
        return release
    note = f"left deploying by {release.by}, whose command stopped before finishing; instances may run it or the release before"
    return replace(release, status="interrupted", note=f"{release.note}; {note}" if release.note else note)


def scaled_spec(spec: SpecFile, replicas: int) -> SpecFile:
    """The deployed spec with another replica count (its text stays as written)."""
    return replace(spec, model=with_replicas(spec.model, replicas))
