"""Dependencies point one way: tests, benchmarks, tools -> nextbest (client, CLI, test kit) -> server -> policies.

The simulator (`nextbest.sim`) uses the public client and test kit only; the product never imports benchmarks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRONT = ("nextbest.client", "nextbest.testing", "nextbest.cli", "nextbest.commands")


def imports(folder: str) -> dict[str, set[str]]:
    """Every module a folder's files import (absolute, with `from nextbest import policies` as nextbest.policies),
    by file."""
    out = {}
    for path in (ROOT / folder).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        out[path.relative_to(ROOT).as_posix()] = names
    return out


def offending(folder: str, forbidden: tuple[str, ...], allowed: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    found = []
    for file, names in imports(folder).items():
        for name in sorted(names):
            if any(name == f or name.startswith(f + ".") for f in forbidden) and not any(
                name.startswith(a) for a in (allowed or {}).get(file, ())
            ):
                found.append(f"{file} imports {name}")
    return found


@pytest.mark.parametrize("folder", ["nextbest", "server", "policies", "tools/pinball"])
def test_the_product_never_imports_benchmarks_or_tests(folder: str) -> None:
    assert offending(folder, ("benchmarks", "tests")) == []


def test_policies_import_neither_the_server_nor_the_front_door() -> None:
    assert offending("policies", ("nextbest.server", "nextbest.sim", *FRONT)) == []


def test_the_server_imports_no_front_door_and_the_simulator_only_for_the_demo() -> None:
    allowed = {"server/commands/demo.py": ("nextbest.sim",)}
    assert offending("server", ("nextbest.sim", *FRONT), allowed) == []


def test_the_simulator_uses_the_client_and_the_test_kit_only() -> None:
    assert offending("tools/pinball", ("nextbest.server", "nextbest.policies", "nextbest.commands")) == []


def test_every_package_of_the_repository_is_listed_for_the_wheel() -> None:
    """setuptools ships an unlisted subpackage's files as data (no error), so the list is checked here."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for name, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *relative.parts]))
    assert found == set(setuptools["packages"])
