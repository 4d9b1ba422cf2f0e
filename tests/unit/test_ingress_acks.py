"""Ingress acknowledgments (moorage.agents.acks) in a real Consul: the writer, the readers, the ACL policy.

Consul is a dev agent with ACLs on (default deny). The writer uses a token holding exactly the
consul role's policies for the nginx-ingress token (``catalog-read`` and ``ingress-acks``,
rendered from roles/consul/defaults/main.yml for lb hosts lab-1 and lab-3).
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
from collections.abc import Iterator

import pytest
from consul_dev import ConsulDev, start_consul_dev
from ingress_fixtures import role_policy_rules, token_with_policies

from moorage.agents.acks import AckWriter, Want, ack_key, describe_lacking, parse_ack, read_acks, wait_for_acks
from moorage.agents.consul import ConsulClient, ConsulError

LBS = ["lab-1", "lab-3"]


@pytest.fixture(scope="module")
def consul() -> Iterator[ConsulDev]:
    with start_consul_dev(acl=True) as agent:
        yield agent


@pytest.fixture(scope="module")
def lb_token(consul: ConsulDev) -> str:
    return token_with_policies(consul, role_policy_rules("catalog-read", LBS), role_policy_rules("ingress-acks", LBS))


@pytest.fixture
def admin(consul: ConsulDev) -> Iterator[ConsulClient]:
    """A management client; every test starts and ends with no key under moorage/ingress/."""
    client = ConsulClient(consul.url, consul.management_token or "")
    client.put("/v1/txn", body=[{"KV": {"Verb": "delete-tree", "Key": "moorage/ingress/"}}])
    yield client
    client.put("/v1/txn", body=[{"KV": {"Verb": "delete-tree", "Key": "moorage/ingress/"}}])


def kv(consul: ConsulDev) -> dict[str, dict[str, object]]:
    """Every key under moorage/ingress/ -> its JSON value and ModifyIndex (asked with the management token)."""
    try:
        entries = consul.api("GET", "/v1/kv/moorage/ingress/?recurse=true")
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return {}
        raise
    assert isinstance(entries, list)
    return {entry["Key"]: {**json.loads(base64.b64decode(entry["Value"])), "modify_index": entry["ModifyIndex"]} for entry in entries}


def test_the_writer_writes_what_changed_and_deletes_what_is_routed_no_more(consul: ConsulDev, lb_token: str, admin: ConsulClient) -> None:
    writer = AckWriter(ConsulClient(consul.url, lb_token), "lab-1")

    first = writer.publish({"hello": ("10.0.0.3:8080", "10.0.0.2:8080"), "api": ()}, {"hello": 41, "api": 7})
    before = kv(consul)
    second = writer.publish({"hello": ("10.0.0.2:8080", "10.0.0.3:8080"), "api": ()}, {"hello": 42, "api": 7})
    third = writer.publish({"hello": ("10.0.0.2:8080",)}, {"hello": 45})
    after = kv(consul)

    assert first == ["api", "hello"] and second == [] and third == ["hello", "api"]
    assert before["moorage/ingress/lab-1/hello"]["backends"] == ["10.0.0.2:8080", "10.0.0.3:8080"]
    assert before["moorage/ingress/lab-1/hello"]["index"] == 41
    assert before["moorage/ingress/lab-1/api"]["backends"] == []
    assert sorted(after) == ["moorage/ingress/lab-1/hello"]
    assert after["moorage/ingress/lab-1/hello"]["backends"] == ["10.0.0.2:8080"]
    assert after["moorage/ingress/lab-1/hello"]["index"] == 45
    assert str(after["moorage/ingress/lab-1/hello"]["updated"]).endswith("Z")


def test_a_restarted_writer_rewrites_nothing_still_true_and_drops_what_is_gone(
    consul: ConsulDev, lb_token: str, admin: ConsulClient
) -> None:
    client = ConsulClient(consul.url, lb_token)
    AckWriter(client, "lab-1").publish({"hello": ("10.0.0.2:8080",), "old": ("10.0.0.9:80",)}, {"hello": 5, "old": 5})
    AckWriter(client, "lab-3").publish({"old": ("10.0.0.9:80",)}, {"old": 5})
    before = kv(consul)

    changed = AckWriter(client, "lab-1").publish({"hello": ("10.0.0.2:8080",)}, {"hello": 9})

    after = kv(consul)
    assert changed == ["old"]
    assert after["moorage/ingress/lab-1/hello"] == before["moorage/ingress/lab-1/hello"]  # not even rewritten
    assert "moorage/ingress/lab-1/old" not in after
    assert after["moorage/ingress/lab-3/old"] == before["moorage/ingress/lab-3/old"]  # another lb's key stays


def test_readers_tell_routed_and_drained_per_lb(consul: ConsulDev, lb_token: str, admin: ConsulClient) -> None:
    client = ConsulClient(consul.url, lb_token)
    AckWriter(client, "lab-1").publish({"hello": ("10.0.0.2:8080", "10.0.0.3:8080")}, {"hello": 3})
    AckWriter(client, "lab-3").publish({"hello": ("10.0.0.3:8080",)}, {"hello": 4})

    table = read_acks(admin)

    assert table.index > 0
    assert table.routed("lab-1", "hello", "10.0.0.2:8080") and table.drained("lab-3", "hello", "10.0.0.2:8080")
    assert table.lacking(LBS, "hello", "10.0.0.2:8080", Want.DRAINED) == ["lab-1"]
    assert table.lacking(LBS, "hello", "10.0.0.3:8080", Want.ROUTED) == []
    assert table.lacking([*LBS, "lab-5"], "hello", "10.0.0.3:8080", Want.ROUTED) == ["lab-5"]  # no key: not routed
    assert table.lacking([*LBS, "lab-5"], "hello", "10.0.0.3:8080", Want.DRAINED) == ["lab-1", "lab-3"]  # no key: drained


def test_wait_returns_once_every_lb_acknowledges(consul: ConsulDev, lb_token: str, admin: ConsulClient) -> None:
    client = ConsulClient(consul.url, lb_token)
    AckWriter(client, "lab-1").publish({"hello": ("10.0.0.2:8080",)}, {"hello": 3})
    AckWriter(client, "lab-3").publish({"hello": ("10.0.0.2:8080",)}, {"hello": 3})
    later = [threading.Timer(0.5 * n, AckWriter(client, lb).publish, ({"hello": ()}, {"hello": 4})) for n, lb in enumerate(LBS, 1)]
    for timer in later:
        timer.start()

    lacking = wait_for_acks(admin, LBS, "hello", "10.0.0.2:8080", Want.DRAINED, timeout_seconds=60)

    assert lacking == []
    assert read_acks(admin).lacking(LBS, "hello", "10.0.0.2:8080", Want.DRAINED) == []


def test_wait_names_the_lbs_that_did_not_acknowledge(consul: ConsulDev, lb_token: str, admin: ConsulClient) -> None:
    AckWriter(ConsulClient(consul.url, lb_token), "lab-1").publish({"hello": ("10.0.0.2:8080",)}, {"hello": 3})

    routed = wait_for_acks(admin, LBS, "hello", "10.0.0.2:8080", Want.ROUTED, timeout_seconds=1)
    drained = wait_for_acks(admin, LBS, "hello", "10.0.0.2:8080", Want.DRAINED, timeout_seconds=1)

    assert routed == ["lab-3"] and drained == ["lab-1"]
    assert describe_lacking(drained, "hello", "10.0.0.2:8080", Want.DRAINED, 1) == (
        "no acknowledgment within 1s from lb lab-1: hello 10.0.0.2:8080 still routed"
    )


def test_without_any_ack_nothing_is_routed_and_a_dead_consul_acknowledges_nothing(consul: ConsulDev, admin: ConsulClient) -> None:
    assert read_acks(admin).acks == {}  # the prefix does not exist: an empty table, not an error
    assert wait_for_acks(admin, LBS, "hello", "10.0.0.2:8080", Want.DRAINED, timeout_seconds=1) == []
    assert wait_for_acks(admin, LBS, "hello", "10.0.0.2:8080", Want.ROUTED, timeout_seconds=1) == LBS
    assert wait_for_acks(ConsulClient("127.0.0.1:1"), LBS, "hello", "10.0.0.2:8080", Want.DRAINED, timeout_seconds=1) == LBS


def test_the_ingress_token_writes_only_the_acks_of_the_lb_hosts(consul: ConsulDev, lb_token: str, admin: ConsulClient) -> None:
    client = ConsulClient(consul.url, lb_token)
    AckWriter(client, "lab-3").publish({"hello": ()}, {"hello": 1})

    with pytest.raises(ConsulError) as other_host:
        AckWriter(client, "lab-2").publish({"hello": ()}, {"hello": 1})
    with pytest.raises(ConsulError) as elsewhere:
        client.put("/v1/kv/moorage/services/hello/lock", body="x")

    assert sorted(kv(consul)) == ["moorage/ingress/lab-3/hello"]
    assert "Permission denied" in str(other_host.value) and elsewhere.value.status == 403


def test_a_malformed_value_is_no_ack() -> None:
    assert parse_ack(ack_key("lab-1", "hello"), '{"backends": ["a:1"], "index": 3, "updated": "t"}') is not None
    assert parse_ack(ack_key("lab-1", "hello"), '{"backends": "a:1", "index": 3, "updated": "t"}') is None
    assert parse_ack(ack_key("lab-1", "hello"), '{"backends": [], "index": true, "updated": "t"}') is None
    assert parse_ack(ack_key("lab-1", "hello"), "not json") is None
    assert parse_ack("moorage/ingress/lab-1", "{}") is None
