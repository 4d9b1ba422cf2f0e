"""ci/moorage-deploy and the Jenkinsfile that calls it, checked without a Jenkins server (none can be installed here).

The Jenkinsfile compiles with Debian's groovyc (a syntax check: Jenkins' own pipeline model is not
available), and is read as text: its stages call the script, its credentials are the ones docs/ci.md
lists and bind the variables the script reads, its junit step publishes the file the script writes,
and its braces balance. The script runs for real (bash, git, the moorage CLI) without a terminal.
The run on the lab, with a deploy and a failed one, is tests/e2e/test_ci_script.py.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from release_samples import HELLO_SPEC

from moorage.inventory import load_inventory

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "ci" / "moorage-deploy"
JENKINSFILE = REPO / "examples" / "hello" / "Jenkinsfile"
CI_DOC = REPO / "docs" / "ci.md"
CREDENTIALS = {"moorage-ssh-key": "sshUserPrivateKey", "moorage-vault-password": "file", "moorage-consul-token": "string"}


def groovy_code(text: str) -> str:
    """The Jenkinsfile without its comments and string literals (each string becomes '')."""
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"", "''", text)


def test_the_jenkinsfile_is_a_declarative_pipeline_whose_braces_balance() -> None:
    code = groovy_code(JENKINSFILE.read_text())
    depth = 0
    for character in code:
        depth += {"{": 1, "}": -1}.get(character, 0)
        assert depth >= 0, "a } closes nothing"
    assert depth == 0 and code.count("(") == code.count(")") and code.count("[") == code.count("]")
    assert code.lstrip().startswith("pipeline {")
    for block in ("agent any", "stages {", "post {", "always {"):
        assert block in code, block


def groovyc(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """Debian's groovyc (Groovy 2.4, the language of Jenkins' pipelines), on the JVM that runs ``java``."""
    java = Path(shutil.which("java") or "java").resolve()
    env = {**os.environ, "JAVA_HOME": str(java.parents[1])}
    return subprocess.run(["groovyc", "-d", str(out), str(source)], capture_output=True, text=True, env=env, timeout=300)


def test_the_jenkinsfile_compiles_as_groovy_and_a_broken_one_does_not(tmp_path: Path) -> None:
    source = tmp_path / "Jenkinsfile.groovy"
    source.write_text(JENKINSFILE.read_text())
    compiled = groovyc(source, tmp_path / "out")
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    assert (tmp_path / "out" / "Jenkinsfile.class").exists()
    source.write_text(JENKINSFILE.read_text().replace("                branch 'main'\n            }", "                branch 'main'\n", 1))
    broken = groovyc(source, tmp_path / "broken")
    assert broken.returncode != 0 and "expecting '}'" in broken.stdout + broken.stderr


def test_every_stage_calls_the_script_and_deploy_runs_on_main_only() -> None:
    text = JENKINSFILE.read_text()
    stages = re.findall(r"stage\('(\w+)'\)", text)
    assert stages == ["Validate", "Plan", "Deploy"]
    assert re.findall(r"sh 'ci/moorage-deploy (\w+)'", text) == ["validate", "plan", "deploy"]
    deploy_stage = text[text.index("stage('Deploy')") :]
    assert re.search(r"when \{\s*branch 'main'\s*\}", deploy_stage)
    assert "MOORAGE_DEPLOY_BRANCH = 'main'" in text  # the script's own check agrees with the when
    assert "junit testResults: 'reports/moorage-deploy.xml'" in text and "MOORAGE_REPORTS = 'reports'" in text


def test_the_credentials_are_the_documented_ones_and_bind_what_the_script_reads() -> None:
    text, script, doc = JENKINSFILE.read_text(), SCRIPT.read_text(), CI_DOC.read_text()
    bound = dict(re.findall(r"(\w+)\(credentialsId: '([\w-]+)'", text))
    assert {credential: kind for kind, credential in bound.items()} == CREDENTIALS
    for credential in CREDENTIALS:
        assert f"`{credential}`" in doc, f"docs/ci.md does not list {credential}"
    variables = re.findall(r"(?:keyFileVariable|usernameVariable|variable): '(\w+)'", text)
    assert sorted(set(variables)) == ["ANSIBLE_PRIVATE_KEY_FILE", "ANSIBLE_REMOTE_USER", "CONSUL_HTTP_TOKEN", "MOORAGE_VAULT_PASSWORD_FILE"]
    for variable in [*variables, *re.findall(r"(MOORAGE_\w+) = '", text)]:
        assert f"#   {variable} " in script, f"ci/moorage-deploy does not document {variable}"
        assert f"`{variable}`" in doc, f"docs/ci.md does not list {variable}"


# --- the script, for real, without a terminal ---------------------------------------------------


def service_repo(tmp_path: Path, spec_text: str) -> Path:
    repo = tmp_path / "service"
    (repo / "ci").mkdir(parents=True)
    shutil.copy2(SCRIPT, repo / "ci" / "moorage-deploy")
    shutil.copytree(HELLO_SPEC.parent / "app", repo / "app")
    (repo / "moorage.yml").write_text(spec_text)
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.test"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-q", "-m", "first"], check=True)
    return repo


def script(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("MOORAGE_", "BRANCH_NAME", "GIT_"))}
    environment |= {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env}
    return subprocess.run(
        ["ci/moorage-deploy", *args], cwd=repo, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120, start_new_session=True,
    )  # fmt: skip


def test_a_bad_spec_stops_at_validate_with_exit_2(tmp_path: Path) -> None:
    repo = service_repo(tmp_path, HELLO_SPEC.read_text().replace("replicas: 3", "replicas: three"))
    run = script(repo, "all", BRANCH_NAME="main")
    assert run.returncode == 2, run.stderr
    assert "moorage.yml:" in run.stderr and "spec.replicas" in run.stderr
    assert "== plan" not in run.stderr


def test_another_branch_skips_the_deploy_and_a_wrong_step_is_exit_64(tmp_path: Path) -> None:
    repo = service_repo(tmp_path, HELLO_SPEC.read_text())
    skipped = script(repo, "deploy", BRANCH_NAME="feature-x")
    assert skipped.returncode == 0, skipped.stderr
    assert "deploy skipped: branch 'feature-x' is not the deploy branch 'main'" in skipped.stderr
    from_git = script(repo, "deploy", GIT_BRANCH="origin/release", MOORAGE_DEPLOY_BRANCH="main")
    assert "branch 'release' is not the deploy branch" in from_git.stderr
    wrong = script(repo, "ship")
    assert wrong.returncode == 64 and "unknown step 'ship'" in wrong.stderr
    secrets_without_password = script(repo, "deploy", BRANCH_NAME="main", MOORAGE_SECRETS="secrets.vault.yml")
    assert secrets_without_password.returncode == 64 and "MOORAGE_VAULT_PASSWORD_FILE" in secrets_without_password.stderr


# --- the SSH key and user a CI job hands in, the way Ansible takes them ---------------------------


def test_the_ssh_key_and_user_come_from_ansibles_variables_when_the_inventory_names_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[app]\napp1 ansible_host=10.66.0.11\napp2 ansible_host=10.66.0.12 ansible_user=deploy ansible_ssh_private_key_file=/k2\n"
    )
    monkeypatch.setenv("ANSIBLE_PRIVATE_KEY_FILE", "/run/jenkins/key")
    monkeypatch.setenv("ANSIBLE_REMOTE_USER", "jenkins")
    loaded = load_inventory(inventory)
    assert (loaded.ssh_target("app1").private_key, loaded.ssh_target("app1").user) == ("/run/jenkins/key", "jenkins")
    assert (loaded.ssh_target("app2").private_key, loaded.ssh_target("app2").user) == ("/k2", "deploy")  # the inventory wins
    monkeypatch.delenv("ANSIBLE_PRIVATE_KEY_FILE")
    monkeypatch.delenv("ANSIBLE_REMOTE_USER")
    assert (load_inventory(inventory).ssh_target("app1").private_key, load_inventory(inventory).ssh_target("app1").user) == (None, None)


# --- nothing asks: a CI job has no one to answer -------------------------------------------------


def test_no_command_asks_unless_stdin_is_a_terminal() -> None:
    """A prompt only where the same function checks ``isatty()`` first (``remove`` asks on a terminal and
    refuses without ``--yes`` elsewhere: tests/unit/test_remove_cli.py); everywhere else, nothing asks."""
    asking = {"prompt", "confirm", "input", "getpass", "edit", "pause"}
    found = []
    for path in sorted((REPO / "src" / "moorage").rglob("*.py")):
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            names = {node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "") for node in ast.walk(function)}
            for node in ast.walk(function):
                if isinstance(node, ast.Call):
                    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                    if name in asking and "isatty" not in names:
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}()")
    assert found == []
