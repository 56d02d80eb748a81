"""The examples in the docstrings of the installed package run as written."""

import doctest
import importlib
import pkgutil

import pytest

ROOTS = ("nextbest", "nextbest.server", "nextbest.policies", "nextbest.sim")  # mapped from separate directories


def _modules() -> list[str]:
    names = set(ROOTS)
    for root in ROOTS:
        package = importlib.import_module(root)
        names.update(m.name for m in pkgutil.walk_packages(package.__path__, f"{root}."))
    return sorted(n for n in names if not n.startswith("nextbest.v1.") and n != "nextbest.__main__")


def _has_examples(name: str) -> bool:
    return any(t.examples for t in doctest.DocTestFinder().find(importlib.import_module(name)))


WITH_EXAMPLES = [name for name in _modules() if _has_examples(name)]


def test_the_modules_with_examples_are_found():
    assert {"nextbest.server.wire", "nextbest.policies.featurize"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name):
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(importlib.import_module(name), optionflags=flags)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
