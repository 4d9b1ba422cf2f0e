"""What moorage needs is declared where pip and ansible-galaxy read it, and requirements.lock pins it with hashes.

- requirements.lock: every entry pinned ``==`` with its sha256 hashes (``make setup`` installs it with
  ``--require-hashes``), and every requirement of pyproject.toml (runtime, test and dev) pinned there
  at a version it allows (``make lock`` regenerates it).
- The collections the roles, playbooks and plugins use beyond ansible.builtin are named in galaxy.yml's
  ``dependencies`` and come with the ``ansible`` package that pyproject.toml requires, at versions in
  the ranges galaxy.yml names; the built collection installs without Ansible Galaxy.
- Every third-party module src/moorage imports is in ``[project.dependencies]``, every runtime
  dependency is used, and what tests/ and bench/ import is there or in the ``test`` extra.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator
from functools import cache
from importlib.metadata import distribution, packages_distributions
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
ANSIBLE_CONTENT = ("roles", "playbooks", "plugins", "molecule", "meta")
# Collections that need no declaration: Ansible's own (ansible-core) and this repository's.
OWN_COLLECTIONS = {"ansible.builtin", "moorage.platform"}
# Runtime dependencies that src/moorage does not import, and why they are there.
NOT_IMPORTED = {"ansible": "the collections the roles use (galaxy.yml's dependencies)"}

LOCK_ENTRY = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)(?P<options>(?:\s+--hash=sha256:[0-9a-f]{64})*)"
)
NAME = r"[a-z_][a-z0-9_]*"
FQCN = re.compile(rf"(?:group/)?({NAME}\.{NAME})\.{NAME}")
DOTTED = re.compile(rf"(?<![\w.])({NAME}\.{NAME})\.{NAME}(?!\w)")
# Where a Jinja expression names a plugin: a filter, a test, a lookup, map('...'), selectattr('attr', '...').
PLUGIN_IN_JINJA = re.compile(
    rf"""(?:\|\s*|\bis\s+(?:not\s+)?|\b(?:lookup|query|q|map|select|reject)\(\s*['"]|\b(?:selectattr|rejectattr)\(\s*['"][^'"]*['"]\s*,\s*['"])({NAME}\.{NAME})\.{NAME}\b"""
)


def requirement_names(requirements: Iterable[str]) -> set[str]:
    return {canonicalize_name(Requirement(requirement).name) for requirement in requirements}


def lock_entries(text: str) -> Iterator[str]:
    """The lock's requirement lines, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    yield from (entry.strip() for entry in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines() if entry.strip())


def lock_pins(text: str) -> dict[str, str]:
    return {canonicalize_name(match["name"]): match["version"] for entry in lock_entries(text) if (match := LOCK_ENTRY.fullmatch(entry))}


def lock_problems(text: str, requirements: Iterable[str]) -> list[str]:
    """What keeps ``pip install --require-hashes -r LOCK`` from installing exactly what pyproject.toml asks for."""
    problems = [
        f"not pinned with == and sha256 hashes: {entry[:80]}"
        for entry in lock_entries(text)
        if not ((match := LOCK_ENTRY.fullmatch(entry)) and match["options"])
    ]
    pins = lock_pins(text)
    for requirement in map(Requirement, requirements):
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement.name} is not in the lock")
        elif not requirement.specifier.contains(pin, prereleases=True):
            problems.append(f"{requirement.name}=={pin} is outside {requirement}")
    return problems


def all_requirements() -> list[str]:
    return [*PROJECT["dependencies"], *(requirement for extra in PROJECT["optional-dependencies"].values() for requirement in extra)]


def test_requirements_lock_pins_every_declared_package_with_hashes() -> None:
    text = (REPO / "requirements.lock").read_text()
    assert lock_problems(text, all_requirements()) == []
    assert len(lock_pins(text)) > len(all_requirements())  # the dependencies' own dependencies are pinned too


def test_a_lock_without_hashes_or_behind_pyproject_is_caught() -> None:
    plain = "requests==2.34.2\nclick>=8\n"
    assert lock_problems(plain, ["requests>=2.31", "click>=8.1", "rich>=13"]) == [
        "not pinned with == and sha256 hashes: requests==2.34.2",
        "not pinned with == and sha256 hashes: click>=8",
        "click is not in the lock",
        "rich is not in the lock",
    ]
    hashed = "requests==2.30.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via moorage\n"
    assert lock_problems(hashed, ["requests>=2.31"]) == ["requests==2.30.0 is outside requests>=2.31"]


class AnsibleYamlLoader(yaml.SafeLoader):
    """YAML as Ansible writes it: tagged values (``!vault``, ``!unsafe``) read as their plain text."""


def tagged_value(loader: yaml.SafeLoader, _tag: str, node: yaml.Node) -> Any:
    return loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None


AnsibleYamlLoader.add_multi_constructor("!", tagged_value)


def strings_and_keys(node: Any) -> Iterator[tuple[str, bool]]:
    """Every mapping key (True) and string value (False) of a YAML document, prose (descriptions) left out."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key), True
            if key not in {"description", "short_description", "notes"}:
                yield from strings_and_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_and_keys(item)
    elif isinstance(node, str):
        yield node, False


def collections_in_text(text: str, known: set[str]) -> set[str]:
    """Collections a Jinja text names: as a filter, test or lookup, or by a plugin's FQCN of a collection in ``known``."""
    named = {match[1] for match in PLUGIN_IN_JINJA.finditer(text)}
    return named | {match[1] for match in DOTTED.finditer(text) if match[1] in known}


def collections_used(paths: Iterable[Path], known: set[str]) -> dict[str, set[str]]:
    """Collection -> the files that use it: modules (task keys, module_defaults groups), roles, filters,
    tests, lookups and callbacks in YAML and templates; ansible_collections imports in plugins."""
    used: dict[str, set[str]] = {}
    for path in paths:
        found: set[str] = set()
        if path.suffix in {".yml", ".yaml"}:
            for document in yaml.load_all(path.read_text(), Loader=AnsibleYamlLoader):
                for text, is_key in strings_and_keys(document):
                    if is_key and (match := FQCN.fullmatch(text)):
                        found.add(match[1])
                    elif not is_key:
                        found |= collections_in_text(text, known)
        elif path.suffix == ".j2":
            found = collections_in_text(path.read_text(), known)
        elif path.suffix == ".py":
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ansible_collections."):
                    found.add(".".join(node.module.split(".")[1:3]))
                elif isinstance(node, ast.Import):
                    found |= {".".join(alias.name.split(".")[1:3]) for alias in node.names if alias.name.startswith("ansible_collections.")}
        for collection in found:
            used.setdefault(collection, set()).add(path.name if not path.is_relative_to(REPO) else str(path.relative_to(REPO)))
    return used


@cache
def ansible_package_collections() -> dict[str, str]:
    """The collections the installed ``ansible`` package ships, with their versions."""
    ansible = distribution("ansible")
    manifests = [file for file in ansible.files or [] if re.fullmatch(r"ansible_collections/[^/]+/[^/]+/MANIFEST\.json", str(file))]
    collections = {}
    for manifest in manifests:
        info = json.loads(Path(str(ansible.locate_file(manifest))).read_text())["collection_info"]
        collections[f"{info['namespace']}.{info['name']}"] = info["version"]
    return collections


def ansible_content_files() -> list[Path]:
    return sorted(path for top in ANSIBLE_CONTENT for path in (REPO / top).rglob("*") if path.suffix in {".yml", ".yaml", ".j2", ".py"})


def galaxy_range(version_range: str) -> SpecifierSet:
    """galaxy.yml's ``">=1.0.0,<2.0.0"``, ``"*"`` or ``"1.2.3"`` as a specifier set."""
    return SpecifierSet("" if version_range == "*" else version_range if version_range[0] in "<>=!" else f"=={version_range}")


def test_the_collections_the_roles_use_are_declared_in_galaxy_yml() -> None:
    known = set(ansible_package_collections()) | OWN_COLLECTIONS
    used = collections_used(ansible_content_files(), known)
    assert "community.general" in used  # the consul role's ACL modules and dict_kv filter: the scan finds them
    declared = set(GALAXY.get("dependencies") or {})
    undeclared = {collection: sorted(files) for collection, files in used.items() if collection not in declared | OWN_COLLECTIONS}
    assert undeclared == {}, "name these in galaxy.yml's dependencies (and see that pyproject.toml's ansible ships them)"
    assert sorted(declared - set(used)) == [], "galaxy.yml names collections nothing uses"


def test_the_scan_finds_collections_however_a_play_names_them(tmp_path: Path) -> None:
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: all\n"
        "  module_defaults:\n"
        "    group/community.general.consul: {host: localhost}\n"
        "  roles:\n"
        "    - role: acme.web.frontend\n"
        "  tasks:\n"
        "    - community.docker.docker_container: {name: web}\n"
        "      when: result is community.general.some_test\n"
        "    - ansible.builtin.debug:\n"
        "        msg: \"{{ items | map('containers.podman.a_filter') | ansible.utils.ipaddr }} {{ lookup('cloud.aws.secret', 'x') }}\"\n"
        "    - ansible.builtin.copy:\n"
        "        src: !unsafe '{{ secret }}.j2'\n"
        '        dest: "{{ directory }}/moorage.vault.yml"\n'
        '        content: "{{ hostvars.lab_1.ansible_host }}"\n'
    )
    template = tmp_path / "config.j2"
    template.write_text("{{ value | ansible.netcommon.ipaddr }} {{ site.vars.name }}\n")
    found = collections_used([play, template], known={"acme.web"})
    assert sorted(found) == [
        "acme.web",
        "ansible.builtin",
        "ansible.netcommon",
        "ansible.utils",
        "cloud.aws",
        "community.docker",
        "community.general",
        "containers.podman",
    ]


def test_the_declared_ansible_package_ships_galaxy_yml_s_collections_in_range() -> None:
    [ansible] = [
        Requirement(requirement) for requirement in PROJECT["dependencies"] if canonicalize_name(Requirement(requirement).name) == "ansible"
    ]
    assert ansible.specifier.contains(distribution("ansible").version)
    shipped = ansible_package_collections()
    for collection, version_range in (GALAXY.get("dependencies") or {}).items():
        assert collection in shipped, f"{collection} does not come with the ansible package"
        assert galaxy_range(version_range).contains(Version(shipped[collection])), (
            f"{collection} {shipped[collection]} is outside {version_range}"
        )


def test_the_built_collection_installs_with_its_dependencies_already_there_and_no_galaxy(tmp_path: Path) -> None:
    built = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [tarball] = tmp_path.glob("moorage-platform-*.tar.gz")
    installed = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-p", str(tmp_path / "collections"), str(tarball)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    for collection in GALAXY.get("dependencies") or {}:
        assert f"'{collection}:" in installed.stdout and "is already installed" in installed.stdout
    manifest = json.loads((tmp_path / "collections/ansible_collections/moorage/platform/MANIFEST.json").read_text())
    assert manifest["collection_info"]["dependencies"] == (GALAXY.get("dependencies") or {})


@cache
def installed_distributions() -> dict[str, list[str]]:
    """Import name -> the installed distributions that provide it."""
    return packages_distributions()


def imported_modules(paths: Iterable[Path], root: Path = REPO) -> dict[str, set[str]]:
    """Top-level module -> the files (relative to root) importing it; absolute imports, ``if TYPE_CHECKING:`` blocks left out."""
    imported: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for statement in node.body
            for inner in ast.walk(statement)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                imported.setdefault(name.split(".")[0], set()).add(str(path.relative_to(root)))
    return imported


def undeclared_imports(imported: dict[str, set[str]], declared: set[str], local: set[str]) -> dict[str, list[str]]:
    """Third-party imports whose distribution is not declared: module -> its distributions (or none) and files."""
    distributions = installed_distributions()
    problems = {}
    for module, files in imported.items():
        if module in sys.stdlib_module_names or module in local:
            continue
        names = {canonicalize_name(name) for name in distributions.get(module, [])}
        if not names & declared:
            problems[module] = [*sorted(names or {"(no installed distribution)"}), *sorted(files)]
    return problems


def test_what_src_moorage_imports_is_a_runtime_dependency_and_each_one_is_used() -> None:
    imported = imported_modules((REPO / "src/moorage").rglob("*.py"))
    runtime = requirement_names(PROJECT["dependencies"])
    assert undeclared_imports(imported, runtime, local={"moorage"}) == {}
    distributions = installed_distributions()
    used = {canonicalize_name(name) for module in imported for name in distributions.get(module, [])}
    assert sorted(runtime - used - set(NOT_IMPORTED)) == [], (
        "a runtime dependency nothing in src/moorage imports (test only? then the test extra)"
    )


def test_what_tests_and_bench_import_is_a_runtime_or_test_dependency() -> None:
    files = [path for top in ("tests", "bench") for path in (REPO / top).rglob("*.py")]
    # Their own helpers (tests/*.py on pytest's pythonpath, bench's modules, the example apps the e2e tests load).
    local = {"moorage"} | {path.stem for top in ("tests", "bench", "examples") for path in (REPO / top).rglob("*.py")}
    declared = requirement_names(PROJECT["dependencies"]) | requirement_names(PROJECT["optional-dependencies"]["test"])
    assert undeclared_imports(imported_modules(files), declared, local) == {}


def test_an_undeclared_import_is_caught(tmp_path: Path) -> None:
    module = tmp_path / "tool.py"
    module.write_text(
        "import requests\nimport yaml\nimport os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import _typeshed\n"
    )
    imported = imported_modules([module], root=tmp_path)
    assert sorted(imported) == ["os", "requests", "typing", "yaml"]
    assert undeclared_imports(imported, {"pyyaml"}, local=set()) == {"requests": ["requests", "tool.py"]}
    assert undeclared_imports({"tool_helpers": {"tool.py"}}, set(), local=set()) == {
        "tool_helpers": ["(no installed distribution)", "tool.py"]
    }
