"""The host agents as the roles install them: standard library only, runnable under ``python3 -I``, from a checkout and a wheel.

The layout comes from the agent role itself (its install step run on this machine, see
``agent_layout``); each agent runs there the way its systemd unit runs it, with Debian's
``/usr/bin/python3 -I`` (no site-packages of ours, no current directory, no PYTHON* variables).
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_layout import AGENTS, HOST_PYTHON, agent_command, agents_root, install_agents  # noqa: F401 -- agents_root: the session fixture
from consul_dev import ConsulDev, start_consul_dev
from ingress_fixtures import backends, register
from waiting import eventually, stop_process

import moorage.agents

PACKAGE = Path(moorage.agents.__file__).parent
PACKAGE_FILES = sorted(path.name for path in PACKAGE.glob("*.py"))
REPOSITORY = Path(__file__).resolve().parents[2]

# Imports every module of the package, then names each module it loaded that is neither the
# standard library nor the package itself (what site loaded at start-up is not the package's doing).
FOREIGN_MODULES = """\
import importlib, sys
before = set(sys.modules)
sys.path.insert(0, sys.argv[1])
for name in sys.argv[2:]:
    importlib.import_module("moorage.agents." + name)
loaded = set(sys.modules) - before
for name in sorted(name for name in loaded if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "moorage"):
    print("foreign module", name)
print("agents from", sys.modules["moorage.agents"].__file__)
"""


@pytest.fixture(scope="module")
def consul() -> Iterator[ConsulDev]:
    with start_consul_dev(acl=True) as agent:
        yield agent


def installed_files(agent_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in (agent_dir / "moorage" / "agents").glob("*.py")}


def test_the_role_installs_exactly_the_package_for_each_agent(agents_root: Path) -> None:  # noqa: F811
    for name in AGENTS:
        agent_dir = agents_root / name
        assert installed_files(agent_dir) == {file: (PACKAGE / file).read_bytes() for file in PACKAGE_FILES}
        assert (agent_dir / "__main__.py").read_bytes() == (PACKAGE / "__main__.py").read_bytes()


def test_every_module_of_the_package_loads_under_isolated_debian_python_with_the_standard_library_only(agents_root: Path) -> None:  # noqa: F811
    modules = [name.removesuffix(".py") for name in PACKAGE_FILES if name != "__main__.py"]

    result = subprocess.run(
        [HOST_PYTHON, "-I", "-c", FOREIGN_MODULES, str(agents_root / "ingress"), *modules],
        capture_output=True,
        text=True,
        env={},
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"agents from {agents_root / 'ingress' / 'moorage' / 'agents' / '__init__.py'}"]


@pytest.mark.parametrize("command", ["ingress", "prometheus-targets", "health-gate"])
def test_each_agent_runs_under_python3_dash_I_from_the_installed_layout(agents_root: Path, command: str) -> None:  # noqa: F811
    result = subprocess.run(
        [HOST_PYTHON, "-I", str(agents_root / "ingress"), command, "--help"], capture_output=True, text=True, env={}, check=False
    )

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"usage: moorage-{command}")


def test_the_health_gate_agent_passes_a_healthy_instance_and_refuses_a_dead_one(agents_root: Path, consul: ConsulDev) -> None:  # noqa: F811
    assert consul.management_token
    env = {"CONSUL_HTTP_TOKEN": consul.management_token}
    with backends("gated") as (backend,):
        service_id = register(consul, "gated", backend, [])
        passed = subprocess.run(
            [
                *agent_command(agents_root, "ingress")[:3],
                "health-gate",
                service_id,
                "--min",
                "1",
                "--deadline",
                "30",
                "--consul",
                consul.url,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        backend.stop()
        refused = subprocess.run(
            [
                *agent_command(agents_root, "ingress")[:3],
                "health-gate",
                service_id,
                "--min",
                "5",
                "--deadline",
                "4",
                "--consul",
                consul.url,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )

    assert (passed.returncode, passed.stdout) == (0, f"{service_id}: passing for 1s\n")
    assert refused.returncode == 1
    assert refused.stdout.startswith(f"{service_id}: not healthy for 5s within 4s (last check: critical: ")


def test_the_target_bridge_writes_the_scraped_instances_and_follows_changes(agents_root: Path, consul: ConsulDev, tmp_path: Path) -> None:  # noqa: F811
    assert consul.management_token
    token_file = tmp_path / "consul.token"
    token_file.write_text(consul.management_token + "\n")
    output = tmp_path / "targets.json"
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps({"consul_addr": consul.url, "consul_token_file": str(token_file), "output": str(output), "quiet_seconds": 0.2})
    )
    with backends("scraped-a", "scraped-b") as (first, second):
        register(consul, "scraped", first, ["metrics"])
        bridge = subprocess.Popen(
            agent_command(agents_root, "prometheus-targets", "--config", str(settings)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={},
        )
        try:

            def targets() -> set[str] | None:
                if not output.exists():
                    return None
                return {target for group in json.loads(output.read_text()) for target in group["targets"]}

            assert eventually(targets, within=15, every=0.2, what="the first targets") == {f"127.0.0.1:{first.port}"}
            register(consul, "scraped", second, ["metrics"])
            eventually(
                lambda: targets() == {f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"} or None,
                within=15,
                every=0.2,
                what="the new instance",
            )
            assert bridge.poll() is None
        finally:
            stop_process(bridge)


def test_a_built_wheel_in_a_fresh_venv_carries_the_collection_and_its_roles_install_the_agents(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPOSITORY)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = wheels.glob("moorage-*.whl")
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=True)
    installed = subprocess.run(
        [str(fresh / "bin" / "pip"), "install", "-q", "--no-deps", str(wheel)], capture_output=True, text=True, check=False
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    asked = subprocess.run(
        [str(fresh / "bin" / "python"), "-c", "from moorage import paths; print(paths.collections_dir()); print(paths.ansible_root())"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    collections, ansible_root = (Path(line) for line in asked.stdout.split())
    assert collections.is_relative_to(fresh) and ansible_root == collections / "ansible_collections" / "moorage" / "platform"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {f"moorage/agents/{name}" for name in PACKAGE_FILES} <= names
    for module_util in ("consul.py", "routes.py", "health_gate.py"):  # links in the checkout, copies in the wheel
        copy = ansible_root / "plugins" / "module_utils" / module_util
        assert not copy.is_symlink() and copy.read_bytes() == (PACKAGE / module_util).read_bytes()

    result = install_agents(tmp_path / "lib", str(collections))

    assert result.returncode == 0, result.stdout[-3000:]
    assert installed_files(tmp_path / "lib" / "ingress") == {file: (PACKAGE / file).read_bytes() for file in PACKAGE_FILES}
    ran = subprocess.run(agent_command(tmp_path / "lib", "ingress", "--help"), capture_output=True, text=True, env={}, check=False)
    assert ran.returncode == 0, ran.stderr
