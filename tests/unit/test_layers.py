"""The layers, checked on the source: the CLI and the lab sit beside the core, never under it.

Only the CLI (moorage/cli.py, moorage/commands/) and the lab itself (moorage/lab/) may import
moorage.lab; nothing outside the CLI imports the CLI; the platform's vault does not need the runner.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "moorage"


def imported_modules(source: str) -> set[str]:
    """Every module a Python source imports, ``from moorage import lab`` counted as ``moorage.lab``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def offenders(root: Path, forbidden: str, allowed: tuple[str, ...]) -> list[str]:
    """``file: module`` for each import of ``forbidden`` (or below it) from a file outside ``allowed``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(allowed):
            continue
        for module in sorted(imported_modules(path.read_text())):
            if module == forbidden or module.startswith(forbidden + "."):
                found.append(f"{relative}: {module}")
    return found


def test_only_the_cli_and_the_lab_import_the_lab() -> None:
    assert offenders(SRC, "moorage.lab", ("cli.py", "commands/", "lab/")) == []


def test_nothing_below_the_cli_imports_it() -> None:
    assert offenders(SRC, "moorage.commands", ("cli.py", "commands/")) == []
    assert offenders(SRC, "moorage.cli", ("cli.py", "__main__.py")) == []


def test_the_vault_does_not_need_the_runner() -> None:
    assert "moorage.runner" not in imported_modules((SRC / "vault.py").read_text())


def test_the_check_finds_each_way_of_importing_the_lab(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "a.py").write_text("from moorage import lab\n")
    (tmp_path / "deploy" / "b.py").write_text("import moorage.lab.paths\n")
    (tmp_path / "c.py").write_text("def f():\n    from moorage.lab.paths import lab_dir\n")
    (tmp_path / "commands").mkdir()
    (tmp_path / "commands" / "ok.py").write_text("from moorage.lab import up\n")
    (tmp_path / "labels.py").write_text("import moorage.labels\n")  # a neighbour's name is no match
    assert offenders(tmp_path, "moorage.lab", ("cli.py", "commands/", "lab/")) == [
        "c.py: moorage.lab.paths",
        "c.py: moorage.lab.paths.lab_dir",
        "deploy/a.py: moorage.lab",
        "deploy/b.py: moorage.lab.paths",
    ]
