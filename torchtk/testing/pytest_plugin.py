"""torchtk's pytest plugin (the ``pytest11`` entry point ``torchtk``): fixtures for plugin tests.

- ``tk_plugin``: the plugin under test, from the ini option ``torchtk_plugin``
  (``[tool.pytest.ini_options] torchtk_plugin = "torchtk_demo"``), or override the
  fixture in your ``conftest.py``.
- ``tk_registry``: the built-ins plus that plugin only (other installed plugins are left
  out), also the process-wide registry during the test.
- ``tk``: ``tk("list", "losses")`` runs the CLI in-process against ``tk_registry`` and
  returns a :class:`torchtk.testing.TkResult`; ``tk(..., subprocess=True)`` runs it in a
  child process, which sees what is installed.
- ``run_tiny``: :func:`torchtk.testing.run_tiny` against ``tk_registry``, writing under
  ``tmp_path``.

Every pytest session in an environment with torchtk loads this module, so it imports
nothing but pytest at module level.
"""

from __future__ import annotations

from typing import Any

import pytest

INI_OPTION = "torchtk_plugin"


def pytest_addoption(parser: Any) -> None:
    parser.addini(INI_OPTION, "the torchtk plugin the tk_* fixtures test: its module, entry-point or distribution "
                              "name", default="")


@pytest.fixture
def tk_plugin(request: Any) -> Any:
    """The plugin under test (a module, entry-point or distribution name, or a module object)."""
    value = request.config.getini(INI_OPTION)
    if not value:
        pytest.fail(f"the tk_* fixtures need the plugin under test: set `{INI_OPTION} = \"your_module\"` under "
                    "[tool.pytest.ini_options] in pyproject.toml, or define a `tk_plugin` fixture in conftest.py",
                    pytrace=False)
    return value


@pytest.fixture
def tk_registry(tk_plugin: Any) -> Any:
    """A registry with the built-ins and ``tk_plugin`` only; the process-wide one during the test."""
    from torchtk.core import registry as registry_module
    from torchtk.testing.checks import registry_for

    registry = registry_for(tk_plugin)
    previous = registry_module._default
    registry_module.set_registry(registry)
    yield registry
    registry_module.set_registry(previous)


@pytest.fixture
def tk(tk_registry: Any) -> Any:
    """``tk(*args, subprocess=False, env=None, cwd=None)`` -> TkResult(exit_code, stdout, stderr)."""
    from torchtk.testing.runner import run_tk

    def run(*args: Any, subprocess: bool = False, **options: Any) -> Any:
        return run_tk(*args, registry=None if subprocess else tk_registry, subprocess=subprocess, **options)

    return run


@pytest.fixture
def run_tiny(tk_registry: Any, tmp_path: Any) -> Any:
    """``run_tiny(callback=..., loss=..., scheduler=..., metric=..., spec=...)`` -> TinyRun, under tmp_path."""
    from torchtk.testing.tiny import run_tiny as _run_tiny

    def run(*args: Any, **options: Any) -> Any:
        options.setdefault("registry", tk_registry)
        options.setdefault("output_dir", tmp_path / "runs")
        return _run_tiny(*args, **options)

    return run
