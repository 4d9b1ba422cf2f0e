"""The Jenkinsfile's script, run as Jenkins would run it, on the session lab.

No Jenkins server can be installed here (docs/ci.md), so the test is the script the Jenkinsfile
calls: ``ci/moorage-deploy`` in a service repository (a git repository holding examples/hello's app
as a service ``jenkinsed`` on port 8492, its spec, an Ansible Vault with its secret, the Jenkinsfile
and the script), run with no terminal and stdin closed, with the environment Jenkins gives it: the
branch and commit, the SSH key and user from an "SSH Username with private key" credential (a key
file the inventory does not name), the vault password from a "Secret file" credential, Consul's
token from a "Secret text" credential, and a site inventory of its own (this controller holds no
platform secrets for it). The JUnit file it writes is read with junitparser, as Jenkins' junit step
would read it. Everything else is real: the CLI, SSH to the lab, Consul, NGINX.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from example_specs import example_spec, sealed_secrets
from junitparser import Failure, JUnitXml, Skipped, TestCase, TestSuite
from platform_cli import Platform

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SERVICE = "jenkinsed"
PORT = 8492
ROUTE_HOST = "jenkinsed.example.test"
SECRET_NAME = "JENKINSED_TOKEN"


def spec_text(*, failing: bool = False) -> str:
    """examples/hello/moorage.yml as the service ``jenkinsed``: its own port and route, a secret, quicker gates."""
    env = '{GREETING: hi, HELLO_FAIL_HEALTH: "1"}' if failing else "{GREETING: hi}"
    return example_spec("hello", {
        "name: hello": f"name: {SERVICE}",
        "port: 8080": f"port: {PORT}",
        "hello.example.test": ROUTE_HOST,
        "env: {GREETING: hi}": f"env: {env}\n  secrets: [{SECRET_NAME}]",
        "update: {maxParallel: 1, minHealthy: 3s, healthyDeadline: 60s}": "update: {maxParallel: 1, minHealthy: 2s, healthyDeadline: 15s}",
    })  # fmt: skip


@dataclass
class ServiceRepo:
    """A service's git repository as Jenkins checks it out, and the credentials Jenkins would hand the job."""

    platform: Platform
    path: Path
    env: dict[str, str]

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.path, check=True, capture_output=True, text=True).stdout.strip()

    def commit(self, subject: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", subject)
        return self.git("rev-parse", "HEAD")

    def script(self, step: str, commit: str, branch: str = "main") -> subprocess.CompletedProcess[str]:
        """``ci/moorage-deploy STEP`` as a Jenkins ``sh`` step runs it: no terminal (a session of its own), stdin closed."""
        env = {**self.env, "BRANCH_NAME": branch, "GIT_COMMIT": commit, "GIT_BRANCH": f"origin/{branch}", "BUILD_NUMBER": "7"}
        return subprocess.run(
            ["ci/moorage-deploy", step], cwd=self.path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=900, start_new_session=True,
        )  # fmt: skip

    @property
    def junit(self) -> Path:
        return self.path / "reports" / "moorage-deploy.xml"

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in (self.path / "reports" / "deploy.jsonl").read_text().splitlines()]

    def answers(self, count: int = 12) -> list[str]:
        lb = self.platform.lab.group("lb")[0].address
        return [requests.get(f"http://{lb}/", headers={"Host": ROUTE_HOST}, timeout=10).text.strip() for _ in range(count)]


def site_inventory(lab_inventory: Path, destination: Path) -> Path:
    """The lab's inventory as a site's own: it names no SSH key and no user (the CI job brings them)."""
    document = yaml.safe_load(lab_inventory.read_text())
    for name in ("ansible_ssh_private_key_file", "ansible_user"):
        document["all"]["vars"].pop(name)
    destination.write_text(yaml.safe_dump(document, sort_keys=False))
    return destination


@pytest.fixture(scope="module")
def service_repo(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> ServiceRepo:
    work = tmp_path_factory.mktemp("jenkins")
    repo = work / "jenkinsed"
    (repo / "ci").mkdir(parents=True)
    shutil.copytree(REPO / "examples/hello/app", repo / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "ci/moorage-deploy", repo / "ci/moorage-deploy")
    shutil.copy2(REPO / "examples/hello/Jenkinsfile", repo / "Jenkinsfile")
    (repo / "moorage.yml").write_text(spec_text())
    (repo / ".gitignore").write_text("reports/\n")

    credentials = work / "credentials"  # what Jenkins writes for withCredentials, outside the workspace
    credentials.mkdir(mode=0o700)
    vault_password = credentials / "vault-password"
    secrets = repo / "secrets.vault.yml"
    sealed_secrets(secrets, vault_password, {SECRET_NAME: f"jenkins-{uuid.uuid4().hex}"})
    ssh_key = credentials / "ssh-key"
    shutil.copy2(platform.lab.ssh_key, ssh_key)
    ssh_key.chmod(0o600)

    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MOORAGE_", "CONSUL_", "ANSIBLE_"))}
    env |= {
        "PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",  # moorage on the agent's PATH
        "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.test",
        "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.test",
        # the Jenkinsfile's environment
        "MOORAGE_SPEC": "moorage.yml",
        "MOORAGE_INVENTORY": str(site_inventory(platform.lab.inventory, work / "site-hosts.yml")),
        "MOORAGE_REPORTS": "reports",
        "MOORAGE_DEPLOY_BRANCH": "main",
        "MOORAGE_SECRETS": "secrets.vault.yml",
        "MOORAGE_OUTPUT": "json",
        "MOORAGE_STATE_DIR": str(work / "agent-state"),  # the Jenkins agent's own: no platform secrets, no lab
        # withCredentials: sshUserPrivateKey, file, string
        "ANSIBLE_PRIVATE_KEY_FILE": str(ssh_key),
        "ANSIBLE_REMOTE_USER": "moorage",  # the lab's sudo user (the inventory says become)
        "MOORAGE_VAULT_PASSWORD_FILE": str(vault_password),
        "CONSUL_HTTP_TOKEN": platform.management_token,
    }  # fmt: skip
    return ServiceRepo(platform, repo, env)


def read_suite(path: Path) -> TestSuite:
    suites = list(JUnitXml.fromfile(str(path)))
    assert len(suites) == 1, suites
    return suites[0]


def cases(suite: TestSuite, kind: str) -> list[TestCase]:
    return [case for case in suite if case.classname == f"moorage.deploy.{SERVICE}.{kind}"]


def test_a_branch_validates_and_plans_but_does_not_deploy(service_repo: ServiceRepo) -> None:
    commit = service_repo.commit("jenkinsed: first release")
    run = service_repo.script("all", commit, branch="feature-x")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "deploy skipped: branch 'feature-x' is not the deploy branch 'main'" in run.stderr
    plan = json.loads((service_repo.path / "reports" / "plan.json").read_text())
    assert plan["service"] == SERVICE and plan["changed"] is True and plan["version"] == commit[:12]
    assert not service_repo.junit.exists()


@dataclass(frozen=True)
class Deployed:
    commit: str
    release: str  # its release number (a kept lab may hold releases of earlier runs)


@pytest.fixture(scope="module")
def first(service_repo: ServiceRepo) -> Deployed:
    """main at its first commit, deployed by the Jenkinsfile's three stages."""
    commit = service_repo.git("rev-parse", "HEAD")
    for step in ("validate", "plan", "deploy"):
        run = service_repo.script(step, commit)
        assert run.returncode == 0, f"ci/moorage-deploy {step}: exit {run.returncode}: {run.stdout[-3000:]}{run.stderr[-3000:]}"
    return Deployed(commit, properties(read_suite(service_repo.junit))["release"])


def properties(suite: TestSuite) -> dict[str, str]:
    return {prop.name: prop.value for prop in suite.properties()}


def test_main_deploys_and_its_junit_report_has_a_passed_case_per_batch_and_gate(service_repo: ServiceRepo, first: Deployed) -> None:
    suite = read_suite(service_repo.junit)
    assert suite.name == f"moorage deploy {SERVICE}"
    assert (suite.failures, suite.errors, suite.skipped) == (0, 0, 0)
    assert all(case.is_passed for case in suite)
    batches = cases(suite, "batch")
    assert [case.name.split(":")[0] for case in batches] == ["batch 1/3", "batch 2/3", "batch 3/3"]
    assert all(case.name.endswith(f"-> release {first.release}") for case in batches), [case.name for case in batches]
    gates = cases(suite, "gate")
    assert sorted(case.name.split()[2].split("@")[0] for case in gates) == [f"{SERVICE}-{n}" for n in (1, 2, 3)]
    assert all(case.time >= 2 for case in gates), [(case.name, case.time) for case in gates]  # minHealthy 2s: the gate waited it out
    assert len(cases(suite, "preflight")) == 1 and len(cases(suite, "ship")) == 1
    shown = properties(suite)
    assert shown["version"] == first.commit[:12] and shown["commit"] == first.commit and shown["exit_code"] == "0"
    assert shown["note"] == "jenkinsed: first release" and shown["status"] == "deployed"
    assert all(answer.endswith(f"version {first.commit[:12]}") for answer in service_repo.answers()), service_repo.answers()
    events = service_repo.events()
    assert [event["status"] for event in events if event["event"] == "deploy_step_done"] == ["passed"] * len(list(suite))
    assert events[-1]["event"] == "result" and events[-1]["ok"] is True


def test_a_release_that_never_gets_healthy_fails_the_job_with_a_failing_case(service_repo: ServiceRepo, first: Deployed) -> None:
    (service_repo.path / "moorage.yml").write_text(spec_text(failing=True))
    commit = service_repo.commit("jenkinsed: a release whose health check fails")
    run = service_repo.script("deploy", commit)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]

    suite = read_suite(service_repo.junit)
    assert properties(suite)["exit_code"] == "1" and properties(suite)["status"] == "reverted"
    assert (suite.failures, suite.skipped) == (2, 2), [
        (case.name, case.result) for case in suite
    ]  # the gate and its batch; 2 batches skipped
    (gate,) = [case for case in cases(suite, "gate") if not case.is_passed]
    (failure,) = gate.result
    assert isinstance(failure, Failure)
    assert gate.time >= 15, gate.time  # from the instance's start until the 15 s deadline gave up on it
    assert "not healthy for 2s within 15s" in failure.message and f"failing on purpose, version {commit[:12]}" in failure.message
    batches = cases(suite, "batch")
    assert isinstance(batches[0].result[0], Failure) and batches[0].result[0].message.startswith("lab-")
    assert all(isinstance(case.result[0], Skipped) for case in batches[1:])
    (revert,) = cases(suite, "revert")
    assert revert.is_passed and revert.name.endswith(f"-> release {first.release}")

    result = service_repo.events()[-1]
    assert result["event"] == "result" and result["ok"] is False and result["exit_code"] == 1
    # The previous release still answers through NGINX.
    assert all(answer.endswith(f"version {first.commit[:12]}") for answer in service_repo.answers()), service_repo.answers()
