"""The deploy lock and the release records against a real Consul dev agent with ACLs on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta

import consul
import pytest
from consul_dev import ConsulDev
from release_samples import LEGACY_RECORD, sample_release

from moorage.deploy.lock import SESSION_TTL, DeployLock, current_holder
from moorage.deploy.releases import KEEP, ReleaseStore
from moorage.errors import BadInput, Locked, MoorageError


def test_second_deploy_is_refused_naming_holder_and_version(client: consul.Consul) -> None:
    with DeployLock(client, "hello", version="2", action="deploy"):
        with pytest.raises(Locked) as refused, DeployLock(client, "hello", version="3", action="deploy"):
            pytest.fail("two holders at once")
        assert refused.value.exit_code == 3
        message = str(refused.value)
        assert "version 2" in message and "@" in message and "deploy" in message
    assert current_holder(client, "hello") is None


def test_other_services_are_not_blocked(client: consul.Consul) -> None:
    with DeployLock(client, "hello", version="1", action="deploy"), DeployLock(client, "web", version="1", action="deploy"):
        assert current_holder(client, "web") is not None


def test_lock_wait_gets_the_lock_once_the_holder_releases_it(client: consul.Consul) -> None:
    first = DeployLock(client, "hello", version="1", action="deploy").__enter__()
    threading.Timer(2.0, first.__exit__, args=(None, None, None)).start()
    started = time.monotonic()
    with DeployLock(client, "hello", version="2", action="deploy", wait=timedelta(seconds=30)):
        assert current_holder(client, "hello").version == "2"
    assert time.monotonic() - started >= 1.5


def test_a_crashed_deploy_loses_its_lock_when_its_session_expires(agent: ConsulDev, client: consul.Consul) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import consul, sys, time\n"
            "from moorage.deploy.lock import DeployLock\n"
            f"client = consul.Consul(host={agent.host!r}, port={agent.port}, token={agent.management_token!r})\n"
            "DeployLock(client, 'crashy', version='9', action='deploy').__enter__()\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()  # no cleanup runs: the session simply stops being renewed
    holder.wait()
    assert current_holder(client, "crashy").version == "9"
    with DeployLock(client, "crashy", version="10", action="deploy", wait=timedelta(seconds=60)):
        assert current_holder(client, "crashy").version == "10"


def test_a_command_waiting_longer_than_its_sessions_ttl_keeps_its_session_and_gets_the_lock(client: consul.Consul) -> None:
    """--lock-wait beyond twice the session TTL (the most Consul waits before it drops an unrenewed session)."""
    held = threading.Event()

    def hold_then_release() -> None:
        with DeployLock(client, "patient", version="1", action="deploy"):
            held.set()
            time.sleep(2 * SESSION_TTL.total_seconds() + 3)

    holder = threading.Thread(target=hold_then_release)
    holder.start()
    assert held.wait(30)
    with DeployLock(client, "patient", version="2", action="deploy", wait=timedelta(seconds=90)):
        assert current_holder(client, "patient").version == "2"
    holder.join()


def test_anonymous_cannot_take_the_lock(agent: ConsulDev) -> None:
    anonymous = consul.Consul(host=agent.host, port=agent.port)
    with pytest.raises(consul.ConsulException), DeployLock(anonymous, "hello", version="1", action="deploy"):
        pytest.fail("anonymous got the lock")


def test_releases_are_numbered_and_the_last_five_kept(client: consul.Consul) -> None:
    store = ReleaseStore(client, "numbered")
    made = [store.create(sample_release(version=str(v)), "deployed") for v in range(1, 8)]
    assert [release.number for release in made] == list(range(1, 8))
    kept = store.all()
    assert [release.number for release in kept] == list(range(8 - KEEP, 8))
    assert store.get(7) == made[-1]  # the typed record comes back as it was written
    assert store.get(7).files_number == 7
    with pytest.raises(BadInput, match="no release 1 "):
        store.get(1)


def test_current_is_the_newest_deployed_and_survives_pruning(client: consul.Consul) -> None:
    store = ReleaseStore(client, "flaky")
    good = store.create(sample_release(version="1"), "deployed")
    for version in range(2, 9):
        failed = store.create(sample_release(version=str(version)), "deploying")
        store.mark(failed, "reverted", note="health check never passed")
    assert store.current().number == good.number
    assert store.get(good.number).version == "1"
    assert store.all()[-1].status == "reverted"
    assert store.all()[-1].note == "health check never passed"


def test_a_record_of_moorage_0_1_is_still_read(client: consul.Consul) -> None:
    client.kv.put("moorage/services/hello/releases/3", json.dumps(LEGACY_RECORD))
    store = ReleaseStore(client, "hello")
    (release,) = store.all()
    assert (release.number, release.version, release.status, release.files_number) == (3, "1", "deployed", 2)
    assert release.service.spec.replicas == 2  # as scaled, not as the text says
    store.create(replace(release, number=store.next_number()), "deployed", note="rollback to 3")  # a current record beside it
    assert [record.number for record in store.all()] == [3, 4]
    with pytest.raises(MoorageError, match="hello: release 4 was written by someone else meanwhile"):
        store.create(replace(release, number=4), "deployed")


def test_an_unreadable_record_is_one_line_naming_it_and_what_to_do(client: consul.Consul) -> None:
    client.kv.put("moorage/services/broken/releases/1", '{"variables": {"moorage_service": {}}, "number": 1}')
    with pytest.raises(MoorageError) as caught:
        ReleaseStore(client, "broken").all()
    message = str(caught.value)
    assert message.startswith("moorage/services/broken/releases/1: cannot read this release record (KeyError")
    assert message.endswith("deploy the service again with 'moorage deploy FILE' to record a current release")
    assert "\n" not in message
