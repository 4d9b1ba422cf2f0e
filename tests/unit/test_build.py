"""`moorage build` as a user runs it: a tarball that runs on Debian's python3 with nothing else installed."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from notes_api_fixtures import (
    HOST_PYTHON,
    JWT_SECRET,
    NOTES_API,
    REPO,
    NotesApp,
    data_dir,
    free_port,
    notes_api_artifact,
    notes_api_release,
    session_cache,
    start_process,
)

from moorage.build import DEFAULT_MTIME, Artifact, build_artifact, ensure_artifact

__all__ = ["data_dir", "notes_api_artifact", "notes_api_release"]  # fixtures used by the tests below

PINNED = ["PyJWT==2.15.1", "passlib==1.7.4", "tornado==6.6.1"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(directory))
    return directory


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    """The moorage command, in the current directory and environment."""
    return subprocess.run([sys.executable, "-m", "moorage", *arguments], capture_output=True, text=True, check=False)


def result_line(stdout: str) -> dict[str, Any]:
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert lines[-1]["event"] == "result"
    return lines[-1]


def test_build_reports_a_tarball_with_its_digest_and_dependencies_then_reuses_it(cache: Path) -> None:
    first = run("build", str(NOTES_API / "moorage.yml"), "--output", "json")
    again = run("build", str(NOTES_API / "moorage.yml"), "--output", "json")

    assert first.returncode == 0, first.stderr
    built, cached = result_line(first.stdout), result_line(again.stdout)
    path = Path(built["path"])
    assert path.is_relative_to(cache)
    assert path.name == f"notes-api-{built['version']}.tar.gz"
    assert built["digest"] == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert built["dependencies"] == PINNED
    assert sorted(item.name for item in path.parent.iterdir()) == ["artifact.tar.gz", "build.json", path.name]  # nothing else kept
    assert built["python"] == "CPython 3.11 on manylinux_2_36_x86_64"
    assert (built["ok"], built["cached"], cached["cached"]) == (True, False, True)
    assert {key: value for key, value in cached.items() if key != "cached"} == {
        key: value for key, value in built.items() if key != "cached"
    }


def test_build_text_names_the_file_digest_and_dependencies(cache: Path, tmp_path: Path) -> None:
    result = run("build", str(NOTES_API / "moorage.yml"), "--version", "7", "--output-dir", str(tmp_path / "out"))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    copy = tmp_path / "out" / "notes-api-7.tar.gz"
    assert lines[0] == f"notes-api 7: {copy} (built)"
    assert lines[1].startswith(f"  sha256:{hashlib.sha256(copy.read_bytes()).hexdigest()}, {copy.stat().st_size} bytes, for CPython 3.11")
    assert lines[2:] == [f"  {pin}" for pin in PINNED]
    assert "installing" in result.stderr and "requirements.txt" in result.stderr


def test_the_artifact_runs_on_debians_python_with_its_own_packages(notes_api_release: Path, tmp_path: Path) -> None:
    release = notes_api_release  # built by moorage.build, unpacked as the service role unpacks it

    # Debian's python3 has no tornado or passlib of its own: only the artifact can bring them.
    for module in ("tornado", "passlib"):
        bare = subprocess.run([str(HOST_PYTHON), "-I", "-c", f"import {module}"], capture_output=True, text=True, cwd=tmp_path)
        assert bare.returncode == 1 and "ModuleNotFoundError" in bare.stderr
    # In the release directory (where the unit starts the command) every import comes from the artifact,
    # also PyJWT, whose older Debian package (python3-jwt) it shadows.
    probe = (
        "import json, tornado, passlib, jwt; "
        "print(json.dumps({m.__name__: [m.__file__, getattr(m, '__version__', '')] for m in (tornado, passlib, jwt)}))"
    )
    origins = json.loads(subprocess.check_output([str(HOST_PYTHON), "-E", "-s", "-c", probe], cwd=release, env={"PATH": "/usr/bin:/bin"}))
    for name, (file, _) in origins.items():
        assert Path(file).is_relative_to(release), name
    assert origins["jwt"][1] == "2.15.1"

    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    process = start_process(release, {"PORT": str(port), "DATA_DIR": str(data), "JWT_SECRET": JWT_SECRET, "MOORAGE_VERSION": "b1"}, [])
    app = NotesApp(process, port)
    try:
        app.wait_for_line("listening on")
        token = app.signup_and_login("ann")
        assert app.call("POST", "/notes", {"text": "from the tarball"}, token=token).status == 201
        assert app.call("GET", "/healthz").headers["X-Version"] == "b1"
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def test_the_tarball_is_reproducible_sorted_and_free_of_bytecode(notes_api_artifact: Artifact, tmp_path: Path) -> None:
    source = tmp_path / "elsewhere" / "app"
    shutil.copytree(NOTES_API / "app", source)
    (source / "__pycache__").mkdir(exist_ok=True)
    (source / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"stale bytecode")
    (source / "stray.pyc").write_bytes(b"stale bytecode")
    for path in source.iterdir():
        path.touch()  # other times than the checkout's

    original = notes_api_artifact  # from the checkout, in another cache
    copy = build_artifact("notes-api", source, cache_dir=tmp_path / "cache")

    assert copy.digest == original.digest
    assert copy.path.read_bytes() == original.path.read_bytes()
    with tarfile.open(original.path) as archive:
        members = archive.getmembers()
        build_info = archive.extractfile(".moorage-build.json").read()  # type: ignore[union-attr]
    names = [member.name for member in members]
    assert names == sorted(names)
    assert {"app.py", "requirements.txt", ".moorage-build.json", "tornado/web.py", "jwt/api_jwt.py"} <= set(names)
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc") or name.startswith(("/", "bin/"))]
    assert {(member.mtime, member.uid, member.gid) for member in members} == {(DEFAULT_MTIME, 0, 0)}
    assert {member.mode for member in members} <= {0o644, 0o755}
    assert build_info == (
        json.dumps({"format": 1, "python": "CPython 3.11 on manylinux_2_36_x86_64", "dependencies": PINNED}, indent=2).encode() + b"\n"
    )


def test_a_changed_source_is_a_new_build_and_a_version_only_renames(tmp_path: Path) -> None:
    source = tmp_path / "app"
    source.mkdir()
    (source / "app.py").write_text("print('one')\n")
    cache = tmp_path / "cache"

    first = build_artifact("tiny", source, cache_dir=cache)
    named = build_artifact("tiny", source, version="1.0", cache_dir=cache)
    (source / "app.py").write_text("print('two')\n")
    changed = build_artifact("tiny", source, cache_dir=cache)

    assert (named.path.name, named.digest, named.cached) == ("tiny-1.0.tar.gz", first.digest, True)
    assert changed.version != first.version and changed.digest != first.digest and not changed.cached
    with tarfile.open(changed.path) as archive:
        assert archive.getnames() == [".moorage-build.json", "app.py"]  # no requirements: the directory as it is
        assert archive.extractfile("app.py").read() == b"print('two')\n"  # type: ignore[union-attr]


def test_ensure_artifact_builds_only_a_directory_with_requirements(
    notes_api_artifact: Artifact, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(session_cache(tmp_path_factory)))
    hello = REPO / "examples" / "hello" / "app"
    assert ensure_artifact("hello", hello) == hello  # shipped as it is
    shipped = ensure_artifact("notes-api", NOTES_API / "app", version="9")
    assert shipped == notes_api_artifact.path.with_name("notes-api-9.tar.gz")
    assert shipped.read_bytes() == notes_api_artifact.path.read_bytes()


def test_a_requirement_pip_cannot_install_is_one_line_and_exit_1(spec_dir: Path, valid_spec_text: str, cache: Path) -> None:
    # --no-index: pip finds nothing, without asking any index.
    (spec_dir / "app" / "requirements.txt").write_text("--no-index\ntornado==6.6.1\n")
    Path("moorage.yml").write_text(valid_spec_text)

    result = run("build", "moorage.yml")

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"moorage: error: {spec_dir / 'app' / 'requirements.txt'}: pip could not install it for CPython 3.11 on manylinux_2_36_x86_64: "
        "ERROR: Could not find a version that satisfies the requirement tornado==6.6.1 (from versions: none)"
    )
    assert "Traceback" not in result.stderr
    assert not list(cache.rglob("*.tar.gz"))


def test_a_file_named_like_a_dependency_is_refused(spec_dir: Path, valid_spec_text: str, cache: Path) -> None:
    (spec_dir / "app" / "requirements.txt").write_text("passlib==1.7.4\n")
    (spec_dir / "app" / "passlib").mkdir()
    (spec_dir / "app" / "passlib" / "__init__.py").write_text("")
    Path("moorage.yml").write_text(valid_spec_text)

    result = run("build", "moorage.yml")

    assert result.returncode == 2
    clash = spec_dir / "app" / "passlib"
    assert (
        result.stderr.splitlines()[-1]
        == f"moorage: error: {clash}: a file of the artifact has the name of an installed dependency's passlib"
    )
    assert not list(cache.rglob("*.tar.gz"))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (
            lambda text: text.replace("runtime: systemd", "runtime: docker").replace("artifact: ./app", "image: hello:1"),
            "moorage.yml: spec.runtime: docker: the image is the artifact (build it with docker build)",
        ),
        (
            lambda text: text.replace("artifact: ./app", "artifact: ./app.tar.gz"),
            "moorage.yml: spec.artifact: ./app.tar.gz is a file, already built (moorage build takes a directory)",
        ),
    ],
    ids=["docker", "tarball"],
)
def test_nothing_to_build_is_one_line_and_exit_2(spec_dir: Path, valid_spec_text: str, cache: Path, change: Any, why: str) -> None:
    (spec_dir / "app.tar.gz").write_bytes(b"")
    Path("moorage.yml").write_text(change(valid_spec_text))

    result = run("build", "moorage.yml")

    assert (result.returncode, result.stderr) == (2, f"moorage: error: {why}\n")


def test_bad_version_and_platform_are_one_line_and_exit_2(cache: Path) -> None:
    for arguments, why in (
        (["--version", "1 0"], "version '1 0': letters, digits, '.', '_', '+' and '-' only (it names a file)"),
        (["--platform", "linux"], "platform 'linux': expected manylinux_GLIBCMAJOR_GLIBCMINOR_ARCH, e.g. manylinux_2_36_x86_64"),
        (["--python-version", "3"], "python version '3': expected 3.N, e.g. 3.11"),
    ):
        result = run("build", str(NOTES_API / "moorage.yml"), *arguments)
        assert (result.returncode, result.stderr) == (2, f"moorage: error: {why}\n")
