"""The release record (typed, versioned; moorage 0.1's records still read) and the diff of a plan against it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from release_samples import HOSTS, LEGACY_RECORD, sample_release

from moorage.deploy.changes import InstanceChange, changes, removed_instances, rollback_removals
from moorage.plan import Instance, plan_service
from moorage.release import SCHEMA_VERSION, UnreadableRelease, release_from_json
from moorage.targets.classic import instance_variables, service_variables

KEY = "moorage/services/hello/releases/4"


def test_a_record_round_trips_through_its_json() -> None:
    release = replace(sample_release("2", canaries=1, number=4), status="canary", note="canary of 2", created="now", by="me@here")
    document = json.loads(release.to_json())
    assert document["schema_version"] == SCHEMA_VERSION == 2
    assert document["spec"]["text"] == release.spec.text
    assert [instance["id"] for instance in document["plan"]["canaries"]] == ["hello-4"]
    assert "variables" not in document and "moorage_service" not in json.dumps(document)
    assert release_from_json(release.to_json(), KEY) == release
    assert release_from_json(replace(release, files_release=2).to_json(), KEY).files_number == 2
    assert release_from_json(replace(release, files_digest="ab12").to_json(), KEY).files_digest == "ab12"
    without_digest = {key: value for key, value in document.items() if key != "files_digest"}  # written before it existed
    assert release_from_json(json.dumps(without_digest), KEY).files_digest is None


def test_the_summary_is_what_moorage_releases_shows() -> None:
    release = sample_release("2", number=4)
    assert set(release.summary()) == {"number", "version", "spec_hash", "created", "by", "status", "note", "commit"}


def test_the_commit_is_kept_and_a_record_written_before_it_existed_still_reads() -> None:
    release = replace(sample_release("2", number=4), note="Fix the greeting", commit="0123456789abcdef")
    assert release_from_json(release.to_json(), KEY) == release
    document = json.loads(release.to_json())
    del document["commit"]
    assert release_from_json(json.dumps(document), KEY).commit is None


def test_a_moorage_0_1_record_converts_to_the_same_playbook_variables() -> None:
    release = release_from_json(json.dumps(LEGACY_RECORD), KEY)
    old = LEGACY_RECORD["variables"]
    assert (release.number, release.version, release.spec_hash, release.status, release.note) == (
        3,
        "1",
        "0123456789ab",
        "deployed",
        "rollback to 2",
    )
    assert release.files_number == 2
    assert release.spec.file == Path("/srv/hello/moorage.yml") and release.spec.text == old["spec_text"]
    assert service_variables(release.spec) == old["moorage_service"]  # the hosts get what they got before
    assert instance_variables(release.plan.all_instances) == old["moorage_instances"]
    assert (release.plan.group, release.number, release.files_number, release.files_digest) == ("app", 3, 2, None)


def test_a_moorage_0_1_record_with_canaries_keeps_them() -> None:
    canary = {"id": "hello-3", "index": 3, "host": "app3", "address": "10.66.0.13", "port": 8080}
    record = {**LEGACY_RECORD, "status": "canary", "variables": {**LEGACY_RECORD["variables"], "canary_instances": [canary]}}
    release = release_from_json(json.dumps(record), KEY)
    assert release.plan.canaries == (Instance("hello-3", 3, "app3", "10.66.0.13", 8080),)


@pytest.mark.parametrize(
    ("record", "says"),
    [
        ('{"variables": {}, "number": 4}', "cannot read this release record (KeyError"),
        ("not json", "cannot read this release record (JSONDecodeError"),
        ('{"schema_version": 2, "number": 4}', "cannot read this release record (KeyError"),
        ('{"schema_version": 9, "number": 4}', "release record of schema version 9, this moorage reads 2 and older: use a newer moorage"),
    ],
)
def test_a_record_that_cannot_be_read_is_one_line_naming_its_key(record: str, says: str) -> None:
    with pytest.raises(UnreadableRelease) as caught:
        release_from_json(record, KEY)
    message = str(caught.value)
    assert message.startswith(f"{KEY}: ") and says in message and "\n" not in message, message
    assert caught.value.exit_code == 1


# --- the diff of a plan against the current release ----------------------------------------------


def actions(rows: tuple[InstanceChange, ...]) -> dict[str, str]:
    return {row.instance: row.action for row in rows}


def test_nothing_deployed_adds_every_instance() -> None:
    candidate = sample_release("1")
    diff = changes(None, candidate.plan, "1", candidate.spec_hash)
    assert diff.pending and actions(diff.instances) == {"hello-1": "add", "hello-2": "add", "hello-3": "add"}


def test_the_same_release_again_keeps_everything() -> None:
    current = sample_release("1", number=1)
    diff = changes(current, current.plan, current.version, current.spec_hash)
    assert not diff.pending and set(actions(diff.instances).values()) == {"keep"} and diff.changing == ()


def test_a_new_version_replaces_and_scaling_adds_or_removes() -> None:
    current = sample_release("1", number=1)
    newer = changes(current, current.plan, "2", current.spec_hash)
    assert newer.pending and set(actions(newer.instances).values()) == {"replace"}
    bigger = sample_release("1", replicas=5)
    assert actions(changes(current, bigger.plan, "1", current.spec_hash).instances) == {
        "hello-1": "keep", "hello-2": "keep", "hello-3": "keep", "hello-4": "add", "hello-5": "add",
    }  # fmt: skip
    smaller = sample_release("1", replicas=1)
    diff = changes(current, smaller.plan, "1", current.spec_hash)
    assert diff.pending and actions(diff.instances) == {"hello-1": "keep", "hello-2": "remove", "hello-3": "remove"}
    assert [instance.id for instance in removed_instances(current, smaller.plan)] == ["hello-2", "hello-3"]
    assert [(row.host, row.instance) for row in diff.instances] == sorted((row.host, row.instance) for row in diff.instances)


def test_a_rollback_while_a_canary_is_out_removes_the_canaries_too() -> None:
    current = sample_release("1", number=1)
    canary = sample_release("2", canaries=1, number=2)
    assert [instance.id for instance in rollback_removals(current, current.plan, canary)] == ["hello-4"]
    assert rollback_removals(current, current.plan, None) == []
    # A target that plans the canary's index itself runs it as one of its own instances.
    wider = plan_service(sample_release("1", replicas=4).service, HOSTS)
    assert rollback_removals(current, wider, canary) == []
    # A smaller target: the scaled-away instances and the canary, each once.
    smaller = sample_release("1", replicas=2).plan
    assert [instance.id for instance in rollback_removals(current, smaller, canary)] == ["hello-3", "hello-4"]
