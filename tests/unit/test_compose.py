"""`moorage render --target compose` and `moorage dev`, checked by the Compose tool itself.

Debian 12's docker-compose 1.29 validates and normalizes a Compose file (``config``) without a
Docker engine; none runs on this machine, so starting the project is left to the lab's Docker host.
The generated entrypoint runs here for real with /bin/sh and setpriv (as root, like the container).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from notes_api_fixtures import NOTES_API, REPO, NotesApp, free_port, notes_api_artifact, session_cache

from moorage.build import Artifact
from moorage.targets import compose

__all__ = ["notes_api_artifact"]  # a fixture used by the tests below

EXAMPLES = REPO / "examples"


@pytest.fixture
def cache(notes_api_artifact: Artifact, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The session's build cache, where notes-api is already built."""
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(session_cache(tmp_path_factory)))
    monkeypatch.setenv("MOORAGE_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    return session_cache(tmp_path_factory)


def moorage(*arguments: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moorage", *arguments], capture_output=True, text=True, cwd=cwd, env=env or dict(os.environ), check=False
    )


def compose_config(compose_file: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """docker-compose's own validation; its normalized form (paths absolute, values as Compose reads them)."""
    result = subprocess.run(
        ["docker-compose", "--file", str(compose_file), "config"], capture_output=True, text=True, env=env or dict(os.environ), check=False
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = yaml.safe_load(result.stdout)
    return document


def hello_docker_spec(tmp_path: Path) -> Path:
    """examples/hello-docker beside a stand-in image.tar (the real one needs the lab's busybox .deb; render never reads it)."""
    spec = tmp_path / "hello-docker" / "moorage.yml"
    spec.parent.mkdir()
    shutil.copyfile(EXAMPLES / "hello-docker" / "moorage.yml", spec)
    (spec.parent / "image.tar").write_bytes(b"")
    return spec


def test_notes_api_renders_to_a_compose_file_that_compose_accepts(cache: Path, notes_api_artifact: Artifact, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = moorage("render", str(NOTES_API / "moorage.yml"), "--target", "compose", "--output-dir", str(out), "--version", "4")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {out / 'compose.yaml'}\n"
    config = compose_config(out / "compose.yaml")
    service = config["services"]["notes-api"]
    assert service["image"] == "notes-api:4"
    assert service["build"] == {"context": str(out / "build"), "args": {"BASE_IMAGE": "python:3.11-slim-bookworm"}}
    assert service["command"] == ["python3", "app.py", "--port", "8060"]
    assert service["ports"] == ["127.0.0.1:8060:8060/tcp"]
    assert service["environment"] == {
        "PORT": "8060",
        "MOORAGE_SERVICE": "notes-api",
        "MOORAGE_VERSION": "4",
        "MOORAGE_RELEASE": "4",
        "MOORAGE_INSTANCE": "notes-api-1",
        "DATA_DIR": "/var/lib/notes-api",
        "TOKEN_TTL_SECONDS": "3600",
        "DB_BUSY_TIMEOUT_SECONDS": "10",
        "STOP_TIMEOUT_SECONDS": "20",
        "MOORAGE_SECRETS": "JWT_SECRET",
    }
    assert service["secrets"] == [{"source": "JWT_SECRET", "target": "JWT_SECRET"}]
    assert config["secrets"] == {"JWT_SECRET": {"file": str(out / "secrets" / "JWT_SECRET")}}
    assert service["volumes"] == [{"type": "volume", "source": "data", "target": "/var/lib/notes-api"}]
    assert config["volumes"] == {"data": {}}
    assert service["healthcheck"] == {
        "test": ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8060/healthz', timeout=1)"],
        "interval": "2s",
        "timeout": "1s",
        "retries": 3,
        "start_period": "1m",
    }
    assert (service["restart"], service["stop_signal"], service["stop_grace_period"]) == ("on-failure", "SIGTERM", "30s")
    assert (service["mem_limit"], service["cpus"]) == (256 * 1024 * 1024, 0.5)
    assert service["labels"] == {"moorage.service": "notes-api", "moorage.routes": "notes.example.test/", "moorage.metrics": "/metrics"}
    # The build context: the built artifact, the entrypoint and a Dockerfile that puts them together.
    assert sorted(path.name for path in (out / "build").iterdir()) == ["Dockerfile", "artifact.tar.gz", "moorage-entrypoint"]
    assert (out / "build" / "artifact.tar.gz").read_bytes() == notes_api_artifact.path.read_bytes()
    dockerfile = (out / "build" / "Dockerfile").read_text().splitlines()
    assert dockerfile[2:] == [
        "ARG BASE_IMAGE=python:3.11-slim-bookworm",
        "FROM ${BASE_IMAGE}",
        "ADD artifact.tar.gz /srv/app/",
        "COPY moorage-entrypoint /usr/local/bin/moorage-entrypoint",
        "RUN mkdir -p /var/lib/notes-api && chown 10001:10001 /var/lib/notes-api",
        "WORKDIR /srv/app",
        'ENTRYPOINT ["/bin/sh", "/usr/local/bin/moorage-entrypoint"]',
    ]
    assert (out / "secrets").stat().st_mode & 0o777 == 0o700
    assert list((out / "secrets").iterdir()) == []  # render never has secret values


def test_hello_and_hello_docker_render_to_compose_files_that_compose_accepts(cache: Path, tmp_path: Path) -> None:
    hello_out, docker_out = tmp_path / "hello", tmp_path / "docker"
    assert moorage("render", str(EXAMPLES / "hello" / "moorage.yml"), "--target", "compose", "--output-dir", str(hello_out)).returncode == 0
    docker_spec = hello_docker_spec(tmp_path)
    result = moorage("render", str(docker_spec), "--target", "compose", "--output-dir", str(docker_out))
    assert result.returncode == 0, result.stderr

    hello = compose_config(hello_out / "compose.yaml")["services"]["hello"]
    assert hello["environment"]["GREETING"] == "hi"
    assert hello["image"] == "hello:dev"
    with tarfile.open(hello_out / "build" / "artifact.tar.gz") as archive:
        assert archive.getnames() == [".moorage-build.json", "app.py"]  # no requirements: nothing installed
    # Compose interpolates $VARIABLES from the caller's shell: the rendered file must not let it.
    hostile = dict(os.environ, MOORAGE_INSTANCE="FROM-THE-SHELL", PORT="1")
    config = compose_config(docker_out / "compose.yaml", env=hostile)
    docker = config["services"]["hello-docker"]
    assert "build" not in docker and "entrypoint" not in docker
    assert docker["image"] == "hello-busybox:1"
    assert docker["command"][:2] == ["/bin/sh", "-c"]
    script = docker["command"][2]
    assert "FROM-THE-SHELL" not in json.dumps(config)
    assert "busybox httpd -f -p 8090 -h /www" in script  # ${PORT} is the spec's placeholder: filled in
    assert "$$MOORAGE_INSTANCE" in script and "kill $$!" in script  # shell variables kept for the container's shell
    assert docker["healthcheck"]["test"] == [
        "CMD-SHELL",
        "wget -q -O /dev/null http://127.0.0.1:8090/healthz || curl -fsS -o /dev/null http://127.0.0.1:8090/healthz",
    ]
    assert docker["stop_grace_period"] == "10s" and docker["mem_limit"] == 64 * 1024 * 1024 and "cpus" not in docker


def test_printed_compose_file_points_at_a_build_context_in_the_cache(cache: Path, tmp_path: Path) -> None:
    result = moorage("render", str(NOTES_API / "moorage.yml"), "--target", "compose")

    assert result.returncode == 0, result.stderr
    (tmp_path / "compose.yaml").write_text(result.stdout)
    context = Path(compose_config(tmp_path / "compose.yaml")["services"]["notes-api"]["build"]["context"])
    assert context.is_relative_to(cache / "compose")
    assert sorted(path.name for path in context.iterdir()) == ["Dockerfile", "artifact.tar.gz", "moorage-entrypoint"]
    as_json = moorage("render", str(NOTES_API / "moorage.yml"), "--target", "compose", "--output", "json")
    assert json.loads(as_json.stdout) == yaml.safe_load(result.stdout)


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "run-secrets"
    directory.mkdir()
    (directory / "JWT_SECRET").write_text("s3cret value with spaces\n")
    (directory / "JWT_SECRET").chmod(0o600)
    return directory


def run_entrypoint(script: list[str], secrets_dir: Path, names: str, command: list[str]) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MOORAGE_SECRETS": names, "MOORAGE_SECRETS_DIR": str(secrets_dir)}
    return subprocess.run([*script, *command], capture_output=True, text=True, env=environment, check=False)


def test_the_entrypoint_exports_secrets_and_runs_the_command_unprivileged(tmp_path: Path, secrets_dir: Path) -> None:
    assert os.geteuid() == 0, "the entrypoint starts as root in the container and switches user with setpriv"
    script = tmp_path / compose.ENTRYPOINT_FILE
    script.write_text(compose.ENTRYPOINT_SCRIPT)
    probe = ["/bin/sh", "-c", 'echo "$(id -u):$(id -g):$(id -G):$JWT_SECRET"']

    ran = run_entrypoint(["/bin/sh", str(script)], secrets_dir, "JWT_SECRET", probe)

    assert (ran.returncode, ran.stdout) == (0, "10001:10001:10001:s3cret value with spaces\n")
    missing = run_entrypoint(["/bin/sh", str(script)], secrets_dir, "JWT_SECRET OTHER", probe)
    assert missing.returncode == 78
    assert missing.stderr.splitlines()[-1] == f"moorage-entrypoint: cannot read secret OTHER from {secrets_dir}/OTHER"
    assert missing.stdout == ""


def test_the_docker_runtimes_inline_entrypoint_exports_secrets(secrets_dir: Path) -> None:
    inline = ["/bin/sh", "-c", compose.INLINE_ENTRYPOINT, compose.ENTRYPOINT_FILE]
    ran = run_entrypoint(inline, secrets_dir, "JWT_SECRET", ["/bin/sh", "-c", 'echo "[$JWT_SECRET]"'])
    assert (ran.returncode, ran.stdout) == (0, "[s3cret value with spaces]\n")


def test_docker_runtime_with_secrets_runs_its_command_through_the_inline_entrypoint(cache: Path, tmp_path: Path) -> None:
    spec = hello_docker_spec(tmp_path)
    spec.write_text(spec.read_text().replace("  replicas: 2\n", "  replicas: 2\n  secrets: [API_TOKEN]\n"))
    out = tmp_path / "out"

    assert moorage("render", str(spec), "--target", "compose", "--output-dir", str(out)).returncode == 0

    service = compose_config(out / "compose.yaml")["services"]["hello-docker"]
    assert service["entrypoint"][:2] == ["/bin/sh", "-c"] and service["entrypoint"][3] == "moorage-entrypoint"
    assert service["environment"]["MOORAGE_SECRETS"] == "API_TOKEN"
    assert not (out / "build").exists()


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (
            lambda text: text.replace('"--port", "${PORT}"]', '"--port", "${PORT}", "--key", "${JWT_SECRET}"]'),
            "spec.command: ${JWT_SECRET} is a secret: the compose target passes secrets in the environment only",
        ),
        (
            lambda text: text.replace("artifact: ./app", "artifact: ./app.zip"),
            "spec.artifact: ./app.zip: the compose target needs a directory or a tarball (.tar, .tar.gz, .tgz)",
        ),
    ],
    ids=["secret-in-command", "zip-artifact"],
)
def test_what_compose_cannot_express_is_one_line_and_exit_2(cache: Path, tmp_path: Path, edit: Any, why: str) -> None:
    shutil.copytree(NOTES_API, tmp_path / "notes-api")
    (tmp_path / "notes-api" / "app.zip").write_bytes(b"")
    spec = tmp_path / "notes-api" / "moorage.yml"
    spec.write_text(edit(spec.read_text()))

    result = moorage("render", str(spec), "--target", "compose")

    assert (result.returncode, result.stderr.splitlines()[-1], result.stdout) == (2, f"moorage: error: {why}", "")


def test_docker_runtime_with_secrets_needs_a_command(cache: Path, tmp_path: Path) -> None:
    spec = hello_docker_spec(tmp_path)
    text = spec.read_text()
    spec.write_text(
        text[: text.index("  command:")] + text[text.index("  replicas:") :].replace("  replicas: 2\n", "  replicas: 2\n  secrets: [T]\n")
    )
    result = moorage("render", str(spec), "--target", "compose")
    assert result.returncode == 2
    assert result.stderr == (
        "moorage: error: spec.command: the compose target needs it with runtime docker and secrets "
        "(an entrypoint that reads the secret files runs it)\n"
    )


def test_dev_up_needs_every_secret_before_touching_anything(cache: Path, tmp_path: Path) -> None:
    partial = tmp_path / "secrets.yml"
    partial.write_text("OTHER: x\n")
    for arguments, why in (
        ([], "spec.secrets: JWT_SECRET need values: pass --secrets FILE (YAML NAME: value, may be an Ansible Vault)"),
        (["--secrets", str(partial)], f"--secrets {partial}: no value for JWT_SECRET"),
        (["--secrets", str(tmp_path / "nope.yml")], f"--secrets {tmp_path / 'nope.yml'}: No such file or directory"),
    ):
        result = moorage("dev", "up", str(NOTES_API / "moorage.yml"), *arguments)
        assert (result.returncode, result.stderr) == (2, f"moorage: error: {why}\n")
    assert not (Path(os.environ["MOORAGE_STATE_DIR"]) / "dev").exists()


def test_dev_up_reads_a_vaulted_secrets_file(cache: Path, tmp_path: Path) -> None:
    from ansible.parsing.vault import VaultLib, VaultSecret

    from moorage.deploy.secret_values import read_secret_values
    from moorage.spec.loader import load_spec

    password = tmp_path / "vault-password"
    password.write_text("correct horse\n")
    vault = tmp_path / "secrets.yml"
    vault.write_bytes(VaultLib([("default", VaultSecret(b"correct horse"))]).encrypt(b"JWT_SECRET: from the vault 0123456789abcdef\n"))
    service = load_spec(NOTES_API / "moorage.yml").model

    assert read_secret_values(service.spec.secrets, vault, password) == {"JWT_SECRET": "from the vault 0123456789abcdef"}
    locked = moorage("dev", "up", str(NOTES_API / "moorage.yml"), "--secrets", str(vault))
    assert (locked.returncode, locked.stderr) == (2, f"moorage: error: --secrets {vault} is an Ansible Vault: pass --vault-password-file\n")
    password.write_text("wrong\n")
    wrong = moorage("dev", "up", str(NOTES_API / "moorage.yml"), "--secrets", str(vault), "--vault-password-file", str(password))
    assert wrong.returncode == 2
    assert wrong.stderr.startswith(f"moorage: error: --secrets {vault}: cannot decrypt: ") and wrong.stderr.count("\n") == 1


def test_dev_up_without_a_docker_engine_is_one_line_and_exit_1(cache: Path, tmp_path: Path) -> None:
    plain = tmp_path / "secrets.yml"
    plain.write_text("JWT_SECRET: a value of at least thirty-two characters\n")

    result = moorage("dev", "up", str(NOTES_API / "moorage.yml"), "--secrets", str(plain), "--output", "json")

    assert result.returncode == 1
    assert result.stderr == ""
    answer = json.loads(result.stdout)
    assert answer["ok"] is False and answer["error"].startswith("no Docker engine answers")
    assert not (Path(os.environ["MOORAGE_STATE_DIR"]) / "dev").exists()  # no secret was written


def test_write_secret_files_are_0600_in_a_0700_directory(tmp_path: Path) -> None:
    compose.write_secret_files(tmp_path, {"JWT_SECRET": "v1"})
    compose.write_secret_files(tmp_path, {"JWT_SECRET": "v2"})
    secret = tmp_path / "secrets" / "JWT_SECRET"
    assert secret.read_text() == "v2"
    assert (secret.stat().st_mode & 0o777, secret.parent.stat().st_mode & 0o777) == (0o600, 0o700)


def test_dev_down_without_a_project_says_so_and_exits_0(cache: Path) -> None:
    result = moorage("dev", "down", str(EXAMPLES / "hello" / "moorage.yml"), "--output", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"event": "result", "ok": True, "service": "hello", "stopped": False, "volumes_removed": False}


def test_the_rendered_service_runs_as_its_container_would(cache: Path, tmp_path: Path) -> None:
    """No Docker engine here: the container's steps by hand, from what Compose read out of the rendered file.

    The build context's tarball unpacked (the Dockerfile's ADD), the entrypoint started as root with the
    service's environment and command (Debian's python3, as in a base image made by docker import), the
    secret as a file; then the rendered health check's own command must pass.
    """
    out = tmp_path / "out"
    assert moorage("render", str(NOTES_API / "moorage.yml"), "--target", "compose", "--output-dir", str(out)).returncode == 0
    compose.write_secret_files(out, {"JWT_SECRET": "a signing key of at least thirty-two characters"})
    service = compose_config(out / "compose.yaml")["services"]["notes-api"]
    # World-readable like an image's /srv/app (pytest's own temporary directories are root's only).
    root = Path(tempfile.mkdtemp(prefix="moorage-compose-"))
    try:
        root.chmod(0o755)
        app_dir, volume = root / "srv-app", root / "volume"
        with tarfile.open(out / "build" / "artifact.tar.gz") as archive:
            archive.extractall(app_dir, filter="data")
        volume.mkdir()
        os.chown(volume, compose.RUN_AS_ID, compose.RUN_AS_ID)  # the Dockerfile's RUN chown
        port = str(free_port())
        environment = service["environment"] | {"PORT": port, "DATA_DIR": str(volume), "MOORAGE_SECRETS_DIR": str(out / "secrets")}
        command = [port if argument == "8060" else argument for argument in service["command"]]
        process = subprocess.Popen(
            ["/bin/sh", str(out / "build" / compose.ENTRYPOINT_FILE), *command],
            cwd=app_dir,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", **environment},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        app = NotesApp(process, int(port))
        try:
            app.wait_for_line("listening on")
            health = [argument.replace(":8060/", f":{port}/") for argument in service["healthcheck"]["test"][1:]]
            assert subprocess.run(health, env={"PATH": "/usr/bin:/bin"}, check=False).returncode == 0
            token = app.signup_and_login("ann")
            assert app.call("POST", "/notes", {"text": "in the volume"}, token=token).status == 201
            assert (volume / "notes.sqlite3").stat().st_uid == compose.RUN_AS_ID  # written as the unprivileged user
        finally:
            process.send_signal(signal.SIGTERM)  # the rendered stop_signal
            assert process.wait(timeout=30) == 0
    finally:
        shutil.rmtree(root)
