"""The runnable examples in the package's docstrings."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import model_wrappers

# A package's __main__ runs its command when imported: it holds no examples.
MODULES = sorted(m.name for m in pkgutil.walk_packages(model_wrappers.__path__, "model_wrappers.")
                 if not m.name.endswith(".__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_examples_are_found():
    finder = doctest.DocTestFinder()
    with_examples = [n for n in MODULES if any(t.examples for t in finder.find(importlib.import_module(n)))]
    assert "model_wrappers.river_model" in with_examples and len(with_examples) >= 8
